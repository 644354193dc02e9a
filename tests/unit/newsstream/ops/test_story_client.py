"""The command line's story calls: the right route, method, body and key; refusals become one
clear line."""

from __future__ import annotations

import json

import httpx
import pytest

from newsstream.ops.api_client import ApiAnswerError, split_story, story

STORY = "ab" * 16
TIMELINE = {"story_id": STORY, "title": "t", "count": 0, "articles": [], "truncated": False}


def test_show_gets_the_story_with_the_key() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=TIMELINE)

    assert story("http://api.test/", STORY, "k1", transport=httpx.MockTransport(answer)) == TIMELINE
    assert seen[0].method == "GET" and seen[0].url.path == f"/stories/{STORY}"
    assert seen[0].headers["X-API-Key"] == "k1"
    # An id with path characters stays one path segment.
    story("http://api.test", "../admin", transport=httpx.MockTransport(answer))
    assert seen[1].url.raw_path == b"/stories/..%2Fadmin"


def test_split_posts_the_ids_and_reason() -> None:
    seen: list[httpx.Request] = []
    done = {"story_id": STORY, "new_story_id": "cd" * 16, "moved": 1, "remaining": 3}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=done)

    result = split_story(
        "http://api.test", STORY, ["cd" * 16], "why", "admin", transport=httpx.MockTransport(answer)
    )
    assert result == done
    assert seen[0].method == "POST" and seen[0].url.path == f"/stories/{STORY}/split"
    assert json.loads(seen[0].content) == {"article_ids": ["cd" * 16], "reason": "why"}


def test_a_read_key_on_a_split_is_told_it_needs_an_admin_key() -> None:
    refused = httpx.Response(
        403, json={"error": {"code": "forbidden", "message": "this route needs an admin key"}}
    )
    with pytest.raises(ApiAnswerError) as failed:
        split_story(
            "http://api.test", STORY, ["cd" * 16], transport=httpx.MockTransport(lambda _r: refused)
        )
    message = str(failed.value)
    assert "403" in message and "needs an admin key" in message and "\n" not in message


def test_a_timeline_answer_of_another_shape_is_an_error() -> None:
    odd = httpx.Response(200, json={"results": []})
    with pytest.raises(ApiAnswerError, match="unexpected JSON"):
        story("http://api.test", STORY, transport=httpx.MockTransport(lambda _r: odd))
