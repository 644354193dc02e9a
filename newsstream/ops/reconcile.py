"""Reconciliation: the ledger against Milvus; re-queue only what should be there and is not.

What goes in: the ledger topic (each article id's latest outcome, :mod:`core.ledger`, read to
its true end, see :mod:`newsstream.ops.topic_scan`), the Milvus collection and, only when
something is missing, the articles topic.

What it expects in Milvus: exactly the ids whose latest outcome is ``indexed``. Duplicates,
rejects, dead letters, deleted and expired ids are legitimately absent and never re-queued (a
rejected or dead-lettered message would fail again; the DLQ has its own replay). Ids are
checked with ``query`` at Strong consistency, in chunks, so a row upserted just before the check
is seen. On a healthy index the count of missing rows is zero.

What comes out: a :class:`ReconcileReport`. Unless ``dry_run``, every missing id is re-queued
from its latest message on the articles topic (original key, bytes and headers, with a fresh
``produced_at``), acknowledged by the broker, so the workers index it again and write its
record again. The articles topic is read after the Milvus check: an id whose latest message
there is a tombstone (deleted after the ledger snapshot, the row gone with it) is not re-queued,
and right before re-queueing, the messages that arrived since that read are read too and every
id among them is left out (a tombstone published meanwhile must stay the last word of its id; a
newer version is indexed by the workers anyway). An id whose messages the articles topic no
longer holds (its retention passed) is reported as ``not_in_topic``: reconcile cannot bring it
back from Kafka.

Not covered: ids with no ledger record (messages the workers have not decided yet, or rows
written before the ledger existed): ``newsstream explain`` names them, reconcile leaves them;
``newsstream backfill-ledger`` (:mod:`newsstream.ops.ledger_backfill`) records the stored ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pymilvus import MilvusClient, MilvusException

from core.errors import InvalidMessage, TransientError
from core.ledger import LedgerOutcome, LedgerRecord
from core.settings import Settings
from newsstream.ops.requeue import Outgoing, requeue
from newsstream.ops.topic_scan import ScannedMessage, scan_consumer, scan_topic
from store.client import milvus_client

#: Ids per Milvus query (the filter lists them literally).
CHUNK = 500

#: ``progress(phase, n)``: phase "read" (ledger records read), "checked" (ids looked up in
#: Milvus), "scanned" (articles-topic messages read) or "sent" (re-queued messages acknowledged).
Progress = Callable[[str, int], None]


@dataclass
class ReconcileReport:
    """What a reconciliation found and did."""

    ledger_records: int = 0
    unreadable: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    expected: int = 0
    in_milvus: int = 0
    missing: list[str] = field(default_factory=list)
    changed_since_scan: int = 0
    not_in_topic: list[str] = field(default_factory=list)
    requeued: int = 0
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "ledger_records": self.ledger_records,
            "unreadable": self.unreadable,
            "ledger_ids": sum(self.by_outcome.values()),
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "expected": self.expected,
            "in_milvus": self.in_milvus,
            "missing": len(self.missing),
            "missing_ids": self.missing,
            "changed_since_scan": self.changed_since_scan,
            "not_in_topic": self.not_in_topic,
            "requeued": self.requeued,
            "dry_run": self.dry_run,
        }


def latest_outcomes(
    messages: Iterable[ScannedMessage], report: ReconcileReport
) -> dict[str, LedgerOutcome]:
    """The latest outcome of each article id in the ledger (the last record of a key wins)."""
    latest: dict[str, LedgerOutcome] = {}
    for message in messages:
        report.ledger_records += 1
        if message.value is None:
            continue
        try:
            record = LedgerRecord.from_bytes(message.value)
        except InvalidMessage:
            report.unreadable += 1  # a record of a newer version: never guessed at
            continue
        latest[record.article_id] = record.outcome
    for outcome in latest.values():
        report.by_outcome[outcome.value] = report.by_outcome.get(outcome.value, 0) + 1
    return latest


def latest_messages(
    messages: Iterable[ScannedMessage], wanted: set[str]
) -> dict[str, ScannedMessage]:
    """The last message (article or tombstone) of each id of ``wanted`` on the articles topic."""
    latest: dict[str, ScannedMessage] = {}
    for message in messages:
        key = message.key.decode("ascii", "replace") if message.key is not None else ""
        if key in wanted:
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
    """Compare the ledger with Milvus and re-queue what is missing (see the module docstring).

    Raises :class:`TransientError` when Kafka or Milvus fails; nothing is reported as
    re-queued unless the broker acknowledged it.
    """
    report = ReconcileReport(dry_run=dry_run)
    consumer = scan_consumer(settings)
    try:
        latest = latest_outcomes(
            _counted(scan_topic(consumer, settings.kafka_ledger_topic), progress, "read", None),
            report,
        )
    finally:
        consumer.close()
    expected = sorted(i for i, outcome in latest.items() if outcome is LedgerOutcome.INDEXED)
    report.expected = len(expected)
    client = milvus_client(settings)
    try:
        present = ids_in_milvus(client, settings.milvus_collection, expected, progress)
    finally:
        client.close()
    report.in_milvus = len(present)
    report.missing = sorted(set(expected) - present)
    if dry_run or not report.missing:
        return report
    wanted = set(report.missing)
    ends: dict[int, int] = {}  # partition -> the offset after the last message read
    consumer = scan_consumer(settings)
    try:
        messages = latest_messages(
            _counted(scan_topic(consumer, settings.kafka_topic), progress, "scanned", ends),
            wanted,
        )
    finally:
        consumer.close()
    report.not_in_topic = sorted(wanted - set(messages))
    changed = ids_since(settings, ends) & wanted
    # An id whose latest message is a tombstone was deleted after the ledger was read.
    changed |= {i for i, message in messages.items() if message.value is None}
    report.changed_since_scan = len(changed)
    outgoing = [
        Outgoing(messages[i].key, messages[i].value, _fresh_headers(messages[i]))
        for i in report.missing
        if i in messages and i not in changed
    ]
    on_sent = (lambda n: progress("sent", n)) if progress is not None else None
    report.requeued = requeue(settings, outgoing, "newsstream-reconcile", on_sent)
    return report


def _counted(
    messages: Iterable[ScannedMessage],
    progress: Progress | None,
    phase: str,
    ends: dict[int, int] | None,
) -> Iterator[ScannedMessage]:
    for message in messages:
        if ends is not None:
            ends[message.partition] = max(ends.get(message.partition, 0), message.offset + 1)
        if progress is not None:
            progress(phase, 1)
        yield message
