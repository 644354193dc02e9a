"""`stats`, `dlq list`, `dlq replay` and `reconcile` find the broker and Milvus of a running
`newsstream up` the way `search` finds its API: from the marker `up` keeps in its data dir.

The "running up" is this test process (alive) with the session's broker and Milvus written into
a marker by the same code `up` uses; the commands run through typer's CliRunner with neither
NEWSSTREAM_KAFKA_BOOTSTRAP nor NEWSSTREAM_MILVUS_URI set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from core.kafka import ensure_topics
from core.settings import Settings
from newsstream.cli.app import app
from newsstream.cli.common import running_api
from newsstream.stack.up_marker import RunningUp, marker_path, remove_marker, write_marker

from conftest import require_shared_data
from probes import wait_for_lag_zero
from running import running_worker
from worker_procs import bbc_articles, poison_values, settings_env

pytestmark = pytest.mark.integration

UNSET = ("NEWSSTREAM_KAFKA_BOOTSTRAP", "NEWSSTREAM_MILVUS_URI")


def _env_without_addresses(settings: Settings, **extra: str) -> dict[str, str]:
    env = settings_env(settings, **extra)
    for name in UNSET:
        env.pop(name, None)
    return env


def _run(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env=env)
    return result


def _json(env: dict[str, str], *args: str) -> Any:
    result = _run(env, *args, "--json")
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.output}"
    return json.loads(result.output)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_ops_commands_use_the_running_up_and_explicit_settings_win(
    make_settings: Any, embedder: Any, unique_name: str
) -> None:
    settings = make_settings(kafka_status_topic=f"{unique_name}.status")
    articles = list(bbc_articles(require_shared_data("eval", "bbc-news"), 12, offset=1800))
    poison = poison_values(3)
    ensure_topics(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for article in articles:
        producer.produce(settings.kafka_topic, key=article.id.encode(), value=article.to_bytes())
    for n, value in enumerate(poison):
        producer.produce(settings.kafka_topic, key=f"poison-{n}".encode(), value=value)
    assert producer.flush(30) == 0
    with running_worker(settings, embedder):
        wait_for_lag_zero(settings, 120)

    up = RunningUp(
        pid=os.getpid(),
        api="http://127.0.0.1:9",
        kafka_bootstrap=settings.kafka_bootstrap,
        milvus_uri=settings.milvus_uri,
    )
    write_marker(settings.data_dir, up)
    env = _env_without_addresses(settings)

    stats = _json(env, "stats")
    assert stats["total"]["consumed"] == len(articles) + len(poison)
    assert stats["total"]["balanced"]
    listed = _json(env, "dlq", "list")
    assert listed["total"] == len(poison)
    dry = _json(env, "dlq", "replay", "--dry-run")
    assert dry["replayed"] == len(poison)
    reconciled = _json(env, "reconcile", "--dry-run")
    assert (reconciled["expected"], reconciled["in_milvus"]) == (len(articles), len(articles))
    assert running_api(settings) == up.api  # `search` reads the same marker

    # Explicit settings win over the marker: a marker that points nowhere changes nothing
    # for commands whose settings name the broker and Milvus.
    write_marker(
        settings.data_dir,
        RunningUp(pid=os.getpid(), kafka_bootstrap="127.0.0.1:1", milvus_uri="http://127.0.0.1:1"),
    )
    explicit = settings_env(settings)
    assert _json(explicit, "stats")["total"]["consumed"] == len(articles) + len(poison)
    assert _json(explicit, "reconcile", "--dry-run")["in_milvus"] == len(articles)


@pytest.mark.parametrize("state", ["no marker", "up gone"])
def test_with_no_up_running_and_nothing_configured_the_commands_say_what_is_missing(
    make_settings: Any, state: str
) -> None:
    settings = make_settings()
    if state == "up gone":  # `up` killed with -9 leaves its marker behind
        write_marker(
            settings.data_dir,
            RunningUp(pid=_dead_pid(), kafka_bootstrap=settings.kafka_bootstrap or ""),
        )
        assert marker_path(settings.data_dir).exists()
    else:
        remove_marker(settings.data_dir)
    env = _env_without_addresses(settings, COLUMNS="300")
    for args in (["stats"], ["dlq", "list"], ["dlq", "replay"], ["reconcile"]):
        result = _run(env, *args)
        assert result.exit_code == 2, f"{args}: exit {result.exit_code}\n{result.output}"
        message = " ".join(result.output.split())
        assert "NEWSSTREAM_KAFKA_BOOTSTRAP is not set" in message, message
        assert "no `newsstream up` is running" in message, message
    assert running_api(settings) is None


def test_reconcile_needs_milvus_too(make_settings: Any) -> None:
    settings = make_settings()
    write_marker(
        settings.data_dir, RunningUp(pid=os.getpid(), kafka_bootstrap=settings.kafka_bootstrap)
    )
    result = _run(_env_without_addresses(settings, COLUMNS="300"), "reconcile", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "NEWSSTREAM_MILVUS_URI is not set" in " ".join(result.output.split())
