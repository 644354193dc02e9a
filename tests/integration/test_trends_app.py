"""The trends app on the real local broker: search events in, ``GET /trends`` data out.

`newsstream trends` runs as a child process (as under `up`); events are produced with the same
helper the API uses. The broker's watermarks are not trusted (Tansu 0.6 reports them wrong for
multi-record batches): the test waits, bounded, for the published snapshot instead.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from metrics_scrape import free_port_range, scrape

from core.kafka import ensure_topics
from core.search_events import SearchEvent, TopResult, emit_search_event, search_events_producer
from core.settings import Settings
from core.status import read_status
from newsstream.stack.proctree import stop_process
from search_api.trends_view import trends_response

from worker_procs import ROOT, settings_env

pytestmark = pytest.mark.integration

WAIT_S = 90.0


@pytest.fixture
def settings(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> Settings:
    # Built here rather than with make_settings: the trends app needs no Milvus server.
    return Settings(
        data_dir=tmp_path / "data",
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=f"{unique_name}.articles",
        kafka_dlq_topic=f"{unique_name}.dlq",
        kafka_search_events_topic=f"{unique_name}.search",
        kafka_status_topic=f"{unique_name}.status",
        kafka_partitions=1,
        kafka_max_poll_interval_ms=10_000,
        kafka_session_timeout_ms=6_000,
    )


def start_trends(settings: Settings, log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    handle = open(log, "ab")  # noqa: SIM115 - closed by the OS when the child exits
    return subprocess.Popen(
        [sys.executable, "-m", "newsstream", "trends", "--every", "1"],
        env=settings_env(settings, **extra_env),
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def search_events(now: float) -> list[SearchEvent]:
    """50 searches: 25 for floods (in several spellings), 15 for the election, 10 one-offs.

    The floods story shows up from four sources, the election story from two.
    """
    floods = [
        "Floods in Pakistan",
        "floods  in pakistan",
        "FLOODS IN PAKISTAN",
        "ｆｌｏｏｄｓ in Pakistan",
    ]
    events = []
    for i in range(25):
        events.append(
            SearchEvent(
                query=floods[i % len(floods)],
                mode="hybrid",
                result_count=5,
                latency_ms=20.0,
                at=now - i,
                story_ids=["story-floods", "story-vote"],
                top_results=[
                    TopResult(
                        story_id="story-floods",
                        title="Floods in Pakistan",
                        source=f"src{i % 4}.example",
                        url=f"https://src{i % 4}.example/floods",
                    )
                ],
            )
        )
    for i in range(15):
        events.append(
            SearchEvent(
                query="election results",
                mode="semantic",
                result_count=3,
                latency_ms=15.0,
                at=now - i,
                story_ids=["story-vote"],
                top_results=[
                    TopResult(
                        story_id="story-vote",
                        title="Election results",
                        source=f"vote{i % 2}.example",
                        url="https://vote.example/",
                    )
                ],
            )
        )
    for i in range(10):
        events.append(
            SearchEvent(
                query=f"one-off {i}", mode="keyword", result_count=0, latency_ms=5.0, at=now
            )
        )
    return events


def wait_for(settings: Settings, check: Any, after: float = 0.0) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = trends_response(settings, "1h")
        if (last["updated_at"] or 0) > after and check(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"trends did not show the expected state within {WAIT_S}s: {last}")


def expected(answer: dict[str, Any]) -> bool:
    return (
        bool(answer["top_queries"])
        and answer["top_queries"][0] == {"query": "floods in pakistan", "count": 25}
        and bool(answer["top_stories"])
        and answer["top_stories"][0]["story_id"] == "story-floods"
        and answer["top_stories"][0]["source_count"] == 4
    )


def test_trends_app_publishes_top_queries_and_stories_and_rebuilds_after_restart(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    events = search_events(time.time())
    producer = search_events_producer(settings)
    # Some events are there before the app starts (replayed from the earliest offset), the rest
    # arrive while it runs; one poison message must be skipped, not crash it.
    for event in events[::2]:
        emit_search_event(producer, settings.kafka_search_events_topic, event)
    assert producer.flush(10) == 0
    raw = Producer({"bootstrap.servers": settings.kafka_bootstrap or ""})
    raw.produce(settings.kafka_search_events_topic, value=b"{not json")
    assert raw.flush(10) == 0

    log = tmp_path / "trends.log"
    process = start_trends(settings, log)
    try:
        for event in events[1::2]:
            emit_search_event(producer, settings.kafka_search_events_topic, event)
        assert producer.flush(10) == 0

        started = time.monotonic()
        answer = wait_for(settings, expected)
        print(f"first complete snapshot after {time.monotonic() - started:.1f}s")
        assert answer["top_queries"][1] == {"query": "election results", "count": 15}
        assert answer["top_stories"][0]["sources"] == [f"src{i}.example" for i in range(4)]
        assert answer["top_stories"][1]["story_id"] == "story-vote"
        assert answer["top_stories"][1]["source_count"] == 2
        rising = {r["query"]: r for r in answer["rising_queries"]}
        assert rising["floods in pakistan"]["previous"] == 0
        assert "one-off 1" not in rising  # below the minimum count
        raw_snapshot = read_status(settings, "trends")["1h"]
        assert raw_snapshot["consumed"] == 50 and raw_snapshot["invalid"] == 1
    finally:
        code = stop_process(process)
    assert code == 0, log.read_text(errors="replace")[-3000:]

    # A restart rebuilds the same counts from the topic (never committed, replayed): not zero,
    # not doubled.
    restarted_at = time.time()
    process = start_trends(settings, log)
    try:
        answer = wait_for(settings, expected, after=restarted_at)
        assert answer["top_queries"][0]["count"] == 25
    finally:
        code = stop_process(process)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert "Traceback" not in log.read_text(errors="replace")


def test_view_answers_empty_before_the_first_snapshot(settings: Settings) -> None:
    ensure_topics(settings)
    assert trends_response(settings, "24h") == {
        "window": "24h",
        "top_queries": [],
        "rising_queries": [],
        "top_stories": [],
        "updated_at": None,
    }


def test_trends_serves_metrics_while_it_aggregates(settings: Settings, tmp_path: Path) -> None:
    """Prometheus scrapes `trends` and compose health-checks it: a live app answers /metrics."""
    ensure_topics(settings)
    port = free_port_range(1)
    log = tmp_path / "trends.log"
    process = start_trends(settings, log, NEWSSTREAM_METRICS_PORT=str(port))
    samples = None
    try:
        producer = search_events_producer(settings)
        for event in search_events(time.time()):
            emit_search_event(producer, settings.kafka_search_events_topic, event)
        assert producer.flush(10) == 0
        # scraped while the app consumes and publishes: the snapshot proves it is the live app
        answer = wait_for(settings, expected)
        assert answer["top_queries"][0]["count"] == 25
        samples = scrape(port)
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
    finally:
        code = stop_process(process)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert samples is not None, f"nothing serves /metrics on port {port}"
    assert "process_start_time_seconds" in samples or "python_info" in samples, sorted(samples)
    assert any(name.startswith("newsstream_") for name in samples), sorted(samples)
    assert scrape(port) is None, "the metrics endpoint outlived the process"
