"""The audit: one append-only record per admin action that changes data.

What goes in: an action (:data:`ACTIONS`), its target, who asked (a key fingerprint from
:func:`search_api.security.caller_identity`, never a key; ``cli:<user>`` for a command run on
the host), why, and details. What comes out:
:meth:`AuditLog.record` returns the :class:`AuditRecord` once the broker acknowledged it
(``acks=all``), else raises :class:`core.errors.TransientError`; :meth:`AuditLog.read` gives the
records newest first, optionally of one action, a bounded page at a time.

Where: ``kafka_audit_topic`` (default ``news.audit``), one partition (one order), time retention
(``audit_retention_days``), created with those settings by :func:`core.kafka.ensure_topics`.
Callers write the record before they change anything, so a change never goes unrecorded; a
record whose change then failed (the caller answered 503) can exist, never the reverse.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import BaseModel, Field, ValidationError

from core.errors import TransientError
from core.kafka import reader_config
from core.settings import Settings
from search_api.acked_producer import DELIVERY_TIMEOUT_S, Record, RecordSink

#: The actions recorded, with what each means.
ACTIONS = {
    "article.delete": "an article deleted by an operator (DELETE /articles/{id})",
    "story.split": "articles moved out of a story (POST /stories/{id}/split)",
    "feed.add": "a feed added, or its name and tags changed (POST /admin/feeds, feeds add)",
    "feed.retention": "a feed's retention window changed (PATCH /admin/feeds/{id}, feeds update)",
    "feed.remove": "a feed removed from the registry (DELETE /admin/feeds/{id}, feeds remove)",
    "dlq.replay": "dead letters re-queued to the articles topic (POST /admin/dlq/replay, dlq replay)",
    "reindex": "the index rebuilt into a new collection, rolled back or its old one dropped "
    "(newsstream reindex)",
}
#: Records one audit page holds at most, and records one read looks through at most.
MAX_PAGE = 500
MAX_SCAN = 20_000
#: Records fetched per step while reading backwards from the end.
CHUNK = 1_000


class AuditRecord(BaseModel):
    """One admin action: the value of an audit message (JSON)."""

    id: str = Field(description="This record's own id (hex).")
    at: float = Field(description="When it was recorded (epoch seconds).")
    action: str = Field(description="What was done (see ACTIONS).")
    target: str = Field(
        description="What it was done to (an article, story or feed id; a DLQ replay: its stage "
        "or `all`)."
    )
    by: str = Field(
        description="Who: `key:<fingerprint>` of the API key, `loopback`, or `cli:<user>` for a "
        "command run on the host."
    )
    reason: str | None = Field(None, description="Why, as the caller said.")
    details: dict[str, Any] = Field(default_factory=dict, description="Action-specific facts.")


class AuditPage(BaseModel):
    """``GET /audit``: records newest first; ``next_before`` continues the listing."""

    entries: list[AuditRecord]
    next_before: int | None = Field(
        None, description="Pass as `before` for older records; null when there are none."
    )


class AuditLog:
    """Writes and reads the audit topic (see the module docstring)."""

    def __init__(self, settings: Settings, sink: RecordSink) -> None:
        self._settings = settings
        self._sink = sink

    def record(
        self,
        action: str,
        target: str,
        by: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record and wait for the broker's acknowledgement."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}; known: {sorted(ACTIONS)}")
        entry = AuditRecord(
            id=uuid.uuid4().hex,
            at=round(time.time(), 3),
            action=action,
            target=target,
            by=by,
            reason=reason,
            details=details or {},
        )
        self._sink.send([audit_message(self._settings, entry)])
        return entry

    def read(
        self, limit: int = 50, action: str | None = None, before: int | None = None
    ) -> AuditPage:
        """Up to ``limit`` records (of ``action`` when given), newest first, older than the
        position ``before`` (a ``next_before`` of an earlier page). Looks through at most
        :data:`MAX_SCAN` records per call; raises :class:`TransientError` when the broker
        does not answer."""
        limit = max(1, min(limit, MAX_PAGE))
        topic = self._settings.kafka_audit_topic
        consumer = Consumer(reader_config(self._settings, "audit-reader"))
        try:
            metadata = consumer.list_topics(topic, timeout=DELIVERY_TIMEOUT_S)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                return AuditPage(entries=[])  # nothing was ever recorded
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, 0), timeout=DELIVERY_TIMEOUT_S, cached=False
            )
            # The newest page reads to the partition's end, not to the high watermark: a
            # broker may report it low (the local one does for a batch of several records).
            end: int | None = before
            upper = high if before is None else before
            floor = max(low, upper - MAX_SCAN)
            entries: list[AuditRecord] = []
            next_before: int | None = None
            while True:
                start = max(floor, upper - CHUNK)
                for offset, entry in reversed(_read_range(consumer, topic, start, end)):
                    if action is None or entry.action == action:
                        entries.append(entry)
                        if len(entries) == limit:
                            next_before = offset
                            break
                if len(entries) == limit:
                    break
                if start <= floor:
                    next_before = floor
                    break
                upper = end = start
            return AuditPage(
                entries=entries,
                next_before=next_before if next_before is not None and next_before > low else None,
            )
        except KafkaException as exc:
            raise TransientError(f"{topic} unreadable: {exc}") from exc
        finally:
            consumer.close()


def audit_message(settings: Settings, entry: AuditRecord) -> Record:
    """The Kafka record of ``entry``: keyed by its target, the record as JSON."""
    return Record(
        settings.kafka_audit_topic,
        key=entry.target.encode(),
        value=entry.model_dump_json().encode(),
    )


def _read_range(
    consumer: Consumer, topic: str, start: int, end: int | None
) -> list[tuple[int, AuditRecord]]:
    """The records at offsets ``[start, end)`` of partition 0 (``end=None``: to the partition's
    end) with their offsets; values that are not audit records are skipped (the topic is ours,
    but a stray write must not break the audit)."""
    consumer.assign([TopicPartition(topic, 0, start)])
    out: list[tuple[int, AuditRecord]] = []
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    position = start
    while end is None or position < end:
        if time.monotonic() > deadline:
            raise TransientError(f"{topic} could not be read to offset {end}")
        message = consumer.poll(0.2)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                break
            raise TransientError(f"{topic} unreadable: {error}")
        offset = message.offset() or 0
        if offset < start:  # fetched for an earlier range of this consumer
            continue
        position = offset + 1
        if end is not None and offset >= end:
            break
        try:
            out.append((offset, AuditRecord.model_validate(json.loads(message.value() or b""))))
        except (ValueError, ValidationError):
            continue
    return out
