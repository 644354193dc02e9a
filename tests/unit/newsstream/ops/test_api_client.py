"""The command line's search client: the key goes out as X-API-Key, and every answer that is not
search results (API errors, a proxy's HTML page, other JSON) becomes one clear line."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from newsstream.ops.api_client import ApiAnswerError, ApiUnreachable, one_line, search

RESULTS = {"query": "storm", "mode": "hybrid", "results": [], "next_cursor": None}


def _transport(answer: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(answer)


def _failure(response: httpx.Response) -> str:
    with pytest.raises(ApiAnswerError) as failed:
        search("http://api.test", {"q": "storm"}, transport=_transport(lambda _r: response))
    message = str(failed.value)
    assert "\n" not in message and message.isprintable(), message
    return message


def test_the_key_is_sent_as_x_api_key_and_results_come_back() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=RESULTS)

    body = search(
        "http://api.test/", {"q": "storm", "k": 3}, "s3cret", transport=_transport(answer)
    )
    assert body == RESULTS
    assert seen[0].headers["X-API-Key"] == "s3cret"
    assert seen[0].url.path == "/search" and seen[0].url.params["k"] == "3"
    search("http://api.test", {"q": "storm"}, None, transport=_transport(answer))
    assert "X-API-Key" not in seen[1].headers


def test_an_api_error_names_status_code_message_and_the_fix() -> None:
    unauthorized = httpx.Response(
        401, json={"error": {"code": "unauthorized", "message": "a valid API key is required"}}
    )
    message = _failure(unauthorized)
    assert "401" in message and "unauthorized: a valid API key is required" in message
    assert "--api-key" in message and "NEWSSTREAM_API_KEY" in message
    limited = httpx.Response(
        429,
        json={"error": {"code": "rate_limited", "message": "too many requests"}},
        headers={"Retry-After": "7"},
    )
    assert "rate_limited" in _failure(limited) and "retry in 7 s" in _failure(limited)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx.Response(
                502,
                html="<html><head><title>502 Bad Gateway</title></head>"
                "<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>",
            ),
            "non-JSON answer (text/html): 502 Bad Gateway",
        ),
        (httpx.Response(200, html="<p>Please sign in</p>"), "non-JSON answer (text/html): Please"),
        (httpx.Response(503, text=""), "non-JSON answer"),
        (httpx.Response(200, json=["not", "results"]), "unexpected JSON answer"),
        (httpx.Response(404, json={"detail": "Not Found"}), "Not Found"),
    ],
)
def test_answers_that_are_not_results_are_one_line(response: httpx.Response, expected: str) -> None:
    message = _failure(response)
    assert expected in message, message
    assert str(response.status_code) in message


def test_hostile_answers_stay_one_short_printable_line() -> None:
    text = "\x1b[31mred\x1b[0m\r\nline two\u2028" + "x" * 1000
    message = _failure(httpx.Response(500, text=text))
    assert "line two" in message and len(message) < 400


def test_nothing_answering_is_a_configuration_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ApiUnreachable, match=r"no API answers at http://api\.test"):
        search("http://api.test", {"q": "x"}, transport=_transport(refuse))


def test_one_line_flattens_and_cuts() -> None:
    assert one_line(" a\n\tb\x00c ") == "a b c"
    long = "y" * 500
    assert len(one_line(long)) == 200 and one_line(long).endswith("...")
