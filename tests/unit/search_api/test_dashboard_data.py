"""The dashboard's pure parts: ingest rate, quantiles, rankings, feed health, and a page that
never turns data into HTML; plus /dashboard/data answering while Kafka and Milvus are absent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.settings import Settings
from search_api.dashboard import attach_dashboard
from search_api.dashboard_view import (
    Sample,
    count_sources,
    feed_health,
    histogram_quantile,
    latency_summary,
    ranked_items,
    rate_series,
    sample_from_workers,
    trends_view,
    tts_summary,
    worker_totals,
)

STATIC = Path(__file__).resolve().parents[3] / "search_api" / "static"


def _sample(t: float, indexed: int) -> Sample:
    return Sample(t=t, consumed=indexed, indexed=indexed, duplicate=0, rejected=0, dlq=0)


def test_rate_is_indexed_per_second_between_distinct_samples() -> None:
    samples = [_sample(100, 0), _sample(105, 50), _sample(105, 50), _sample(110, 60)]
    assert rate_series(samples) == [[105, 10.0], [110, 2.0]]


def test_rate_never_goes_negative_and_skips_time_going_back() -> None:
    samples = [_sample(100, 80), _sample(95, 10), _sample(102, 40), _sample(104, 44)]
    assert rate_series(samples) == [[102, 0.0], [104, 2.0]]


def test_rate_needs_two_samples() -> None:
    assert rate_series([]) == []
    assert rate_series([_sample(1, 5)]) == []


def test_totals_sum_workers_and_reasons() -> None:
    workers = {
        "w1": {"consumed": 10, "indexed": 6, "duplicate": 2, "rejected": 1, "dlq": 1, "at": 5.0,
               "rejected_by_reason": {"too_short": 1}},
        "w2": {"consumed": 5, "indexed": 3, "duplicate": 0, "rejected": 2, "dlq": 0, "at": 7.0,
               "rejected_by_reason": {"too_short": 1, "spam": 1}},
    }  # fmt: skip
    total = worker_totals(workers)
    assert total["consumed"] == 15 and total["indexed"] == 9 and total["in_flight"] == 0
    assert total["rejected_by_reason"] == {"too_short": 2, "spam": 1}
    sample = sample_from_workers(workers)
    assert sample is not None and sample.t == 7.0 and sample.indexed == 9
    assert sample_from_workers({}) is None
    assert sample_from_workers({"w": {"indexed": 3}}) is None  # no time: not a sample


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    # a quantile in the +Inf bucket answers the highest finite bound
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 10.0)]) == 1.0


def test_latency_summary_sums_over_modes() -> None:
    samples = [
        ({"mode": "hybrid", "le": "0.1"}, 1.0),
        ({"mode": "hybrid", "le": "+Inf"}, 1.0),
        ({"mode": "semantic", "le": "0.1"}, 1.0),
        ({"mode": "semantic", "le": "+Inf"}, 3.0),
    ]
    summary = latency_summary(samples)
    assert summary["count"] == 4 and summary["p50_s"] == pytest.approx(0.1)
    assert latency_summary([]) == {"p50_s": None, "p95_s": None, "count": 0}


def test_tts_is_none_until_workers_report_it() -> None:
    assert tts_summary({"w": {"indexed": 3}}) is None
    workers = {
        "a": {"tts": {"p50_s": 1.0, "p95_s": 2.0, "n": 30}},
        "b": {"tts": {"p50_s": 3.0, "p95_s": 9.0, "n": 10}},
    }
    assert tts_summary(workers) == {"p50_s": 1.5, "p95_s": 9.0, "n": 40}
    flat = {
        "a": {"tts_p50_s": 0.5, "tts_p95_s": 1.5, "tts_samples": 10},
        "b": {"tts_p50_s": None, "tts_p95_s": None, "tts_samples": 0},
    }
    assert tts_summary(flat) == {"p50_s": 0.5, "p95_s": 1.5, "n": 10}


def test_sources_ranked_by_rows_then_name() -> None:
    rows = [{"source": s} for s in ["b.com", "a.com", "b.com", "c.com", "a.com", "b.com"]]
    assert count_sources(rows, top=2) == [["b.com", 3], ["a.com", 2]]


def test_ranked_items_accept_pairs_dicts_and_strings() -> None:
    items = [
        ["floods", 7],
        {"title": "Story", "url": "https://x.test/s", "count": 3},
        {"story_id": "s1", "title": "Quake", "sources": ["a", "b"], "source_count": 2},
        {"query": "rising", "count": 4, "previous": 1, "growth": 1.5},
        "plain",
        42,
    ]
    assert ranked_items(items) == [
        {"label": "floods", "value": 7, "url": None},
        {"label": "Story", "value": 3, "url": "https://x.test/s"},
        {"label": "Quake", "value": 2, "url": None},
        {"label": "rising", "value": 4, "url": None},
        {"label": "plain", "value": None, "url": None},
    ]
    assert ranked_items(None) == []
    view = trends_view({"24h": {"top_queries": [["a", 1]]}, "1h": {"top_queries": []}})
    assert list(view) == ["1h", "24h"] and view["24h"]["top_queries"][0]["label"] == "a"


def test_feed_health_puts_failing_feeds_first() -> None:
    now = 1_000.0
    feeds = {
        "f1": {"name": "Alpha", "url": "https://a.test/rss", "last_result": "ok", "items": 10,
               "error_streak": 0, "last_fetch_at": 990.0, "next_poll_at": 1_300.0},
        "f2": {"name": "Beta", "url": "https://b.test/rss", "last_result": "timeout",
               "last_error": "x" * 1_000, "error_streak": 3},
    }  # fmt: skip
    health = feed_health(feeds, now)
    assert (health["total"], health["healthy"], health["failing"]) == (2, 1, 1)
    assert [r["name"] for r in health["rows"]] == ["Beta", "Alpha"]
    assert len(health["rows"][0]["last_error"]) == 200
    assert health["rows"][1]["last_fetch_ago_s"] == 10.0
    assert health["rows"][1]["next_poll_in_s"] == 300.0


def test_page_script_never_parses_data_as_html() -> None:
    script = (STATIC / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "DOMParser", "createContextualFragment"):  # fmt: skip
        assert sink not in script, f"dashboard.js uses {sink}"
    # links are built only through safeUrl, which keeps http(s) URLs
    assert re.search(r'protocol === "http:" \|\| url\.protocol === "https:"', script)
    assert script.count('el("a"') == 1


def test_page_loads_only_its_own_assets() -> None:
    html = (STATIC / "dashboard.html").read_text()
    assert "<script>" not in html and "style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith("/") or ref == "data:,", f"external asset {ref}"


def test_data_answers_with_sections_unavailable_when_nothing_runs(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, kafka_bootstrap=None, milvus_uri=None)
    app = FastAPI()
    attach_dashboard(app, settings)
    client = TestClient(app)
    body = client.get("/dashboard/data").json()
    for name in ("workers", "lag", "feeds", "trends", "milvus"):
        assert body["sections"][name]["ok"] is False, name
        assert body["sections"][name]["error"], name
    assert "Kafka is not configured" in body["sections"]["workers"]["error"]
    assert body["totals"] is None and body["lag"] is None and body["tts"] is None
    page = client.get("/dashboard")
    assert (
        page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    )
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
    assert client.get("/dashboard/static/..%2Fapp.py").status_code == 404
