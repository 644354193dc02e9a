"""A client of the search API for the command line: one search, one answer or one clear error.

What goes in: the API base URL, the search parameters and an optional API key (sent as
``X-API-Key``). What comes out: the JSON body of a successful search. Guarantees: any other
answer (an API error such as 401, 429 or 503, a body that is not JSON, such as a proxy's HTML
page, or JSON of another shape) raises :class:`ApiAnswerError` whose message is one printable
line naming the URL, the status and what the server said; an unreachable server raises
:class:`ApiUnreachable`. Nothing the server sent is ever interpreted as markup or code.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from core.errors import ConfigurationError, NewsstreamError

#: Longest piece of a server's answer quoted in an error message.
MAX_QUOTE_CHARS = 200
TIMEOUT_S = 30.0


class ApiAnswerError(NewsstreamError):
    """The API answered, but not with search results; the message is one line."""


class ApiUnreachable(ConfigurationError):
    """No server answered at the API base URL."""


def search(
    base: str,
    params: dict[str, str | int],
    api_key: str | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """``GET {base}/search`` with ``params``; the answer's JSON body when it is search results."""
    url = f"{base.rstrip('/')}/search"
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        with httpx.Client(transport=transport, timeout=timeout_s) as client:
            response = client.get(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise ApiUnreachable(
            f"no API answers at {base} ({one_line(str(exc)) or type(exc).__name__}); "
            "is `newsstream up` running?"
        ) from None
    body = _json(response)
    if response.status_code == 200 and isinstance(body, dict) and "results" in body:
        return body
    raise ApiAnswerError(describe_failure(url, response, body))


def describe_failure(url: str, response: httpx.Response, body: Any) -> str:
    """One line: who answered what, what it said and, where it helps, what to do."""
    status = f"{response.status_code} {response.reason_phrase}".strip()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and ("code" in error or "message" in error):
        said = f"{error.get('code', 'error')}: {error.get('message', '')}"
    elif isinstance(body, dict) and "detail" in body:
        said = f"{body['detail']}"
    elif body is not None:
        said = f"an unexpected JSON answer: {response.text}"
    else:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        text = _visible_text(response.text)
        said = f"a non-JSON answer ({kind})" + (f": {text}" if text else "")
    line = f"{url} answered {status} with {one_line(said)}"
    if response.status_code in (401, 403):
        line += "; pass --api-key or set NEWSSTREAM_API_KEY"
    retry = response.headers.get("retry-after", "")
    if response.status_code in (429, 503) and retry.isdigit():
        line += f"; retry in {retry} s"
    return line


def one_line(text: str) -> str:
    """``text`` on one line of printable characters, cut at :data:`MAX_QUOTE_CHARS`."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= MAX_QUOTE_CHARS else flat[: MAX_QUOTE_CHARS - 3] + "..."


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _visible_text(html: str) -> str:
    # A proxy's error page: its title says most; else the text without tags.
    title = re.search(r"<title[^>]*>(.*?)</title>", html, re.I | re.S)
    if title and title.group(1).strip():
        return one_line(title.group(1))
    without_code = re.sub(r"<(script|style)\b.*?</\1\s*>", " ", html, flags=re.I | re.S)
    return one_line(re.sub(r"<[^>]+>", " ", without_code))
