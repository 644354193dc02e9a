"""The dead-letter queue for operators: list its messages, replay them after a fix.

What goes in: the DLQ topic (``settings.kafka_dlq_topic``), written by the worker's DLQ writer:
the original key and bytes plus the headers ``stage``, ``error_class``, ``error_message``,
``original_topic``, ``original_partition`` and ``original_offset``.

- :func:`read_dlq` reads the topic to its true end (watermarks are not trusted, see
  :mod:`newsstream.ops.topic_scan`) and returns :class:`DlqEntry` items; :func:`dlq_listing`
  is the JSON listing of the command line and the admin API.
- :func:`replay_dlq` re-produces the original key, bytes and headers (without the DLQ headers)
  to the articles topic with the idempotent producer and waits for every delivery report.
  Only then does it record what it replayed, as committed offsets of a consumer group on the
  DLQ topic: ``newsstream-dlq-replay`` for a replay of every stage, and
  ``newsstream-dlq-replay.<stage>`` for ``--stage <stage>``. A message counts as replayed when
  its offset is below either mark, so neither a second replay nor a replay of all stages after
  a replay of one stage re-sends it. A message that is still poison after the "fix" comes back
  to the DLQ as a new message (a new offset), and a later replay will offer it again.
- Every replay that re-sends messages is an admin action: the audit record ``dlq.replay``
  (target: the stage or ``all``; details: how many messages, by stage) is written and
  acknowledged after the DLQ was read and before anything is re-sent, whoever calls it (the
  admin API names its caller's key; the command line ``cli:<user>``). A dry run, or a replay
  with nothing left to send, changes nothing and records nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from consumers.dlq import DLQ_HEADERS
from core.errors import ConfigurationError, TransientError
from core.metrics import Stage
from core.settings import Settings
from newsstream.ops.operator_audit import cli_audit, cli_identity
from newsstream.ops.requeue import Outgoing, requeue
from newsstream.ops.topic_scan import ScannedMessage, scan_consumer, scan_topic, topic_partitions
from search_api.audit import AuditLog

#: Group whose committed offsets on the DLQ topic mark what a replay of every stage re-sent.
REPLAY_GROUP = "newsstream-dlq-replay"

#: ``progress(phase, n)``: ``phase`` is "read" (n messages read) or "sent" (n acknowledged).
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class DlqEntry:
    """One DLQ message with its story."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    stage: str
    error_class: str
    error_message: str
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def from_message(cls, message: ScannedMessage) -> DlqEntry:
        def number(name: str) -> int | None:
            text = message.header(name)
            return int(text) if text.lstrip("-").isdigit() else None

        return cls(
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            stage=message.header("stage") or "unknown",
            error_class=message.header("error_class"),
            error_message=message.header("error_message"),
            original_topic=message.header("original_topic"),
            original_partition=number("original_partition"),
            original_offset=number("original_offset"),
            headers=message.headers,
        )

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the message had before it went to the DLQ."""
        return [(k, v) for k, v in self.headers if k not in DLQ_HEADERS]

    def as_json(self, preview_bytes: int = 200) -> dict[str, Any]:
        """A JSON-friendly view; the value is shown as (possibly cut) text."""
        value = self.value or b""
        return {
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "stage": self.stage,
            "error_class": self.error_class,
            "error_message": self.error_message,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "value_bytes": len(value),
            "value_preview": value[:preview_bytes].decode("utf-8", "replace"),
        }


def read_dlq(
    settings: Settings, limit: int | None = None, progress: Progress | None = None
) -> list[DlqEntry]:
    """The DLQ's messages (the first ``limit`` in partition/offset order when given)."""
    consumer = scan_consumer(settings)
    entries: list[DlqEntry] = []
    try:
        for message in scan_topic(consumer, settings.kafka_dlq_topic):
            entries.append(DlqEntry.from_message(message))
            if progress is not None:
                progress("read", 1)
    finally:
        consumer.close()
    entries.sort(key=lambda e: (e.partition, e.offset))
    return entries if limit is None else entries[:limit]


def dlq_listing(settings: Settings, limit: int) -> dict[str, Any]:
    """``newsstream dlq list --json`` and ``GET /admin/dlq``: the number of DLQ messages and
    the first ``limit`` of them (partition/offset order) as :meth:`DlqEntry.as_json`."""
    entries = read_dlq(settings)
    return {"total": len(entries), "messages": [e.as_json() for e in entries[:limit]]}


def replay_group(stage: str | None) -> str:
    """The consumer group that records replays of ``stage`` (``None``: every stage)."""
    return REPLAY_GROUP if stage is None else f"{REPLAY_GROUP}.{stage}"


@dataclass
class ReplayReport:
    """What a replay found and did."""

    read: int = 0
    already_replayed: int = 0
    other_stage: int = 0
    replayed: int = 0
    dry_run: bool = False
    by_stage: Counter[str] = field(default_factory=Counter)
    audit_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "already_replayed": self.already_replayed,
            "other_stage": self.other_stage,
            "replayed": self.replayed,
            "dry_run": self.dry_run,
            "by_stage": dict(self.by_stage),
            "audit_id": self.audit_id,
        }


def _known_stages() -> list[str]:
    return [stage.value for stage in Stage]


def _committed(settings: Settings, group: str, topic: str, partitions: list[int]) -> dict[int, int]:
    """Offsets ``group`` committed on ``topic`` (partitions without a commit are left out)."""
    consumer = scan_consumer(settings, group_id=group)
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    except KafkaException as exc:
        raise TransientError(f"could not read the replay marks of {group!r}: {exc}") from exc
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def _commit(settings: Settings, group: str, topic: str, ends: dict[int, int]) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap or "",
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, offset) for p, offset in sorted(ends.items())],
            asynchronous=False,
        )
    except KafkaException as exc:
        raise TransientError(
            f"messages were re-sent but the replay mark of {group!r} was not saved ({exc}); "
            "a second replay would send them again (harmless: upserts are idempotent)"
        ) from exc
    finally:
        consumer.close()


def replay_dlq(
    settings: Settings,
    stage: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    *,
    audit: AuditLog | None = None,
    by: str | None = None,
    reason: str | None = None,
) -> ReplayReport:
    """Re-produce DLQ messages not replayed before to the articles topic (see module doc).

    The replay is recorded in the audit as ``by`` (default :func:`cli_identity`) with
    ``reason``, through ``audit`` (default: a writer on the settings' broker, for this call).

    Raises :class:`ConfigurationError` for an unknown ``stage`` and :class:`TransientError`
    when the broker does not answer, the audit record is not acknowledged (then nothing is
    sent) or a delivery report fails (then nothing is marked as replayed).
    """
    if stage is not None and stage not in _known_stages():
        raise ConfigurationError(
            f"unknown stage {stage!r}: expected one of {', '.join(_known_stages())}"
        )
    topic = settings.kafka_dlq_topic
    report = ReplayReport(dry_run=dry_run)
    consumer = scan_consumer(settings)
    try:
        partitions = topic_partitions(consumer, topic)
        if not partitions:
            return report
        marks = {
            name: _committed(settings, replay_group(name), topic, partitions)
            for name in _known_stages()
        }
        everything = _committed(settings, REPLAY_GROUP, topic, partitions)
        start = {
            p: max(everything.get(p, 0), marks[stage].get(p, 0) if stage else 0) for p in partitions
        }
        outgoing: list[Outgoing] = []
        ends: dict[int, int] = {}
        for message in scan_topic(consumer, topic, start=start):
            entry = DlqEntry.from_message(message)
            report.read += 1
            ends[entry.partition] = entry.offset + 1
            if progress is not None:
                progress("read", 1)
            if entry.offset < marks.get(entry.stage, {}).get(entry.partition, 0):
                report.already_replayed += 1
            elif stage is not None and entry.stage != stage:
                report.other_stage += 1
            else:
                report.by_stage[entry.stage] += 1
                outgoing.append(Outgoing(entry.key, entry.value, entry.original_headers()))
    finally:
        consumer.close()
    report.replayed = len(outgoing)
    if dry_run:
        return report
    if outgoing:
        report.audit_id = _record_replay(settings, audit, by, stage, reason, report)
    on_sent = (lambda n: progress("sent", n)) if progress is not None else None
    report.replayed = requeue(settings, outgoing, "newsstream-dlq-replay", on_sent)
    if ends:
        _commit(settings, replay_group(stage), topic, ends)
    return report


def _record_replay(
    settings: Settings,
    audit: AuditLog | None,
    by: str | None,
    stage: str | None,
    reason: str | None,
    report: ReplayReport,
) -> str:
    """Write the ``dlq.replay`` audit record of ``report`` (acknowledged); its id."""
    details = {"messages": report.replayed, "by_stage": dict(report.by_stage)}
    who = by or cli_identity()
    if audit is not None:
        return audit.record("dlq.replay", stage or "all", who, reason, details).id
    with cli_audit(settings) as own:
        if own is None:  # unreachable: the replay read the DLQ through this very broker
            raise ConfigurationError("no broker address to record the replay through")
        return own.record("dlq.replay", stage or "all", who, reason, details).id
