"""A client of the search API for the command line: one call, one answer or one clear error.

What goes in: the API base URL, the call's parameters (a search, a story, a story split, an
article delete, an audit page) and an optional API key (sent as ``X-API-Key``). What comes out:
the JSON body of a successful answer. Guarantees: any other
answer (an API error such as 401, 429 or 503, a body that is not JSON, such as a proxy's HTML
page, or JSON of another shape) raises :class:`ApiAnswerError` whose message is one printable
line naming the URL, the status and what the server said; an unreachable server raises
:class:`ApiUnreachable`. Nothing the server sent is ever interpreted as markup or code.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from core.errors import ConfigurationError, NewsstreamError

#: Longest piece of a server's answer quoted in an error message.
MAX_QUOTE_CHARS = 200
TIMEOUT_S = 30.0


class ApiAnswerError(NewsstreamError):
    """The API answered, but not with what was asked for; the message is one line."""


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
    return _call(
        "GET",
        base,
        "/search",
        "results",
        api_key,
        params=params,
        timeout_s=timeout_s,
        transport=transport,
    )


def story(
    base: str,
    story_id: str,
    api_key: str | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """``GET {base}/stories/{story_id}``; the story's timeline."""
    return _call(
        "GET",
        base,
        f"/stories/{quote(story_id, safe='')}",
        "articles",
        api_key,
        timeout_s=timeout_s,
        transport=transport,
    )


def split_story(
    base: str,
    story_id: str,
    article_ids: list[str],
    reason: str | None = None,
    api_key: str | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """``POST {base}/stories/{story_id}/split``; what the split did."""
    return _call(
        "POST",
        base,
        f"/stories/{quote(story_id, safe='')}/split",
        "new_story_id",
        api_key,
        json={"article_ids": article_ids, "reason": reason},
        timeout_s=timeout_s,
        transport=transport,
    )


def delete_article(
    base: str,
    article_id: str,
    reason: str | None = None,
    force: bool = False,
    api_key: str | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """``DELETE {base}/articles/{article_id}``; the accepted delete (202)."""
    params: dict[str, str | int] = {"force": "true"} if force else {}
    if reason:
        params["reason"] = reason
    return _call(
        "DELETE",
        base,
        f"/articles/{quote(article_id, safe='')}",
        "status",
        api_key,
        params=params,
        ok=202,
        timeout_s=timeout_s,
        transport=transport,
    )


def audit(
    base: str,
    params: dict[str, str | int],
    api_key: str | None = None,
    *,
    timeout_s: float = TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """``GET {base}/audit`` with ``params`` (``limit``, ``action``, ``before``); a page."""
    return _call(
        "GET", base, "/audit", "entries", api_key, params=params, timeout_s=timeout_s,
        transport=transport,
    )  # fmt: skip


def _call(
    method: str,
    base: str,
    path: str,
    expected: str,
    api_key: str | None,
    *,
    params: dict[str, str | int] | None = None,
    json: dict[str, Any] | None = None,
    ok: int = 200,
    timeout_s: float,
    transport: httpx.BaseTransport | None,
) -> dict[str, Any]:
    """The JSON body of an ``ok`` answer holding ``expected``; anything else raises (see the
    module docstring)."""
    url = f"{base.rstrip('/')}{path}"
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        with httpx.Client(transport=transport, timeout=timeout_s) as client:
            response = client.request(method, url, params=params, json=json, headers=headers)
    except httpx.HTTPError as exc:
        raise ApiUnreachable(
            f"no API answers at {base} ({one_line(str(exc)) or type(exc).__name__}); "
            "is `newsstream up` running?"
        ) from None
    body = _json(response)
    if response.status_code == ok and isinstance(body, dict) and expected in body:
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
    if response.status_code == 401:
        line += "; pass --api-key or set NEWSSTREAM_API_KEY"
    elif response.status_code == 403:
        line += "; this needs an admin key (--api-key or NEWSSTREAM_API_KEY)"
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
