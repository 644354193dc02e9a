"""After a real run, /metrics parses with the Prometheus text parser, the outcome counters add
up to the messages consumed, and no label value falls outside its closed set; `newsstream
consume --workers N` serves one /metrics per worker process, scraped over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from metrics_scrape import free_port_range, scrape
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.article import Article
from core.kafka import ensure_topics, group_lag
from core.metrics import FetchResult, Outcome, RejectReason, SearchMode, Stage
from core.settings import Settings
from newsstream.stack.proctree import stop_process
from producers.publisher import Publisher
from search_api.app import create_app

from conftest import require_shared_data
from probes import wait_for_lag_zero
from running import running_worker
from worker_procs import ROOT, bbc_articles, poison_values, settings_env

pytestmark = pytest.mark.integration

CLOSED_SETS: dict[str, set[str]] = {
    "outcome": {o.value for o in Outcome},
    "reason": {r.value for r in RejectReason},
    "stage": {s.value for s in Stage},
    "mode": {m.value for m in SearchMode},
    "result": {r.value for r in FetchResult},
    "status": {"2xx", "4xx", "5xx"},
    "dependency": {"kafka", "milvus", "dedup", "redis"},
}


def _totals() -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == "newsstream_messages_consumed_total":
                totals["consumed"] = totals.get("consumed", 0) + sample.value
            elif sample.name == "newsstream_outcomes_total":
                key = sample.labels["outcome"]
                totals[key] = totals.get(key, 0) + sample.value
    return totals


def test_metrics_parse_add_up_and_use_closed_label_sets(make_settings: Any, embedder: Any) -> None:
    bbc = require_shared_data("eval", "bbc-news")
    settings = make_settings(api_search_events=False)
    ensure_topics(settings)
    good = list(bbc_articles(bbc, 60, offset=1600))
    short = Article(id="f" * 32, url="https://x.example/s", title="Hi", source="x.example")
    before = _totals()
    publisher = Publisher(settings)
    assert len(publisher.publish([*good, short])) == len(good) + 1
    publisher.close()
    from confluent_kafka import Producer

    raw = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for value in poison_values(5):
        raw.produce(settings.kafka_topic, value=value)
    assert raw.flush(10) == 0
    with running_worker(settings, embedder):
        wait_for_lag_zero(settings, 180)
        with TestClient(create_app(settings, embedder)) as api:
            assert api.get("/search", params={"q": "economy"}).status_code == 200
            text = api.get("/metrics").text
    after = _totals()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta["consumed"] == len(good) + 1 + 5
    assert delta["consumed"] == sum(delta.get(o.value, 0) for o in Outcome)
    assert delta.get("dlq", 0) == 5 and delta.get("rejected", 0) == 1

    families = list(text_string_to_metric_families(text))
    assert any(f.name == "newsstream_search_seconds" for f in families)
    for family in families:
        if not family.name.startswith("newsstream_"):
            continue
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label == "le":
                    continue
                if label == "partition":
                    assert value.isdigit() or value == "other", sample
                    continue
                assert label in CLOSED_SETS, f"{sample.name} has an unexpected label {label}"
                assert value in CLOSED_SETS[label], f"{sample.name}{{{label}={value!r}}}"


def _total(samples: dict[str, list[Any]] | None, name: str) -> float:
    return sum(s.value for s in (samples or {}).get(name, []))


def test_consume_with_several_workers_serves_metrics_of_each_worker_process(
    make_settings: Any, tmp_path: Path
) -> None:
    """Worker k of `consume --workers 2` serves its own registry on the metrics port + k."""
    bbc = require_shared_data("eval", "bbc-news")
    settings = make_settings(api_search_events=False)
    ensure_topics(settings)
    articles = list(bbc_articles(bbc, 20, offset=1400))
    publisher = Publisher(settings)
    assert len(publisher.publish(articles)) == len(articles)
    publisher.close()

    base = free_port_range(2)
    env = settings_env(
        settings,
        NEWSSTREAM_METRICS_PORT=str(base),
        # torch: no int8 model export into this test's fresh data dir
        NEWSSTREAM_EMBEDDING_BACKEND="torch",
        NEWSSTREAM_EMBEDDING_THREADS="1",
    )
    log = tmp_path / "consume.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "newsstream", "consume", "--workers", "2"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    partitions = {str(p) for p in range(settings.kafka_partitions)}
    scraped: dict[int, dict[str, list[Any]] | None] = {}
    try:
        deadline = time.monotonic() + 300
        committed_at = None  # when the group had committed every article (then 20 s more)
        while time.monotonic() < deadline and process.poll() is None:
            if committed_at is None and not any(group_lag(settings).values()):
                committed_at = time.monotonic()
            if committed_at is not None and time.monotonic() - committed_at > 20:
                break
            scraped = {port: scrape(port) for port in (base, base + 1)}
            # each endpoint is a live worker: its lag reporter covers the group's partitions
            lag_seen = all(
                {s.labels["partition"] for s in (m or {}).get("newsstream_consumer_lag", [])}
                >= partitions
                for m in scraped.values()
            )
            consumed = sum(
                _total(m, "newsstream_messages_consumed_total") for m in scraped.values()
            )
            if lag_seen and consumed >= len(articles):
                break
            time.sleep(2)
    finally:
        code = stop_process(process)
    output = log.read_text(errors="replace")[-3000:]
    assert code == 0, output
    silent = [port for port in (base, base + 1) if scraped.get(port) is None]
    assert not silent, f"nothing serves /metrics on ports {silent} (worker log: {output})"
    consumed = sum(_total(m, "newsstream_messages_consumed_total") for m in scraped.values())
    outcomes = sum(_total(m, "newsstream_outcomes_total") for m in scraped.values())
    assert consumed == len(articles), output
    assert outcomes == consumed
    for port, samples in scraped.items():
        lag = {s.labels["partition"] for s in (samples or {}).get("newsstream_consumer_lag", [])}
        assert lag >= partitions, f"port {port} is no live worker: lag for {sorted(lag)}"


def test_consume_refuses_to_start_when_a_workers_metrics_port_is_taken(
    tmp_path: Path,
) -> None:
    base = free_port_range(2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "newsstream", "consume", "--workers", "2"],
            env={
                **settings_env(Settings(data_dir=tmp_path)),
                "NEWSSTREAM_METRICS_PORT": str(base),
                "NEWSSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            },
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"127.0.0.1:{base + 1}" in result.stderr and "NEWSSTREAM_METRICS_PORT" in result.stderr
