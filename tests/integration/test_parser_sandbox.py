"""The parse sandbox: a parse that burns CPU, memory or wall-clock time costs only its worker.

Worker processes, so integration. What the sandbox costs next to parsing in process is a figure
of `newsstream bench producer`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.errors import FeedError
from producers.parser import parse_feed
from producers.sandbox import ParserPool

# Hostile stand-ins for the parser, run inside the workers (imported there by name).


def burn_cpu(body: bytes, **_kwargs: Any) -> None:
    while True:
        pass


def eat_memory(body: bytes, **_kwargs: Any) -> None:
    hoard = []
    while True:
        hoard.append(bytearray(50_000_000))


def hang(body: bytes, **_kwargs: Any) -> None:
    time.sleep(3600)


def dispatch(body: bytes, **kwargs: Any) -> Any:
    """Misbehave as the body says, else parse normally."""
    actions = {b"cpu": burn_cpu, b"memory": eat_memory, b"hang": hang}
    if body in actions:
        return actions[body](body)
    if body == b"crash":
        raise KeyError("boom")
    return parse_feed(body, **kwargs)


FEED = (
    b"<rss version='2.0'><channel><title>T</title>"
    b"<item><title>Hello</title><link>https://e.com/1</link></item></channel></rss>"
)
KW = {"feed_url": "https://e.com/feed", "feed_id": "f"}

pytestmark = pytest.mark.integration


@pytest.fixture
def pool() -> Iterator[ParserPool]:
    pool = ParserPool(1, cpu_s=1.0, memory_mb=400, timeout_s=20.0, target=dispatch)
    yield pool
    pool.close()


def _error(pool: ParserPool, body: bytes) -> FeedError:
    with pytest.raises(FeedError) as info:
        pool.parse(body, **KW)
    return info.value


def test_parses_in_a_worker(pool: ParserPool) -> None:
    parsed = pool.parse(FEED, **KW)
    assert [a.title for a in parsed.articles] == ["Hello"]


def test_cpu_bound_kills_the_parse_and_the_pool_recovers(pool: ParserPool) -> None:
    error = _error(pool, b"cpu")
    assert error.kind == "parse_error" and "CPU" in str(error)  # the CPU limit, not the clock
    assert pool.replaced == 1
    assert pool.parse(FEED, **KW).articles


def test_memory_bound_fails_the_parse_only(pool: ParserPool) -> None:
    error = _error(pool, b"memory")
    assert error.kind == "parse_error"
    assert pool.parse(FEED, **KW).articles


def test_wall_clock_bound_kills_a_stuck_parse() -> None:
    pool = ParserPool(1, cpu_s=1.0, timeout_s=2.0, target=dispatch)
    try:
        pool.parse(FEED, **KW)
        error = _error(pool, b"hang")  # an hour of sleep: only the 2 s bound can end it
        assert error.kind == "timeout"
        assert pool.replaced == 1
        assert pool.parse(FEED, **KW).articles
    finally:
        pool.close()


def test_a_parser_exception_is_a_named_error(pool: ParserPool) -> None:
    error = _error(pool, b"crash")
    assert error.kind == "parse_error" and "KeyError" in str(error)
    assert pool.replaced == 0


def test_feed_errors_keep_their_kind(pool: ParserPool) -> None:
    assert _error(pool, b"<html><body>no feed</body></html>").kind == "not_a_feed"
