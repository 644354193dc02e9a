"""The delete bench's figures and the settings its child processes get."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.settings import Settings
from newsstream.bench.delete import child_env, percentiles


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"count": 100, "p50": 50.0, "p95": 95.0, "max": 100.0}
    assert percentiles([3.0, 1.0]) == {"count": 2, "p50": 1.0, "p95": 3.0, "max": 3.0}
    assert percentiles([]) == {"count": 0, "p50": 0.0, "p95": 0.0, "max": 0.0}


def test_a_child_loads_exactly_the_settings_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Settings(
        data_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:9999",
        api_admin_keys=[SecretStr("k1")],
        fetch_allow_networks=["127.0.0.1/32"],
        worker_batch_time_s=0.25,
        api_search_events=False,
    )
    monkeypatch.setenv("NEWSSTREAM_KAFKA_TOPIC", "from-the-shell")
    env = child_env(run)
    assert env["NEWSSTREAM_KAFKA_TOPIC"] == run.kafka_topic
    for name in [k for k in list(os.environ) if k.startswith("NEWSSTREAM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("NEWSSTREAM_"):
            monkeypatch.setenv(name, value)
    assert Settings() == run
