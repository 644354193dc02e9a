"""After a real run, /metrics parses with the Prometheus text parser, the outcome counters add
up to the messages consumed, and no label value falls outside its closed set."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.article import Article
from core.kafka import ensure_topics
from core.metrics import FetchResult, Outcome, RejectReason, SearchMode, Stage
from producers.publisher import Publisher
from search_api.app import create_app

from conftest import require_shared_data
from probes import wait_for_lag_zero
from running import running_worker
from worker_procs import bbc_articles, poison_values

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
