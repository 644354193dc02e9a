"""Reconciliation: the articles a topic holds against the ids Milvus holds; re-queue the gap.

What goes in: the whole articles topic (read to its true end, see
:mod:`newsstream.ops.topic_scan`) and the Milvus collection. The last message per key wins (a
re-published article has the same key); a tombstone (no value) removes its key; a key that is
not an article id (32 hex characters) cannot be in Milvus and is only counted (such messages are
poison and the worker sent them to the DLQ).

What comes out: a :class:`ReconcileReport`. Unless ``dry_run``, every id missing from Milvus is
re-queued: its last message (original key, bytes and headers, with a fresh ``produced_at``) is
produced to the articles topic again and acknowledged by the broker, so the workers index it.

A deleted id is never re-queued: an id whose last message is a tombstone is not expected in
Milvus, and right before re-queueing, the messages that arrived since the scan are read (from
where the scan ended) and every id among them is left out: a tombstone published meanwhile
must stay the last word of its id (a copy re-queued behind it would bring the article back),
and a newer version is indexed by the workers anyway.

Rejected and duplicate articles are legitimately absent from Milvus: re-queueing them is
harmless, the worker rejects or deduplicates them again. Ids are checked with ``query`` at
Strong consistency, in chunks, so a row upserted just before the check is seen.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pymilvus import MilvusClient, MilvusException

from core.errors import TransientError
from core.settings import Settings
from newsstream.ops.requeue import Outgoing, requeue
from newsstream.ops.topic_scan import ScannedMessage, scan_consumer, scan_topic
from store.client import milvus_client

#: Ids per Milvus query (the filter lists them literally).
CHUNK = 500
_ARTICLE_ID = re.compile(r"^[0-9a-f]{32}$")

#: ``progress(phase, n)``: phase "read" (messages read), "checked" (ids looked up in Milvus)
#: or "sent" (re-queued messages acknowledged).
Progress = Callable[[str, int], None]


@dataclass
class ReconcileReport:
    """What a reconciliation found and did."""

    messages: int = 0
    topic_ids: int = 0
    not_article_ids: int = 0
    tombstones: int = 0
    in_milvus: int = 0
    missing: list[str] = field(default_factory=list)
    changed_since_scan: int = 0
    requeued: int = 0
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "topic_ids": self.topic_ids,
            "not_article_ids": self.not_article_ids,
            "tombstones": self.tombstones,
            "in_milvus": self.in_milvus,
            "missing": len(self.missing),
            "missing_ids": self.missing,
            "changed_since_scan": self.changed_since_scan,
            "requeued": self.requeued,
            "dry_run": self.dry_run,
        }


def latest_per_key(
    messages: Iterable[ScannedMessage], report: ReconcileReport
) -> dict[str, ScannedMessage]:
    """The last message of each article id (tombstones remove their id)."""
    latest: dict[str, ScannedMessage] = {}
    for message in messages:
        report.messages += 1
        key = message.key.decode("ascii", "replace") if message.key is not None else ""
        if not _ARTICLE_ID.match(key):
            report.not_article_ids += 1
            continue
        if message.value is None:
            report.tombstones += 1
            latest.pop(key, None)
            continue
        latest[key] = message
    return latest


def ids_since(settings: Settings, start: dict[int, int]) -> set[str]:
    """The keys of the messages at or after ``start`` (partition -> offset) in the articles
    topic, read to its true end."""
    consumer = scan_consumer(settings)
    try:
        return {
            message.key.decode("ascii", "replace")
            for message in scan_topic(consumer, settings.kafka_topic, start)
            if message.key is not None
        }
    finally:
        consumer.close()


def ids_in_milvus(
    client: MilvusClient,
    collection: str,
    ids: list[str],
    progress: Progress | None = None,
) -> set[str]:
    """Which of ``ids`` (article ids: hex, safe as filter literals) are rows of ``collection``."""
    found: set[str] = set()
    if not ids:
        return found
    try:
        if not client.has_collection(collection):
            return found
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            literal = ", ".join(f'"{i}"' for i in chunk)
            rows = client.query(
                collection,
                filter=f"id in [{literal}]",
                output_fields=["id"],
                consistency_level="Strong",
            )
            found.update(str(row["id"]) for row in rows)
            if progress is not None:
                progress("checked", len(chunk))
    except MilvusException as exc:
        raise TransientError(f"Milvus failed during reconciliation: {exc}") from exc
    return found


def _fresh_headers(message: ScannedMessage) -> list[tuple[str, bytes]]:
    now_ms = str(int(time.time() * 1000)).encode("ascii")
    return [(k, v) for k, v in message.headers if k != "produced_at"] + [("produced_at", now_ms)]


def reconcile(
    settings: Settings, dry_run: bool = False, progress: Progress | None = None
) -> ReconcileReport:
    """Compare the articles topic with Milvus and re-queue what is missing (see module doc).

    Raises :class:`TransientError` when Kafka or Milvus fails; nothing is reported as
    re-queued unless the broker acknowledged it.
    """
    report = ReconcileReport(dry_run=dry_run)
    consumer = scan_consumer(settings)
    ends: dict[int, int] = {}  # partition -> the offset after the last message read
    try:

        def counted(messages: Iterable[ScannedMessage]) -> Iterable[ScannedMessage]:
            for message in messages:
                ends[message.partition] = max(ends.get(message.partition, 0), message.offset + 1)
                if progress is not None:
                    progress("read", 1)
                yield message

        latest = latest_per_key(counted(scan_topic(consumer, settings.kafka_topic)), report)
    finally:
        consumer.close()
    report.topic_ids = len(latest)
    client = milvus_client(settings)
    try:
        present = ids_in_milvus(client, settings.milvus_collection, sorted(latest), progress)
    finally:
        client.close()
    report.in_milvus = len(present)
    report.missing = sorted(set(latest) - present)
    if dry_run or not report.missing:
        return report
    changed = ids_since(settings, ends) & set(report.missing)
    report.changed_since_scan = len(changed)
    outgoing = [
        Outgoing(latest[i].key, latest[i].value, _fresh_headers(latest[i]))
        for i in report.missing
        if i not in changed
    ]
    on_sent = (lambda n: progress("sent", n)) if progress is not None else None
    report.requeued = requeue(settings, outgoing, "newsstream-reconcile", on_sent)
    return report
