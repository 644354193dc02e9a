"""Prometheus files under Debian's promtool: it accepts the config and the rules, and each alert
fires on the condition it describes and not before its `for` (`promtool test rules`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import ALERTS, PROMETHEUS, load_yaml, require_binary, run

import core.metrics

pytestmark = pytest.mark.integration


def test_promtool_accepts_the_prometheus_config_and_rules() -> None:
    exe = require_binary("promtool", "prometheus")
    result = run([exe, "check", "config", str(PROMETHEUS)])
    assert result.returncode == 0, result.stdout + result.stderr
    result = run([exe, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def _buckets(value_per_minute: float, above: float) -> list[dict[str, str]]:
    """Histogram series whose observations all fall in the first bucket above ``above``."""
    bounds = [*(str(b) for b in core.metrics._TTS_BUCKETS), "+Inf"]
    return [
        {
            "series": f'newsstream_time_to_searchable_seconds_bucket{{job="worker",le="{le}"}}',
            "values": f"0+{value_per_minute}x40" if float(le) > above else "0x40",
        }
        for le in bounds
    ]


def promtool_test_rules(tmp_path: Path, tests: dict[str, Any]) -> None:
    """Run ``promtool test rules`` with ``tests`` on a copy of alerts.yml without annotations.

    Annotations are prose with templates; leaving them out keeps the tests about what decides
    whether an alert fires: expr, for and labels.
    """
    exe = require_binary("promtool", "prometheus")
    rules = load_yaml(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    (tmp_path / "alerts_test.yml").write_text(
        yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m", **tests}),
        encoding="utf-8",
    )
    result = subprocess.run(
        [exe, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_on_the_conditions_they_describe(tmp_path: Path) -> None:
    """Each alert fires on synthetic series showing its condition, and not before its `for`."""
    w1, w2 = 'job="worker",instance="worker-1:9100"', 'job="worker",instance="worker-2:9100"'
    series = [
        # one DLQ message at minute 2
        {
            "series": f'newsstream_outcomes_total{{outcome="dlq",reason="none",{w1}}}',
            "values": "0 0 1x40",
        },
        # worker-1 dies at minute 2, worker-2 stays up
        {"series": f"up{{{w1}}}", "values": "1 1 0x40"},
        {"series": f"up{{{w2}}}", "values": "1x40"},
        # partition 0 grows, partition 1 is large but steady (no alert for it)
        {"series": f'newsstream_consumer_lag{{partition="0",{w1}}}', "values": "2000+100x40"},
        {"series": f'newsstream_consumer_lag{{partition="1",{w2}}}', "values": "5000x40"},
        {"series": 'newsstream_feeds_broken{job="producer"}', "values": "3x40"},
        *_buckets(60, above=5.0),  # every article takes 5-10 s
    ]
    tests = {
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "DLQMessages", "exp_alerts": []},
                    {
                        "eval_time": "3m",
                        "alertname": "DLQMessages",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "WorkerDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "worker",
                                    "instance": "worker-1:9100",
                                }
                            }
                        ],
                    },
                    {"eval_time": "5m", "alertname": "NoWorkers", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "ConsumerLagGrowing", "exp_alerts": []},
                    {
                        "eval_time": "35m",
                        "alertname": "ConsumerLagGrowing",
                        "exp_alerts": [{"exp_labels": {"severity": "warning", "partition": "0"}}],
                    },
                    {
                        "eval_time": "25m",
                        "alertname": "TimeToSearchableSlow",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                    {"eval_time": "20m", "alertname": "FeedsBroken", "exp_alerts": []},
                    {
                        "eval_time": "35m",
                        "alertname": "FeedsBroken",
                        "exp_alerts": [{"exp_labels": {"severity": "info"}}],
                    },
                ],
            }
        ],
    }
    promtool_test_rules(tmp_path, tests)


def test_time_to_searchable_alert_stays_quiet_when_articles_are_fast(tmp_path: Path) -> None:
    tests = {
        "tests": [
            {
                "interval": "1m",
                "input_series": _buckets(60, above=1.0),  # every article takes 1-2 s
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "TimeToSearchableSlow", "exp_alerts": []}
                ],
            }
        ],
    }
    promtool_test_rules(tmp_path, tests)
