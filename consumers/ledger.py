"""The ledger step: every decided article id of a batch gets its outcome on ``news.ledger``.

In: a batch after the upsert, delete and record-dedup-state steps (every store acknowledged
it). Out: the same batch, returned only once the broker acknowledged (``acks=all``) the ledger
record of every article id the batch decided; only then does the commit step commit the batch's
offsets. So a crash between the upsert and this step leaves the batch uncommitted: it is
consumed again, indexed again (idempotent upsert) and its records are written then. An outage
of the broker is retried with capped exponential backoff until ``stop``, like the other steps
(never a dropped record, never a commit without it).

What is written (:func:`ledger_records`, see :mod:`core.ledger` for the record): one record per
article id of the batch, the outcome of the id's last message in the batch (its last offset: an
id's messages share one partition, so that is the log order): ``indexed`` (with the Milvus
acknowledgement time and the visible-by bound), ``duplicate`` (of the kept id the dedup step
named; a version superseded by a later message of its id in the same batch gets no record of its
own), ``rejected`` (the quality gate's reason), ``dead_lettered`` (stage, error class, short
message), ``deleted`` or ``expired`` (a tombstone's reason). A rejected or dead-lettered
re-publication does not remove the earlier version's row; its record says what became of the
latest message, and ``explain`` says the row is still there.

Not written: a message with no usable article id (poison whose key is not an article id, e.g.
no key at all): there is nothing to file it under (the DLQ holds it, ``newsstream dlq list``
shows it).

Cost: one ``produce`` per decided id into librdkafka's queue and one ``flush`` per batch (the
records of a batch travel in a few produce requests), timed as the ``ledger`` stage.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumers.item import Batch, Item
from consumers.retry import retry_transient
from core.errors import ConfigurationError, TransientError
from core.ids import is_article_id
from core.kafka import producer_config
from core.ledger import (
    MAX_ERROR_CHARS,
    DeadLetter,
    LedgerOutcome,
    LedgerRecord,
    SourceMessage,
    ledger_partition,
)
from core.metrics import STAGE_SECONDS, Stage
from core.settings import Settings


class LedgerSink(Protocol):
    """Where ledger records go: :meth:`send` returns once every record is acknowledged and
    raises :class:`TransientError` otherwise (the step retries)."""

    def send(self, records: list[LedgerRecord]) -> None: ...


def _dead_letter(reason: str) -> DeadLetter:
    details = json.loads(reason)
    return DeadLetter(
        stage=str(details.get("stage", "unknown")),
        error_class=str(details.get("error_class", "unknown")),
        message=str(details.get("message", ""))[:MAX_ERROR_CHARS],
    )


def _poison_id(item: Item) -> str | None:
    """The article id a poison item can be filed under: its article's, else its key's."""
    if item.clean is not None:
        return item.clean.article.id
    if item.origin is not None and item.origin.key is not None:
        key = item.origin.key.decode("ascii", "replace")
        if is_article_id(key):
            return key
    return None


def ledger_records(
    batch: Batch, *, worker: str, staleness_bound_ms: int, now_ms: int | None = None
) -> list[LedgerRecord]:
    """The ledger records of a finished batch (see the module docstring): one per article id,
    the outcome of its last message in the batch, in the order of those last messages."""
    decided_at = now_ms if now_ms is not None else int(time.time() * 1000)
    # The per-batch steps replace the items they judge (the dedup step adds its verdict), so a
    # message is matched to its judgement by id and position, not by object identity.
    judged: dict[_Where, tuple[Item, LedgerOutcome, str | None]] = {}
    for kept in batch.indexed:
        judged[_where(kept)] = (kept, LedgerOutcome.INDEXED, None)
    for copy in batch.duplicates:
        judged[_where(copy)] = (copy, LedgerOutcome.DUPLICATE, None)
    for poisoned, why in batch.poison:
        judged[_where(poisoned)] = (poisoned, LedgerOutcome.DEAD_LETTERED, why)
    latest: dict[str, LedgerRecord] = {}
    for message in batch.items:
        item, outcome, reason = judged.get(_where(message), (message, None, None))
        record = _record(
            item,
            outcome,
            reason,
            indexed_at_ms=batch.indexed_at_ms,
            worker=worker,
            bound_ms=staleness_bound_ms,
            decided_at=decided_at,
        )
        if record is not None:
            latest.pop(record.article_id, None)  # keep the order of last messages
            latest[record.article_id] = record
    return list(latest.values())


_Where = tuple[str | None, int, int]


def _where(item: Item) -> _Where:
    origin = item.origin
    return (
        item.article_id,
        origin.partition if origin is not None else -1,
        origin.offset if origin is not None else -1,
    )


def _record(
    item: Item,
    judged: LedgerOutcome | None,
    poison: str | None,
    *,
    indexed_at_ms: int | None,
    worker: str,
    bound_ms: int,
    decided_at: int,
) -> LedgerRecord | None:
    """The record of one message's outcome; ``None`` when it has none of its own (no usable
    id, or an article superseded by a later message of its id in the batch)."""
    origin = item.origin
    source = (
        SourceMessage(topic=origin.topic, partition=origin.partition, offset=origin.offset)
        if origin is not None
        else None
    )
    article = item.clean.article if item.clean is not None else item.article
    common: dict[str, Any] = {
        "decided_at_ms": decided_at,
        "worker": worker,
        "source": source,
        "produced_at_ms": item.produced_at_ms,
        "url": article.url if article else "",
        "feed_id": article.feed_id if article else "",
        "fetched_at": article.fetched_at if article else None,
    }
    if item.poison is not None or judged is LedgerOutcome.DEAD_LETTERED:
        article_id = _poison_id(item)
        if article_id is None:
            return None  # no usable id: nothing to file the outcome under
        return LedgerRecord(
            article_id=article_id,
            outcome=LedgerOutcome.DEAD_LETTERED,
            dead_letter=_dead_letter(poison or item.poison or "{}"),
            **common,
        )
    if item.delete is not None:
        return LedgerRecord(
            article_id=item.delete.article_id,
            outcome=LedgerOutcome(item.delete.reason.value),
            **common,
        )
    if article is None:
        return None
    if item.reject is not None:
        return LedgerRecord(
            article_id=article.id,
            outcome=LedgerOutcome.REJECTED,
            reason=item.reject.value,
            **common,
        )
    if judged is LedgerOutcome.INDEXED and indexed_at_ms is not None:
        return LedgerRecord(
            article_id=article.id,
            outcome=LedgerOutcome.INDEXED,
            indexed_at_ms=indexed_at_ms,
            visible_by_ms=indexed_at_ms + bound_ms,
            **common,
        )
    if judged is LedgerOutcome.DUPLICATE and item.verdict is not None:
        return LedgerRecord(
            article_id=article.id,
            outcome=LedgerOutcome.DUPLICATE,
            duplicate_of=item.verdict.duplicate_of,
            **common,
        )
    # Superseded by a later message of its id in this batch: that message's record stands.
    return None


class LedgerWriter:
    """Synchronous ledger writes through a reliable producer (``acks=all``, idempotence).

    Each record goes to :func:`core.ledger.ledger_partition` of its id, the partition count read
    from the broker when the writer starts (the topic must exist: :func:`core.kafka.ensure_topics`
    creates it). :meth:`send` returns only once every record was acknowledged.
    """

    def __init__(self, settings: Settings, *, timeout_s: float = 30.0) -> None:
        self._config = producer_config(settings, client_id="newsstream-ledger")
        self._producer = Producer(self._config)
        self._topic = settings.kafka_ledger_topic
        self._timeout_s = timeout_s
        self._partitions = self._count()

    def _count(self) -> int:
        try:
            topic = self._producer.list_topics(self._topic, timeout=10).topics.get(self._topic)
        except KafkaException as exc:
            raise TransientError(f"Kafka unavailable: {exc}") from exc
        if topic is None or topic.error is not None or not topic.partitions:
            raise ConfigurationError(
                f"the ledger topic {self._topic!r} does not exist: expected it created by "
                "`newsstream up` or the worker at start (core.kafka.ensure_topics)"
            )
        return len(topic.partitions)

    @property
    def partitions(self) -> int:
        return self._partitions

    def send(self, records: list[LedgerRecord]) -> None:
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for record in records:
            while True:
                try:
                    self._producer.produce(
                        self._topic,
                        key=record.article_id.encode("ascii"),
                        value=record.to_bytes(),
                        partition=ledger_partition(record.article_id, self._partitions),
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:  # the local queue is full: serve reports, never drop
                    self._producer.poll(0.1)
        left = self._producer.flush(self._timeout_s)
        if left:
            # As the DLQ writer: an idempotent producer never recovers from a broker that lost
            # its state; start over and let the step retry the whole batch's records.
            self._producer.purge()
            self._producer.poll(0)
            self._producer = Producer(self._config)
        if left or failures:
            raise TransientError(f"ledger write not acknowledged ({left} pending, {failures[:1]})")

    def close(self) -> None:
        self._producer.flush(10)


class WriteLedger:
    """The ledger step (see the module docstring)."""

    def __init__(
        self,
        sink: LedgerSink,
        *,
        worker: str,
        staleness_bound_ms: int,
        stop: threading.Event,
        max_backoff_s: float,
    ) -> None:
        self._sink = sink
        self._worker = worker
        self._bound_ms = staleness_bound_ms
        self._stop = stop
        self._max_backoff_s = max_backoff_s

    def __call__(self, batch: Batch) -> Batch:
        started = time.monotonic()
        records = ledger_records(batch, worker=self._worker, staleness_bound_ms=self._bound_ms)
        if records:
            retry_transient(
                lambda: self._sink.send(records),
                dependency="kafka",
                stop=self._stop,
                max_backoff_s=self._max_backoff_s,
            )
        STAGE_SECONDS.labels(Stage.LEDGER).observe(time.monotonic() - started)
        return batch
