"""The operator commands against the real local broker and Milvus Lite server.

`newsstream dlq list` shows poison with its headers, `newsstream dlq replay` re-queues it once,
`newsstream reconcile` finds and re-queues a row deleted from Milvus, and `newsstream stats`
adds up. Commands run through typer's CliRunner with the test's settings as environment.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from core.kafka import ensure_topics
from core.settings import Settings
from newsstream.cli.app import app
from store.client import connect

from conftest import require_shared_data
from probes import milvus_ids, read_topic, wait_for_lag_zero, wait_until
from running import running_worker
from worker_procs import bbc_articles, poison_values, settings_env

pytestmark = pytest.mark.integration


def _cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}\n{result.output}"
    return result.output


def _cli_json(settings: Settings, *args: str) -> Any:
    return json.loads(_cli(settings, *args, "--json"))


def _produce(settings: Settings, values: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for key, value in values:
        producer.produce(settings.kafka_topic, key=key, value=value)
    assert producer.flush(30) == 0


def test_dlq_list_shows_poison_replay_requeues_it_once_and_stats_add_up(
    make_settings: Any, embedder: Any, unique_name: str
) -> None:
    settings = make_settings(kafka_status_topic=f"{unique_name}.status")
    articles = list(bbc_articles(require_shared_data("eval", "bbc-news"), 40, offset=1500))
    poison = poison_values(6)
    ensure_topics(settings)
    _produce(settings, [(a.id.encode(), a.to_bytes()) for a in articles])
    _produce(settings, [(f"poison-{n}".encode(), v) for n, v in enumerate(poison)])
    with running_worker(settings, embedder):
        wait_for_lag_zero(settings, 120)
    # The worker published its final snapshot on close: it balances and counts every message.
    stats = _cli_json(settings, "stats")
    assert len(stats["workers"]) == 1
    worker = stats["workers"][0]
    assert worker["consumed"] == len(articles) + len(poison)
    assert (worker["indexed"], worker["dlq"]) == (len(articles), len(poison))
    assert worker["balanced"] and stats["total"]["balanced"]
    assert stats["total"]["consumed"] == worker["consumed"]
    table = _cli(settings, "stats")
    assert "total" in table and "ok" in table

    listed = _cli_json(settings, "dlq", "list")
    assert listed["total"] == len(poison)
    assert sorted(m["key"] for m in listed["messages"]) == sorted(
        f"poison-{n}" for n in range(len(poison))
    )
    for message in listed["messages"]:
        assert message["stage"] == "decode"
        assert message["error_class"] == "InvalidMessage"
        assert message["error_message"]
        assert message["original_topic"] == settings.kafka_topic
        assert isinstance(message["original_partition"], int)
        assert isinstance(message["original_offset"], int)
    assert "InvalidMessage" in _cli(settings, "dlq", "list", "--limit", "2")

    before = len(read_topic(settings, settings.kafka_topic))
    dry = _cli_json(settings, "dlq", "replay", "--dry-run")
    assert (dry["replayed"], dry["dry_run"]) == (len(poison), True)
    assert len(read_topic(settings, settings.kafka_topic)) == before, "a dry run sent messages"

    replay = _cli_json(settings, "dlq", "replay")
    assert replay["replayed"] == len(poison)
    requeued = read_topic(settings, settings.kafka_topic)
    assert len(requeued) == before + len(poison)
    tail = [m for m in requeued if (m.key() or b"").startswith(b"poison-")]
    assert sorted(m.value() for m in tail) == sorted(poison * 2), "original bytes changed"
    for message in tail:
        assert "stage" not in dict(message.headers() or []), "DLQ headers were not stripped"

    again = _cli_json(settings, "dlq", "replay")
    assert (again["replayed"], again["already_replayed"]) == (0, 0)
    assert len(read_topic(settings, settings.kafka_topic)) == before + len(poison)
    staged = _cli_json(settings, "dlq", "replay", "--stage", "decode")
    assert staged["replayed"] == 0, "a stage replay re-sent what a full replay had sent"


def test_dlq_replay_of_one_stage_is_remembered_by_a_full_replay(
    make_settings: Any, embedder: Any
) -> None:
    settings = make_settings(kafka_partitions=1)
    ensure_topics(settings)
    _produce(settings, [(None, v) for v in poison_values(3)])
    with running_worker(settings, embedder):
        wait_for_lag_zero(settings, 120)
    assert _cli_json(settings, "dlq", "replay", "--stage", "embed")["replayed"] == 0
    assert _cli_json(settings, "dlq", "replay", "--stage", "decode")["replayed"] == 3
    full = _cli_json(settings, "dlq", "replay")
    assert (full["replayed"], full["already_replayed"]) == (0, 3)
    bad = CliRunner().invoke(app, ["dlq", "replay", "--stage", "nope"], env=settings_env(settings))
    assert bad.exit_code == 2 and "unknown stage" in bad.output


def test_reconcile_requeues_a_row_deleted_from_milvus(make_settings: Any, embedder: Any) -> None:
    settings = make_settings()
    articles = list(bbc_articles(require_shared_data("eval", "bbc-news"), 30, offset=1600))
    ensure_topics(settings)
    _produce(settings, [(a.id.encode(), a.to_bytes()) for a in articles])
    _produce(settings, [(None, b"{not json")])  # a key that is not an article id
    ledger = {a.id for a in articles}
    with running_worker(settings, embedder):
        wait_for_lag_zero(settings, 120)
        assert milvus_ids(settings) == ledger
        clean = _cli_json(settings, "reconcile", "--dry-run")
        assert (clean["expected"], clean["in_milvus"], clean["missing"]) == (30, 30, 0)
        assert clean["by_outcome"] == {"indexed": 30}  # the keyless poison has no record

        lost = articles[7].id
        client = connect(settings.milvus_uri or "")
        client.delete(settings.milvus_collection, ids=[lost])
        client.close()
        dry = _cli_json(settings, "reconcile", "--dry-run")
        assert (dry["missing_ids"], dry["requeued"]) == ([lost], 0)
        output = _cli(settings, "reconcile")
        assert "re-queued" in output and "never re-queued" in output
        wait_until(lambda: lost in milvus_ids(settings), 60, "the re-queued article")
        wait_for_lag_zero(settings, 60)
        assert milvus_ids(settings) == ledger
        after = _cli_json(settings, "reconcile", "--dry-run")
        assert after["missing"] == 0
