"""Prometheus: every newsstream process is scraped, every scrape target is a process serving
metrics, and the alert rules query only metrics, labels and values that exist (promtool's checks
and `promtool test rules` run in tests/integration/test_promtool.py).
"""

from __future__ import annotations

import pytest
from deploy_files import (
    ALERTS,
    PROMETHEUS,
    alert_rules,
    load_yaml,
    metrics_ports,
    newsstream_services,
    scrape_jobs,
    service_settings,
    services,
)
from promql_check import (
    check_expr,
    selectors,
)

# --- Prometheus ----------------------------------------------------------------------------------


def test_prometheus_scrapes_every_newsstream_process(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_yaml(PROMETHEUS)
    assert ALERTS.name in config["rule_files"]
    jobs = scrape_jobs()
    expected_jobs = {"produce": "producer", "consume": "worker", "serve": "api", "trends": "trends"}
    for subcommand, job in expected_jobs.items():
        for name, svc in newsstream_services(subcommand).items():
            settings = service_settings(svc, monkeypatch)
            port = settings.api_port if subcommand == "serve" else settings.metrics_port
            assert f"{name}:{port}" in jobs.get(job, []), f"job {job} does not scrape {name}"


def test_alert_rules_cover_what_operators_must_hear_about() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    used = {(sel.metric, tuple(sel.matchers)) for e in exprs.values() for sel in selectors(e)}
    names = {metric for metric, _ in used}
    assert "newsstream_consumer_lag" in names
    assert ("newsstream_outcomes_total", (("outcome", "=", "dlq"),)) in used
    assert "newsstream_feeds_broken" in names
    assert "newsstream_time_to_searchable_seconds_bucket" in names
    assert ("up", (("job", "=", "worker"),)) in used


def test_alert_rules_query_only_existing_metrics_labels_and_values() -> None:
    jobs = set(scrape_jobs())
    problems = [p for rule in alert_rules() for p in check_expr(rule["expr"], jobs)]
    assert not problems, "\n".join(problems)


def test_every_scrape_target_is_a_compose_service_serving_metrics_on_that_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A target without a process behind it is `up == 0` forever (ServiceDown, WorkerDown)."""
    svcs = services()
    targets = [(job, t) for job, ts in scrape_jobs().items() for t in ts]
    assert targets, "no scrape targets"
    for job, target in targets:
        host, _, port = target.rpartition(":")
        assert host in svcs, f"job {job}: {target} names no compose service"
        served = metrics_ports(svcs[host], monkeypatch)
        assert int(port) in served, (
            f"job {job}: {host} serves metrics on {sorted(served) or 'no port'}, not {port}"
        )


def test_metrics_ports_of_a_service_follow_its_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule the test above relies on: which port each newsstream command serves."""
    base = {"image": "newsstream:latest", "environment": {"NEWSSTREAM_METRICS_PORT": "9100"}}
    assert metrics_ports({**base, "command": ["consume"]}, monkeypatch) == {9100}
    workers = {**base, "command": ["consume", "--workers", "3"]}
    assert metrics_ports(workers, monkeypatch) == {9100, 9101, 9102}
    assert metrics_ports({**base, "command": ["trends"]}, monkeypatch) == {9100}
    assert metrics_ports({**base, "command": ["serve"]}, monkeypatch) == {8000}
    off = {**base, "command": ["produce"], "environment": {"NEWSSTREAM_METRICS_PORT": "0"}}
    assert metrics_ports(off, monkeypatch) == set()
    other = {"image": "x", "healthcheck": {"test": ["CMD", "curl", "http://localhost:9091/x"]}}
    assert metrics_ports(other, monkeypatch) == {9091}
