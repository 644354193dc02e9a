"""The ledger: every article id's latest outcome, on a compacted Kafka topic keyed by id.

What it is: one record per decided article id on ``news.ledger``
(``NEWSSTREAM_KAFKA_LEDGER_TOPIC``), key = the article id, value = :class:`LedgerRecord` as
JSON: the outcome of the id's latest message (``indexed``, ``duplicate`` of which id,
``rejected`` with its reason, ``dead_lettered`` with stage, error class and a short message,
``deleted``, ``expired``), the article's url and feed id, its times (fetched by the producer,
produced to Kafka, acknowledged by Milvus, and the latest moment a Bounded search can still miss
it), the worker that decided it and the source message (topic, partition, offset). The topic is
compacted, so Kafka keeps at least the latest record of every id: the log is the source of
truth for ``newsstream explain`` and ``newsstream reconcile``, and any store of outcomes can be
rebuilt by reading it.

Who writes it: the workers, one record per id per batch, after every store acknowledged the
batch and before its offsets are committed (:mod:`consumers.ledger`). A message without a usable
article id (poison whose key is not an id) has no record: there is no id to file it under;
``newsstream dlq list`` shows it.

Where an id's record lives: :func:`ledger_partition`, CRC-32 (``zlib.crc32``) of the id's ASCII
bytes modulo the topic's partition count. The writer produces with that explicit partition, so
no client's default partitioner decides (librdkafka's and the Java client's differ), and a
look-up (:func:`read_record`) reads that one partition instead of the whole topic. The count is
read from the broker on both sides; adding partitions to the ledger topic later would move ids
and must not be done (create a new topic and re-run the workers' history instead).

``visible_by_ms`` is a bound, not an observation: a row Milvus acknowledged at ``indexed_at_ms``
is returned by Bounded-consistency searches issued after ``indexed_at_ms`` plus the server's
staleness bound (``NEWSSTREAM_MILVUS_STALENESS_BOUND_MS``, Milvus's ``common.gracefulTime``);
Strong searches see it at once. Nobody observes the first search that actually returned it.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from core.errors import InvalidMessage, TransientError
from core.kafka import reader_config
from core.settings import Settings

#: Version of the record's JSON; a reader refuses versions it does not know.
RECORD_VERSION = 1
#: Longest dead-letter message kept in a record (the DLQ holds the full one).
MAX_ERROR_CHARS = 200


class LedgerOutcome(StrEnum):
    """What became of an article id's latest message."""

    INDEXED = "indexed"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    DEAD_LETTERED = "dead_lettered"
    DELETED = "deleted"
    EXPIRED = "expired"


@dataclass(frozen=True)
class DeadLetter:
    """Why a message went to the DLQ: the stage that found it, the error class, a short message."""

    stage: str
    error_class: str
    message: str


@dataclass(frozen=True)
class SourceMessage:
    """The message the outcome is of: where it was on the articles topic."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class LedgerRecord:
    """One id's latest outcome (see the module docstring). Times are epoch milliseconds except
    ``fetched_at`` (epoch seconds, as :attr:`core.article.Article.fetched_at`); a time that
    does not apply or is unknown is ``None``."""

    article_id: str
    outcome: LedgerOutcome
    decided_at_ms: int
    worker: str
    source: SourceMessage | None = None
    url: str = ""
    feed_id: str = ""
    fetched_at: int | None = None
    produced_at_ms: int | None = None
    indexed_at_ms: int | None = None
    visible_by_ms: int | None = None
    reason: str | None = None  # rejected: the quality gate's reason
    duplicate_of: str | None = None
    dead_letter: DeadLetter | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON; ``None`` and empty fields are left out (a record per id, kept
        forever: every byte counts a million times)."""
        raw = asdict(self)
        body: dict[str, Any] = {"v": RECORD_VERSION, "id": raw.pop("article_id")}
        body.update({k: v for k, v in raw.items() if v not in (None, "")})
        body["outcome"] = self.outcome.value
        return body

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> LedgerRecord:
        """Parse a record; :class:`InvalidMessage` when it is not one this version writes."""
        try:
            body = json.loads(value)
            if body.get("v") != RECORD_VERSION:
                raise InvalidMessage(f"ledger record version {body.get('v')!r} is unknown")
            source = body.get("source")
            dead = body.get("dead_letter")
            return cls(
                article_id=str(body["id"]),
                outcome=LedgerOutcome(body["outcome"]),
                decided_at_ms=int(body["decided_at_ms"]),
                worker=str(body["worker"]),
                source=SourceMessage(**source) if source else None,
                url=str(body.get("url", "")),
                feed_id=str(body.get("feed_id", "")),
                fetched_at=body.get("fetched_at"),
                produced_at_ms=body.get("produced_at_ms"),
                indexed_at_ms=body.get("indexed_at_ms"),
                visible_by_ms=body.get("visible_by_ms"),
                reason=body.get("reason"),
                duplicate_of=body.get("duplicate_of"),
                dead_letter=DeadLetter(**dead) if dead else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidMessage(f"not a ledger record: {exc}") from exc


def ledger_partition(article_id: str, partitions: int) -> int:
    """The ledger partition of ``article_id``: ``zlib.crc32(id) % partitions`` (see the module
    docstring); the writer and every reader use this one function."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, got {partitions}")
    return zlib.crc32(article_id.encode("ascii")) % partitions


def _reader(settings: Settings) -> Consumer:
    # At the end of the partition the broker holds a fetch for up to fetch.wait.max.ms before it
    # answers empty (500 ms by default): a look-up waits that out once, at its end.
    return Consumer(reader_config(settings, "ledger-read", **{"fetch.wait.max.ms": 20}))


def partition_count(consumer: Consumer, topic: str, timeout_s: float = 10.0) -> int:
    """The partitions of ``topic`` (0 when it does not exist); :class:`TransientError` when the
    broker does not answer."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise TransientError(f"Kafka unavailable while reading {topic!r}: {exc}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return 0
    return len(found.partitions)


def read_record(
    settings: Settings, article_id: str, timeout_s: float = 60.0
) -> LedgerRecord | None:
    """The latest ledger record of ``article_id``, ``None`` when it has none.

    Reads one partition (:func:`ledger_partition`) from its start to its end and keeps the last
    record of the key: the cost grows with the partition, not the topic. Raises
    :class:`TransientError` when the broker does not answer or the end is not reached within
    ``timeout_s`` of silence.
    """
    topic = settings.kafka_ledger_topic
    consumer = _reader(settings)
    try:
        partitions = partition_count(consumer, topic)
        if not partitions:
            return None
        partition = ledger_partition(article_id, partitions)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        key = article_id.encode("ascii")
        latest: bytes | None = None
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() > deadline:
                raise TransientError(f"reading {topic!r} [{partition}] did not reach its end")
            try:
                messages = consumer.consume(num_messages=10_000, timeout=0.05)
            except KafkaException as exc:
                raise TransientError(f"Kafka failed while reading {topic!r}: {exc}") from exc
            for message in messages:
                error = message.error()
                if error is None:
                    if message.key() == key:
                        latest = message.value()
                    continue
                if error.code() == KafkaError._PARTITION_EOF:
                    return LedgerRecord.from_bytes(latest) if latest is not None else None
                if not (error.retriable() or error.code() == KafkaError._TRANSPORT):
                    raise TransientError(f"Kafka error while reading {topic!r}: {error}")
            if messages:
                deadline = time.monotonic() + timeout_s
    finally:
        consumer.close()


def _when(ms: int | None) -> str:
    if ms is None:
        return "an unknown time"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def explain_sentence(
    record: LedgerRecord | None,
    *,
    in_milvus: bool,
    kept_in_milvus: bool | None = None,
    in_keyword_index: bool | None = None,
) -> str:
    """One plain sentence: is the id searchable, and if not, why.

    ``in_milvus``: whether Milvus holds the id's row now (a Strong read); ``kept_in_milvus``:
    for a duplicate, whether the article it duplicates is held; ``in_keyword_index``: whether
    the keyword index holds it (``None`` when no keyword index is used).
    """
    earlier = " (an earlier version of this id is still indexed)" if in_milvus else ""
    if record is None:
        if in_milvus:
            return (
                "searchable, but the ledger has no record of it (indexed before the ledger "
                "existed: `newsstream backfill-ledger` records it; or its record is not "
                "written yet)"
            )
        return (
            "never seen: no message with this id reached the workers (or they have not "
            "decided it yet)"
        )
    outcome = record.outcome
    if outcome is LedgerOutcome.INDEXED:
        if not in_milvus:
            return (
                f"indexed at {_when(record.indexed_at_ms)}, but Milvus no longer holds the row; "
                "`newsstream reconcile` re-queues it"
            )
        sentence = (
            f"searchable: indexed at {_when(record.indexed_at_ms)}, visible to Bounded search "
            f"by {_when(record.visible_by_ms)} at the latest"
        )
        if in_keyword_index is False:
            sentence += ", but the keyword index lacks it (keyword search will not find it)"
        return sentence
    if outcome is LedgerOutcome.DUPLICATE:
        kept = {True: "indexed", False: "not indexed either", None: "unknown"}[kept_in_milvus]
        return f"duplicate of {record.duplicate_of} ({kept}){earlier}"
    if outcome is LedgerOutcome.REJECTED:
        return f"rejected: {record.reason}{earlier}"
    if outcome is LedgerOutcome.DEAD_LETTERED:
        dead = record.dead_letter
        what = f"{dead.stage}: {dead.error_class}: {dead.message}" if dead else "unknown"
        return f"dead-lettered at {what}; fix the cause, then `newsstream dlq replay`{earlier}"
    when = _when(record.produced_at_ms or record.decided_at_ms)
    if outcome is LedgerOutcome.EXPIRED:
        sentence = f"expired: removed by retention at {when}"
    else:
        sentence = f"deleted by an operator at {when}"
    if in_milvus:
        sentence += ", yet Milvus still holds a row of this id"
    return sentence


@dataclass(frozen=True)
class Explanation:
    """The answer of ``newsstream explain`` and ``GET /articles/{id}/explain``: the record,
    what the stores hold now, and the sentence; ``searchable`` is what Milvus holds now."""

    article_id: str
    searchable: bool
    sentence: str
    record: LedgerRecord | None
    in_milvus: bool
    kept_in_milvus: bool | None
    in_keyword_index: bool | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.article_id,
            "searchable": self.searchable,
            "explanation": self.sentence,
            "ledger": self.record.to_json() if self.record is not None else None,
            "in_milvus": self.in_milvus,
            "duplicate_of_in_milvus": self.kept_in_milvus,
            "in_keyword_index": self.in_keyword_index,
        }


def explanation(
    article_id: str,
    record: LedgerRecord | None,
    held: set[str],
    in_keyword_index: bool | None,
) -> Explanation:
    """The explanation of ``article_id`` from what was looked up: its ledger record, the ids
    (it and its kept article) Milvus holds, and the keyword index's answer (None: not used)."""
    kept = (
        record.duplicate_of
        if record is not None and record.outcome is LedgerOutcome.DUPLICATE
        else None
    )
    in_milvus = article_id in held
    kept_held = (kept in held) if kept else None
    return Explanation(
        article_id=article_id,
        searchable=in_milvus,
        sentence=explain_sentence(
            record, in_milvus=in_milvus, kept_in_milvus=kept_held, in_keyword_index=in_keyword_index
        ),
        record=record,
        in_milvus=in_milvus,
        kept_in_milvus=kept_held,
        in_keyword_index=in_keyword_index,
    )
