"""Search trends without Kafka: windows, the rising formula, eviction, stories, normalisation,
the event contract and the /trends view's shape."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from import_rules import OUR_PACKAGES, packages_imported_by

from core.errors import InvalidMessage, InvalidRequest
from core.search_events import (
    MAX_QUERY_CHARS,
    SearchEvent,
    TopResult,
    decode,
    emit_failures,
    emit_search_event,
    encode,
    normalise_query,
)
from core.settings import Settings
from search_api import trends_view
from trends.windows import (
    StoryTracker,
    TrendsAggregator,
    WindowedCounter,
    growth,
    rising_queries,
    top_counts,
)

T0 = 1_800_000_000.0  # a round minute and hour: bucket edges are easy to reason about


def event(
    query: str, at: float, results: Sequence[tuple[str, str, str]] = (), **kw: Any
) -> SearchEvent:
    return SearchEvent(
        query=query,
        mode="hybrid",
        result_count=len(results),
        latency_ms=12.5,
        at=at,
        story_ids=[r[0] for r in results],
        top_results=[
            TopResult(story_id=s, title=t, source=src, url=f"https://{src}/{s}")
            for s, t, src in results
        ],
        **kw,
    )


# --- normalisation and the event contract -------------------------------------------------


def test_queries_are_normalised_nfkc_casefold_whitespace_and_length() -> None:
    assert normalise_query("  Floods\tin   PAKISTAN \n") == "floods in pakistan"
    assert normalise_query("Straße") == "strasse"
    assert normalise_query("ｆｕｌｌｗｉｄｔｈ") == "fullwidth"  # NFKC
    assert normalise_query("a\u200bb") == "a b"  # invisible characters do not split counts
    assert len(normalise_query("x" * 1000)) == MAX_QUERY_CHARS
    assert event("  ELECTION  Results", T0).query == "election results"


def test_event_round_trips_and_rejects_broken_messages() -> None:
    original = event("Floods", T0, [("s1", "Floods", "bbc.example")])
    decoded = decode(encode(original))
    assert decoded == original
    body = json.loads(encode(original))
    assert body["schema_version"] == 1 and body["query"] == "floods"
    assert set(body) == {
        "schema_version",
        "query",
        "mode",
        "filters",
        "result_count",
        "latency_ms",
        "at",
        "story_ids",
        "top_results",
    }
    for bad in (
        b"",
        b"{nope",
        b"[1]",
        json.dumps({**body, "schema_version": 2}).encode(),
        json.dumps({**body, "mode": "fuzzy"}).encode(),
        json.dumps({**body, "query": "   "}).encode(),
        json.dumps({k: v for k, v in body.items() if k != "at"}).encode(),
        json.dumps({**body, "story_ids": ["s"] * 11}).encode(),
    ):
        with pytest.raises(InvalidMessage):
            decode(bad)
    # A newer producer may add fields.
    assert decode(json.dumps({**body, "new_field": 1}).encode()).query == "floods"


class _FullProducer:
    def __init__(self) -> None:
        self.polled = 0

    def produce(self, *_args: Any, **_kwargs: Any) -> None:
        raise BufferError("queue full")

    def poll(self, _timeout: float) -> int:
        self.polled += 1
        return 0


def test_emit_never_raises_and_counts_a_dropped_event() -> None:
    producer = _FullProducer()
    before = emit_failures()
    emit_search_event(producer, "topic", event("q", T0))  # type: ignore[arg-type]
    assert emit_failures() == before + 1
    assert producer.polled == 1


# --- windows --------------------------------------------------------------------------------


def test_counts_slide_from_the_last_window_to_the_previous_and_out() -> None:
    counter = WindowedCounter(window_s=3600, bucket_s=60, max_keys=100)
    for _ in range(3):
        counter.add("floods", T0, now=T0)
    counter.add("election", T0 + 1800, now=T0 + 1800)
    assert dict(counter.current()) == {"floods": 3, "election": 1}
    assert dict(counter.previous()) == {}

    counter.advance(T0 + 3600)  # floods' minute is now an hour old
    assert dict(counter.current()) == {"election": 1}
    assert dict(counter.previous()) == {"floods": 3}

    counter.advance(T0 + 7200)
    assert dict(counter.current()) == {}
    assert dict(counter.previous()) == {"election": 1}
    counter.advance(T0 + 5 * 3600)
    assert dict(counter.previous()) == {}


def test_late_events_count_in_their_own_window_and_too_old_ones_not_at_all() -> None:
    counter = WindowedCounter(window_s=3600, bucket_s=60, max_keys=100)
    now = T0 + 10_000
    assert counter.add("late", now - 4000, now=now)  # previous window
    assert counter.add("future", now + 500, now=now)  # clock skew: counted as now
    assert not counter.add("ancient", now - 7300, now=now)
    assert dict(counter.previous()) == {"late": 1}
    assert dict(counter.current()) == {"future": 1}


def test_window_length_must_be_a_multiple_of_the_bucket() -> None:
    with pytest.raises(ValueError):
        WindowedCounter(window_s=100, bucket_s=60, max_keys=10)


def test_eviction_keeps_heavy_hitters_and_totals_equal_their_buckets() -> None:
    counter = WindowedCounter(window_s=3600, bucket_s=60, max_keys=50)
    for i in range(20):
        counter.add("heavy", T0 + i, now=T0 + i)
    for i in range(500):  # a flood of one-off queries
        counter.add(f"noise {i}", T0 + 30 + i, now=T0 + 30 + i)
    current = counter.current()
    assert len(current) <= 50
    assert current["heavy"] == 20
    buckets = counter._buckets  # the invariant the eviction must keep
    summed: dict[str, int] = {}
    for counts in buckets.values():
        for key, count in counts.items():
            summed[key] = summed.get(key, 0) + count
    assert summed == dict(current)


def test_aggregator_memory_stays_bounded_under_unique_queries() -> None:
    aggregator = TrendsAggregator(max_keys=100, max_stories=40)
    for i in range(5_000):
        aggregator.add(
            event(f"unique {i}", T0 + i, [(f"story{i}", "t", f"src{i % 7}.example")]),
            now=T0 + i,
        )
    snap = aggregator.snapshot("24h", now=T0 + 5_000)
    assert len(snap["top_queries"]) == 20
    assert len(aggregator.stories) <= 40
    for counter in aggregator._windows.values():
        assert len(counter.current()) <= 100 and len(counter.previous()) <= 100


# --- ranking --------------------------------------------------------------------------------


def test_growth_formula() -> None:
    assert growth(10, 0) == 10.0
    assert growth(10, 5) == pytest.approx(5 / 6)
    assert growth(3, 3) == 0.0


def test_rising_needs_the_minimum_count_and_growth_and_orders_by_growth() -> None:
    current = {"new": 10, "steady": 5, "grew": 10, "rare": 2, "fell": 4}
    previous = {"steady": 5, "grew": 5, "rare": 0, "fell": 8}
    rising = rising_queries(current, previous, min_count=3, n=10)
    assert [(r.query, r.count, r.previous) for r in rising] == [("new", 10, 0), ("grew", 10, 5)]
    assert rising[0].growth == 10.0


def test_top_counts_break_ties_alphabetically() -> None:
    assert [q.query for q in top_counts({"b": 2, "a": 2, "c": 5}, 2)] == ["c", "a"]


def test_snapshot_of_one_hour_top_and_rising() -> None:
    aggregator = TrendsAggregator(min_rising_count=3)
    now = T0 + 7200
    for _ in range(2):  # previous hour
        aggregator.add(event("Floods", now - 5000), now=now)
    for _ in range(6):
        aggregator.add(event("floods", now - 100), now=now)
    for _ in range(4):
        aggregator.add(event("Election results", now - 50), now=now)
    aggregator.add(event("once", now - 10), now=now)
    snap = aggregator.snapshot("1h", now=now)
    assert snap["top_queries"][:2] == [
        {"query": "floods", "count": 6},
        {"query": "election results", "count": 4},
    ]
    assert snap["rising_queries"] == [
        {"query": "election results", "count": 4, "previous": 0, "growth": 4.0},
        {"query": "floods", "count": 6, "previous": 2, "growth": pytest.approx(4 / 3, 1e-3)},
    ]
    assert snap["searches"] == 11
    day = aggregator.snapshot("24h", now=now)
    assert day["top_queries"][0] == {"query": "floods", "count": 8}
    with pytest.raises(KeyError):
        aggregator.snapshot("7d", now=now)


# --- stories --------------------------------------------------------------------------------


def test_stories_rank_by_distinct_sources_in_the_window() -> None:
    tracker = StoryTracker(max_stories=100)
    for src in ("bbc.example", "BBC.example ", "cnn.example", "dw.example", "ap.example"):
        tracker.add("s-floods", "Floods", [src], T0)
    tracker.add("s-vote", "Vote", ["bbc.example", "cnn.example"], T0 + 10)
    tracker.add("s-vote", "Vote count", ["", "ap.example"], T0 + 20)
    tracker.add("s-old", "Old", ["a.example", "b.example", "c.example", "d.example"], T0 - 90_000)
    top = tracker.top(10, now=T0 + 30, window_s=86_400)
    assert [(s.story_id, s.source_count) for s in top] == [("s-floods", 4), ("s-vote", 3)]
    assert top[0].sources == ["ap.example", "bbc.example", "cnn.example", "dw.example"]
    assert top[1].title == "Vote count"  # the latest title
    # The last hour only counts sources seen in it.
    tracker.add("s-vote", "Vote count", ["bbc.example"], T0 + 4000)
    hour = tracker.top(10, now=T0 + 4000, window_s=3600)
    assert [(s.story_id, s.source_count) for s in hour] == [("s-vote", 1)]
    tracker.prune(T0 + 30)
    assert len(tracker) == 2


def test_story_caps_evict_the_fewest_sources_and_the_oldest_source() -> None:
    tracker = StoryTracker(max_stories=10, max_sources=3)  # sources a, b, c seen in this order
    for i, source in enumerate(("a", "b", "c")):
        tracker.add("big", "Big", [source], T0 + i)
    for i in range(30):
        tracker.add(f"small{i}", "Small", ["a"], T0 + i)
    assert len(tracker) <= 10
    assert tracker.top(1, now=T0 + 30, window_s=3600)[0].story_id == "big"
    tracker.add("big", "Big", ["d"], T0 + 40)
    assert tracker.top(1, now=T0 + 40, window_s=3600)[0].sources == ["b", "c", "d"]


def test_aggregator_counts_stories_from_top_results_and_other_sources() -> None:
    aggregator = TrendsAggregator()
    now = T0
    aggregator.add(event("floods", now, [("s1", "Floods", "bbc.example")]), now=now)
    aggregator.add(
        SearchEvent(
            query="rain",
            mode="semantic",
            result_count=1,
            latency_ms=1.0,
            at=now,
            top_results=[
                TopResult(
                    story_id="s1",
                    title="Floods",
                    source="dw.example",
                    url="https://dw.example/1",
                    other_sources=["cnn.example", "bbc.example"],
                )
            ],
        ),
        now=now,
    )
    aggregator.add(event("vote", now, [("s2", "Vote", "ap.example")]), now=now)
    stories = aggregator.snapshot("24h", now=now)["top_stories"]
    assert stories[0] == {
        "story_id": "s1",
        "title": "Floods",
        "sources": ["bbc.example", "cnn.example", "dw.example"],
        "source_count": 3,
    }
    assert stories[1]["story_id"] == "s2"


# --- the /trends view ------------------------------------------------------------------------


def test_view_rejects_unknown_windows_and_maps_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", kafka_status_topic="unit.status")
    with pytest.raises(InvalidRequest):
        trends_view.trends_response(settings, "7d")

    aggregator = TrendsAggregator()
    aggregator.add(event("floods", T0, [("s1", "Floods", "bbc.example")]), now=T0)
    snapshot = {**aggregator.snapshot("1h", now=T0), "kind": "trends", "key": "1h", "at": T0}
    monkeypatch.setattr(trends_view, "read_status", lambda _s, kind: {"1h": snapshot})
    monkeypatch.setattr(trends_view, "_cache", {})
    answer = trends_view.trends_response(settings, "1h")
    assert answer == {
        "window": "1h",
        "top_queries": [{"query": "floods", "count": 1}],
        "rising_queries": [],
        "top_stories": [
            {"story_id": "s1", "title": "Floods", "sources": ["bbc.example"], "source_count": 1}
        ],
        "updated_at": T0,
    }
    empty = trends_view.trends_response(settings, "24h")
    assert empty == {
        "window": "24h",
        "top_queries": [],
        "rising_queries": [],
        "top_stories": [],
        "updated_at": None,
    }


# --- the service boundary --------------------------------------------------------------------


def test_the_trends_service_and_the_api_meet_only_through_core() -> None:
    """trends imports only core; the API and the other services never import trends (they
    meet through Kafka: search events in, status snapshots out)."""
    outside_core = {
        m: p - {"core", "trends"} for m, p in packages_imported_by("trends", OUR_PACKAGES).items()
    }
    assert not {m: p for m, p in outside_core.items() if p}, outside_core
    for service in ("search_api", "producers", "consumers", "dedup", "core"):
        importers = [
            m for m, p in packages_imported_by(service, OUR_PACKAGES).items() if "trends" in p
        ]
        assert not importers, f"{service} imports trends: {importers}"
