"""Grafana: provisioning matches the dashboard and the compose mounts, the panels query only
metrics, labels and values that exist, and show what the operators' issue asks for.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from deploy_files import (
    GRAFANA,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    load_yaml,
    one_service_with_image,
    scrape_jobs,
)
from promql_check import (
    check_expr,
    selectors,
)

# --- Grafana -------------------------------------------------------------------------------------


def test_grafana_provisioning_matches_the_dashboard_and_the_compose_mounts() -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    prometheus_name, _ = one_service_with_image("prom/prometheus")
    assert urlsplit(source["url"]).hostname == prometheus_name
    assert source["type"] == "prometheus"

    for panel in dashboard_panels(dashboard()["panels"]):
        for item in [panel, *panel.get("targets", [])]:
            if "datasource" in item:
                assert item["datasource"]["uid"] == source["uid"], panel["title"]

    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")
    paths = {p["options"]["path"] for p in providers["providers"]}
    _, grafana = one_service_with_image("grafana/grafana")
    mounts = {}
    for volume in grafana["volumes"]:
        src, dst = str(volume).split(":")[:2]
        mounts[dst] = src
    assert mounts.get("/etc/grafana/provisioning") == "./infra/grafana/provisioning"
    for path in paths:
        assert mounts.get(path) == "./infra/grafana/dashboards", f"{path} is not mounted"


def test_dashboard_queries_only_existing_metrics_labels_and_values() -> None:
    exprs = dashboard_exprs()
    assert exprs, "the dashboard has no queries"
    jobs = set(scrape_jobs())
    problems = [p for expr in exprs for p in check_expr(expr, jobs)]
    assert not problems, "\n".join(problems)


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """Ingest rate, outcomes, rejects, lag, time-to-searchable, embed/upsert latency, fetches,
    broken feeds, search latency and QPS, dedup index size."""
    used = {sel.metric for expr in dashboard_exprs() for sel in selectors(expr)}
    required = {
        "newsstream_entries_published_total",
        "newsstream_messages_consumed_total",
        "newsstream_outcomes_total",
        "newsstream_consumer_lag",
        "newsstream_time_to_searchable_seconds_bucket",
        "newsstream_stage_seconds_bucket",
        "newsstream_feed_fetches_total",
        "newsstream_feeds_broken",
        "newsstream_search_seconds_bucket",
        "newsstream_search_requests_total",
        "newsstream_dedup_index_size",
    }
    assert not required - used, f"no panel shows {sorted(required - used)}"
    exprs = " ".join(dashboard_exprs())
    assert 'outcome="rejected"' in exprs and "by (reason)" in exprs
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.95," in exprs
    assert 'stage=~"embed|upsert"' in exprs
    ids = [p["id"] for p in dashboard_panels(dashboard()["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_promql_selector_parser_finds_names_labels_and_skips_grouping() -> None:
    """The parser the two tests above rely on (a parser that finds nothing checks nothing)."""
    expr = (
        'histogram_quantile(0.95, sum by (le, mode) (rate(newsstream_search_seconds_bucket{mode="x"}'
        "[$__rate_interval]))) / on (job) group_left up offset 5m and bogus_metric"
    )
    found = [(s.metric, s.matchers) for s in selectors(expr)]
    assert found == [
        ("newsstream_search_seconds_bucket", [("mode", "=", "x")]),
        ("up", []),
        ("bogus_metric", []),
    ]
    problems = check_expr(expr, {"worker"})
    assert any("bogus_metric" in p for p in problems)
    assert any("mode='x'" in p for p in problems)
    assert (
        check_expr('sum(rate(newsstream_outcomes_total{outcome=~"dlq|rejected"}[5m]))', set()) == []
    )
