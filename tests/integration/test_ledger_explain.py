"""The ledger, explain and reconcile against the real local broker and Milvus: a run with
indexed, duplicate, rejected, poison and deleted articles leaves one ledger record per article
id; ``explain`` (the operation, the command and the API route) says the right thing for each;
reconcile finds nothing missing on that healthy index, and after a row is removed from Milvus
behind the worker's back it re-queues exactly that one."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from core.ids import article_id
from core.kafka import ensure_topics
from core.ledger import LedgerOutcome, LedgerRecord, ledger_partition, read_record
from newsstream.cli.app import app
from newsstream.ops.explain import explain
from newsstream.ops.reconcile import reconcile
from producers.publisher import Publisher
from store.client import connect

from news_texts import CHESS, FLOODS, RATES
from probes import milvus_ids, read_topic, wait_for_lag_zero, wait_until
from running import running_worker, serving
from worker_procs import news_article, publish_tombstones, settings_env

pytestmark = pytest.mark.integration


def test_each_id_of_a_run_is_explained_and_reconcile_requeues_only_a_lost_indexed_row(
    make_settings: Any, embedder: Any
) -> None:
    # One articles partition: the copy is checked after the article it copies.
    settings = make_settings(kafka_partitions=1)
    ensure_topics(settings)
    kept, copy, rates, chess = (
        news_article(url, title, text, url.split("/")[2])
        for url, title, text in [
            ("https://wire.example/floods", "Floods force thousands", FLOODS),
            ("https://daily.example/floods", "Floods force thousands", FLOODS),
            ("https://money.example/rates", "Central bank holds rates", RATES),
            ("https://sport.example/chess", "Teenager takes chess title", CHESS),
        ]
    )
    short = news_article("https://short.example/a", "Short", "Too short.", "short.example")
    broken = article_id(link="https://broken.example/a")
    publisher = Publisher(settings, client_id="test-ledger")
    assert publisher.publish([kept, copy, rates, chess, short]) == {
        kept.id,
        copy.id,
        rates.id,
        chess.id,
        short.id,
    }
    publisher.close()
    raw = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    raw.produce(settings.kafka_topic, key=broken.encode(), value=b"{broken")  # poison, keyed
    raw.produce(settings.kafka_topic, key=None, value=b"{no key")  # poison with no usable id
    assert raw.flush(30) == 0
    del raw  # its connections close now, not after the session's broker stopped
    with running_worker(settings, embedder):
        wait_for_lag_zero(settings, 120)
        publish_tombstones(settings, [chess.id])
        wait_for_lag_zero(settings, 60)
        assert milvus_ids(settings) == {kept.id, rates.id}

        records = [
            LedgerRecord.from_bytes(m.value())
            for m in read_topic(settings, settings.kafka_ledger_topic)
        ]
        for message in read_topic(settings, settings.kafka_ledger_topic):
            key = message.key().decode()
            assert message.partition() == ledger_partition(key, settings.kafka_partitions)
        latest = {r.article_id: r.outcome for r in records}
        assert latest == {
            kept.id: LedgerOutcome.INDEXED,
            copy.id: LedgerOutcome.DUPLICATE,
            rates.id: LedgerOutcome.INDEXED,
            chess.id: LedgerOutcome.DELETED,
            short.id: LedgerOutcome.REJECTED,
            broken: LedgerOutcome.DEAD_LETTERED,
        }, "one record per id; the keyless poison has none"
        assert len(records) == 7  # chess: indexed, then deleted

        indexed = read_record(settings, kept.id)
        assert indexed is not None and indexed.indexed_at_ms is not None
        assert indexed.produced_at_ms is not None and indexed.fetched_at == kept.fetched_at
        assert indexed.visible_by_ms == indexed.indexed_at_ms + settings.milvus_staleness_bound_ms

        sentences = {ident: explain(settings, ident) for ident in latest}
        assert sentences[kept.id].searchable and sentences[kept.id].sentence.startswith(
            "searchable: indexed at"
        )
        assert sentences[copy.id].sentence == f"duplicate of {kept.id} (indexed)"
        assert not sentences[copy.id].searchable
        assert sentences[short.id].sentence == "rejected: too_short"
        assert sentences[broken].sentence.startswith("dead-lettered at decode: InvalidMessage")
        assert sentences[chess.id].sentence.startswith("deleted by an operator at")
        assert not sentences[chess.id].searchable
        unseen = article_id(link="https://never.example/sent")
        assert explain(settings, unseen).sentence.startswith("never seen: no message")

        # The command takes the URL; the API route answers with the same explanation.
        result = CliRunner().invoke(
            app, ["explain", copy.url, "--json"], env=settings_env(settings)
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["explanation"] == f"duplicate of {kept.id} (indexed)"
        with serving(settings, embedder) as base:
            answer = httpx.get(f"{base}/articles/{short.id}/explain", timeout=30).json()
            assert (answer["searchable"], answer["explanation"]) == (False, "rejected: too_short")
            assert answer["ledger"]["reason"] == "too_short"
            assert httpx.get(f"{base}/articles/nope/explain", timeout=10).status_code == 404

        # A healthy index with duplicates, rejects, poison and deletes: nothing is missing.
        healthy = reconcile(settings)
        assert (healthy.expected, healthy.in_milvus, healthy.missing) == (2, 2, [])
        assert healthy.requeued == 0

        client = connect(settings.milvus_uri or "")
        client.delete(settings.milvus_collection, ids=[rates.id])
        client.close()
        assert "reconcile" in explain(settings, rates.id).sentence
        report = reconcile(settings)
        assert (report.missing, report.requeued) == ([rates.id], 1)
        wait_until(lambda: rates.id in milvus_ids(settings), 60, "the re-queued article")
        wait_for_lag_zero(settings, 60)
        assert milvus_ids(settings) == {kept.id, rates.id}
        assert reconcile(settings, dry_run=True).missing == []
