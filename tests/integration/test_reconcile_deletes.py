"""Reconcile never brings a deleted article back, against the real local broker and Milvus: an id
whose last message is a tombstone is not missing, and a tombstone published while reconcile runs
(after its scan, before its re-queue) stays the last message of its id."""

from __future__ import annotations

from typing import Any

import pytest

from core.kafka import ensure_topics
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
    publish_tombstones(settings, [deleted.id])
    client = connect(settings.milvus_uri or "")
    ensure_collection(client, settings, 8)  # an empty index: every article is missing
    client.close()
    published: list[str] = []

    def delete_while_running(phase: str, _n: int) -> None:
        # After the scan and the Milvus check, before the re-queue: an operator deletes.
        if phase == "checked" and not published:
            publish_tombstones(settings, [racing.id])
            published.append(racing.id)

    report = reconcile(settings, progress=delete_while_running)
    assert published == [racing.id]
    assert report.tombstones == 1 and report.topic_ids == 2
    assert report.missing == sorted([kept.id, racing.id])
    assert (report.changed_since_scan, report.requeued) == (1, 1)
    last: dict[str, bytes | None] = {}
    for message in read_topic(settings, settings.kafka_topic):
        last[message.key().decode()] = message.value()
    assert last[deleted.id] is None and last[racing.id] is None, "deleted ids stay deleted"
    assert last[kept.id] == kept.to_bytes()  # re-queued
    again = reconcile(settings, dry_run=True)
    assert again.missing == [kept.id] and again.tombstones == 2
