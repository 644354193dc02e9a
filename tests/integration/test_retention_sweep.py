"""The retention sweep on the real local broker and Milvus: exactly the expired ids get a
tombstone with the reason header, per feed window (global, a feed's own, a feed kept forever),
an event time taken from the published date, else the ingest date; a dry run sends nothing."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from core.article import DELETE_REASON_HEADER
from core.kafka import ensure_topics
from newsstream.ops.retention import RecentTombstones, run_sweeps, sweep
from newsstream.ops.topic_scan import scan_consumer, scan_topic
from producers.registry import FeedRegistry, state_path
from producers.retention import DAY_S
from store.client import connect
from store.row import encode_sources
from store.schema import VECTOR_FIELD
from store.writer import ArticleWriter

from probes import wait_until

pytestmark = pytest.mark.integration

SHORT = "https://short.example/rss"  # its own window: 3 days
FOREVER = "https://forever.example/rss"  # its own window: 0, kept forever
LONG = "https://long.example/rss"  # its own window: 30 days
DIM = 384


def _row(n: int, feed: str, published_days: float | None, ingested_days: float, now: int) -> Any:
    return {
        "id": f"{n:032x}",
        VECTOR_FIELD: np.random.default_rng(n).random(DIM).tolist(),
        "title": f"article {n}",
        "text": f"text of article {n}",
        "url": f"https://x.example/{n}",
        "source": "x.example",
        "feed_id": feed,
        "language": "en",
        "published_at": 0 if published_days is None else int(now - published_days * DAY_S),
        "ingested_at": int(now - ingested_days * DAY_S),
        "story_id": f"{n:032x}",
        "model": "test",
        "content_hash": "",
        "also_reported_by": encode_sources([]),
    }


def _tombstones(settings: Any) -> list[tuple[str, bytes | None, str]]:
    consumer = scan_consumer(settings)
    try:
        return [
            (m.key.decode() if m.key else "", m.value, m.header(DELETE_REASON_HEADER))
            for m in scan_topic(consumer, settings.kafka_topic)
        ]
    finally:
        consumer.close()


def test_the_sweep_tombstones_exactly_the_expired_ids_of_each_window(make_settings: Any) -> None:
    settings = make_settings(retention_days=14)
    ensure_topics(settings)
    registry = FeedRegistry(state_path(settings.data_dir))
    short, _ = registry.add(SHORT, retention_days=3)
    forever, _ = registry.add(FOREVER, retention_days=0)
    long, _ = registry.add(LONG, retention_days=30)
    registry.close()
    now = int(time.time())
    rows = [
        # (n, feed, published days ago or None, ingested days ago, expired?)
        (1, "file-feed", 20, 1, True),  # global window, published long ago
        (2, "file-feed", 5, 1, False),
        (3, "file-feed", None, 20, True),  # no published date: the ingest date counts
        (4, "file-feed", 5, 20, False),  # the published date wins over the ingest date
        (5, short.id, 5, 1, True),
        (6, short.id, 1, 1, False),
        (7, forever.id, 400, 400, False),
        (8, long.id, 20, 20, False),
        (9, long.id, 40, 1, True),
        (10, "", 15, 15, True),  # no feed id: the global window
    ]
    client = connect(settings.milvus_uri)
    writer = ArticleWriter.open(client, settings, DIM)
    assert writer.upsert([_row(n, f, p, i, now) for n, f, p, i, _e in rows]) == len(rows)
    client.close()
    expected = {f"{n:032x}" for n, *_rest, gone in rows if gone}

    dry = sweep(settings, now=now, dry_run=True)
    assert dry.expired == len(expected) and dry.tombstones == 0
    assert _tombstones(settings) == []

    recent = RecentTombstones(ttl_s=600)
    report = sweep(settings, now=now, recent=recent)
    assert report.tombstones == len(expected)
    assert sorted(w.days for w in report.windows) == [3, 14, 30]  # one query per window
    sent = _tombstones(settings)
    assert {key for key, _v, _r in sent} == expected
    assert len(sent) == len(expected)
    assert {(value, reason) for _k, value, reason in sent} == {(None, "expired")}

    # Run again before any worker applied them: this process does not send them twice.
    again = sweep(settings, now=now, recent=recent)
    assert again.tombstones == 0 and again.skipped_recent == len(expected)
    assert len(_tombstones(settings)) == len(expected)


def test_no_window_means_no_query_and_no_tombstone(make_settings: Any) -> None:
    settings = make_settings()  # retention_days 0, no feed with its own window
    report = sweep(settings, now=time.time() + 10_000 * DAY_S)
    assert report.windows == [] and report.tombstones == 0
    # A window but nothing indexed yet (no collection): the window shows, nothing expired.
    empty = sweep(make_settings(retention_days=5), feeds=[])
    assert [(w.days, w.expired) for w in empty.windows] == [(5, 0)]


def test_the_periodic_sweep_runs_until_stopped(make_settings: Any) -> None:
    settings = make_settings(retention_days=1, retention_sweep_s=0.5)
    ensure_topics(settings)
    now = int(time.time())
    client = connect(settings.milvus_uri)
    writer = ArticleWriter.open(client, settings, DIM)
    assert writer.upsert([_row(1, "f", 3, 3, now), _row(2, "f", 0.5, 0.5, now)]) == 2
    client.close()
    stop = threading.Event()
    thread = threading.Thread(target=run_sweeps, args=(settings, stop, 0.1), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(_tombstones(settings)) >= 1, 60, "a first sweep")
        time.sleep(1.5)  # later sweeps remember what they sent: no second tombstone
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert [key for key, _v, _r in _tombstones(settings)] == [f"{1:032x}"]
