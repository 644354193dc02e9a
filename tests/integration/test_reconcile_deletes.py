"""Reconcile never brings a deleted article back, against the real local broker and Milvus: an
id the ledger last saw indexed whose latest message on the articles topic is a tombstone (the
delete not yet recorded in the ledger) is not re-queued, nor is one deleted while reconcile
runs (after its Milvus check, before its re-queue)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from consumers.ledger import LedgerWriter
from core.kafka import ensure_topics
from core.ledger import LedgerOutcome, LedgerRecord
from newsstream.ops.reconcile import reconcile
from producers.publisher import Publisher
from store.client import connect
from store.schema import ensure_collection

from probes import read_topic
from worker_procs import news_article, publish_tombstones

pytestmark = pytest.mark.integration


def test_reconcile_requeues_no_id_whose_last_message_is_a_tombstone(make_settings: Any) -> None:
    settings = make_settings(kafka_partitions=1)
    ensure_topics(settings)
    kept, deleted, racing = (
        news_article(f"https://a.example/{name}", f"Title {name}", f"Text {name}.", "a.example")
        for name in ("kept", "deleted", "racing")
    )
    publisher = Publisher(settings, client_id="test-reconcile")
    assert publisher.publish([kept, deleted, racing]) == {kept.id, deleted.id, racing.id}
    publisher.close()
    now_ms = int(time.time() * 1000)
    writer = LedgerWriter(settings)
    writer.send(
        [
            LedgerRecord(a.id, LedgerOutcome.INDEXED, now_ms, "w", indexed_at_ms=now_ms)
            for a in (kept, deleted, racing)
        ]
    )
    writer.close()
    publish_tombstones(settings, [deleted.id])  # the worker has not recorded it yet
    client = connect(settings.milvus_uri or "")
    ensure_collection(client, settings, 8)  # an empty index: every indexed id is missing
    client.close()
    published: list[str] = []

    def delete_while_running(phase: str, _n: int) -> None:
        # While the articles topic is read for the missing ids: an operator deletes.
        if phase == "scanned" and not published:
            publish_tombstones(settings, [racing.id])
            published.append(racing.id)

    report = reconcile(settings, progress=delete_while_running)
    assert published == [racing.id]
    assert report.expected == 3
    assert report.missing == sorted([kept.id, deleted.id, racing.id])
    assert (report.changed_since_scan, report.requeued) == (2, 1)
    last: dict[str, bytes | None] = {}
    for message in read_topic(settings, settings.kafka_topic):
        last[message.key().decode()] = message.value()
    assert last[deleted.id] is None and last[racing.id] is None, "deleted ids stay deleted"
    assert last[kept.id] == kept.to_bytes()  # re-queued
