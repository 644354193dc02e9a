"""Retention windows per feed (global, a feed's own, kept forever), the sweep's plan, and the
producer skipping feed entries already older than their feed's window."""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from core.article import Article
from core.errors import ConfigurationError
from producers.feeds import FeedSpec, feeds_to_toml, parse_feeds_toml
from producers.fetcher import FetchResponse
from producers.retention import DAY_S, WindowGroup, event_time, expired, plan, window_days
from producers.scheduler import Scheduler
from producers.state import ProducerState

NOW = 1_800_000_000


def test_a_feed_window_overrides_the_global_one() -> None:
    assert window_days(None, 14) == 14
    assert window_days(3, 14) == 3
    assert window_days(0, 14) == 0  # this feed keeps its articles forever
    assert window_days(30, 0) == 30  # retention off globally, on for this feed


def test_expiry_counts_from_the_published_time_else_the_ingest_time() -> None:
    assert event_time(NOW - 5, NOW) == NOW - 5
    assert event_time(None, NOW) == NOW and event_time(0, NOW) == NOW
    assert expired(NOW - 15 * DAY_S, NOW, NOW, 14)
    assert not expired(NOW - 14 * DAY_S, NOW, NOW, 14)  # exactly on the boundary stays
    assert expired(None, NOW - 15 * DAY_S, NOW, 14)
    assert not expired(NOW - 5 * DAY_S, NOW - 15 * DAY_S, NOW, 14)
    assert not expired(NOW - 10_000 * DAY_S, NOW, NOW, 0)  # 0 keeps forever


def test_the_plan_has_one_group_per_distinct_window() -> None:
    feeds = [
        FeedSpec("https://a.example/rss", retention_days=3),
        FeedSpec("https://b.example/rss", retention_days=3),
        FeedSpec("https://c.example/rss", retention_days=0),
        FeedSpec("https://d.example/rss", retention_days=14),  # same as the global window
        FeedSpec("https://e.example/rss"),
    ]
    a, b, c = (f.id for f in feeds[:3])
    result = plan(feeds, 14)
    assert result.groups == (
        WindowGroup(3, tuple(sorted((a, b)))),
        WindowGroup(14, others=True),
    )
    assert set(result.overridden) == {a, b, c}
    # With the global window off, d's own 14 days is a window of its own.
    assert plan(feeds, 0).groups == (
        WindowGroup(3, tuple(sorted((a, b)))),
        WindowGroup(14, (feeds[3].id,)),
    )
    assert not plan([FeedSpec("https://e.example/rss")], 0).active


def test_the_feeds_file_carries_a_feed_window() -> None:
    specs = [FeedSpec("https://a.example/rss", "A", retention_days=7), FeedSpec("https://b/x")]
    assert parse_feeds_toml(feeds_to_toml(specs), "t") == specs
    with pytest.raises(ConfigurationError, match="retention_days"):
        parse_feeds_toml('[[feed]]\nurl = "https://a.example/rss"\nretention_days = -1\n', "t")


class StubFetcher:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def fetch(self, url: str, **_kwargs: Any) -> FetchResponse:
        return FetchResponse(200, url, self.body, {}, 0.01)


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[Article] = []

    def publish(self, articles: list[Article], _timeout_s: float) -> set[str]:
        self.published += articles
        return {a.id for a in articles}


def _feed(ages_days: list[float | None]) -> bytes:
    now = time.time()
    items = "".join(
        f"<item><title>Story {n}</title><link>https://news.example/{n}</link>"
        + ("" if age is None else f"<pubDate>{formatdate(now - age * DAY_S)}</pubDate>")
        + f"<description>Text of story {n}.</description></item>"
        for n, age in enumerate(ages_days)
    )
    return (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
        f"<link>https://news.example/</link>{items}</channel></rss>"
    ).encode()


def _poll(tmp_path: Path, feed: FeedSpec, global_days: int) -> tuple[Any, list[str]]:
    publisher = RecordingPublisher()
    scheduler = Scheduler(
        [feed],
        fetcher=StubFetcher(_feed([40, 10, 1, None])),  # type: ignore[arg-type]
        publisher=publisher,  # type: ignore[arg-type]
        state=ProducerState(tmp_path / f"state-{global_days}-{feed.retention_days}.sqlite3"),
        retention_days=global_days,
    )
    report = scheduler.poll_feed(feed)
    return report, sorted(a.url for a in publisher.published)


def test_the_producer_skips_entries_older_than_their_feed_window(tmp_path: Path) -> None:
    url = "https://news.example/rss"
    report, urls = _poll(tmp_path, FeedSpec(url), global_days=14)
    assert urls == [f"https://news.example/{n}" for n in (1, 2, 3)]
    assert (report.entries, report.published, report.expired) == (4, 3, 1)
    # The feed's own window wins: 7 days drops the 10-day-old entry too.
    report, urls = _poll(tmp_path, FeedSpec(url, retention_days=7), global_days=14)
    assert urls == ["https://news.example/2", "https://news.example/3"]  # undated: kept
    assert report.expired == 2
    # Kept forever (globally off, or this feed's 0): everything is published.
    assert _poll(tmp_path, FeedSpec(url), global_days=0)[0].expired == 0
    assert len(_poll(tmp_path, FeedSpec(url, retention_days=0), global_days=14)[1]) == 4
