"""DLQ routing: poison to ``news.articles.dlq`` with its story, and the one circuit breaker.

Poison is a message that can never succeed: it breaks the Article contract (found by the decode
step) or its embedding is unusable (found by the embed step). It travels with its batch, and
:class:`RouteToDlq`, a per-batch step that runs before the story and upsert steps, writes the
batch's poison and waits for the broker's acknowledgement, so a DLQ write is always
acknowledged before the commit that skips its offset. An outage of the DLQ broker is retried
(never a drop). Before writing, :class:`DlqBreaker` looks at every message of the batch in
order: too many poison messages in a row, or too large a share, raise :class:`DlqFlood` and
the worker stops (a bad deploy must not empty the topic into the DLQ).

Each DLQ message is the original key and bytes plus headers: ``stage``, ``error_class``,
``error_message``, ``original_topic``, ``original_partition``, ``original_offset`` (and the
original headers).
"""

from __future__ import annotations

import json
import threading
from typing import Protocol

from confluent_kafka import KafkaError, Message, Producer

from consumers.item import Batch, Origin
from consumers.retry import retry_transient
from core.errors import TransientError
from core.kafka import producer_config
from core.metrics import Stage
from core.settings import Settings

#: The breaker's defaults: stop when this many messages in a row, or this share (after at
#: least ``DLQ_RATIO_MIN_MESSAGES`` messages), are poison.
DLQ_MAX_CONSECUTIVE = 100
DLQ_MAX_RATIO = 0.5
DLQ_RATIO_MIN_MESSAGES = 200

DLQ_HEADERS = (
    "stage",
    "error_class",
    "error_message",
    "original_topic",
    "original_partition",
    "original_offset",
)


class DlqFlood(Exception):
    """Too many poison messages, in a row or by share: the DLQ circuit breaker is open."""


def dlq_reason(stage: Stage, error: Exception) -> str:
    """The DLQ reason string: JSON with the stage, the error class and its message."""
    return json.dumps(
        {"stage": str(stage), "error_class": type(error).__name__, "message": str(error)[:1000]}
    )


class DlqSink(Protocol):
    """Where poison goes: :meth:`send` returns once every item is acknowledged."""

    def send(self, items: list[tuple[Origin, str]], timeout_s: float = 30.0) -> None: ...


class DlqWriter:
    """Synchronous DLQ writes of a batch's poison.

    :meth:`send` returns only when the broker acknowledged every message, so the batch's
    offsets can be committed afterwards; otherwise it raises :class:`TransientError` and the
    caller retries (an outage never turns into data loss).
    """

    def __init__(self, settings: Settings) -> None:
        self._config = producer_config(settings, client_id="newsstream-dlq-sync")
        self._producer = Producer(self._config)
        self._topic = settings.kafka_dlq_topic

    def send(self, items: list[tuple[Origin, str]], timeout_s: float = 30.0) -> None:
        """Write each ``(origin, reason)``; ``reason`` is the JSON of ``dlq_reason``."""
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for origin, reason in items:
            details = json.loads(reason)
            headers: list[tuple[str, str | bytes | None]] = [
                (k, v) for k, v in origin.headers if k not in DLQ_HEADERS
            ]
            headers += [
                ("stage", str(details.get("stage", "unknown")).encode()),
                ("error_class", str(details.get("error_class", "unknown")).encode()),
                ("error_message", str(details.get("message", ""))[:1000].encode()),
                ("original_topic", origin.topic.encode()),
                ("original_partition", str(origin.partition).encode()),
                ("original_offset", str(origin.offset).encode()),
            ]
            self._producer.produce(
                self._topic,
                key=origin.key,
                value=origin.value,
                headers=headers,
                on_delivery=on_delivery,
            )
        left = self._producer.flush(timeout_s)
        if left:
            # Unacknowledged past the timeout: start over with a new producer (an idempotent
            # producer never recovers from a broker that lost its state), then let the caller
            # retry the whole write.
            self._producer.purge()
            self._producer.poll(0)
            self._producer = Producer(self._config)
        if left or failures:
            raise TransientError(f"DLQ write not acknowledged ({left} pending, {failures[:1]})")

    def close(self) -> None:
        self._producer.flush(10)


class DlqBreaker:
    """The DLQ circuit breaker: judges messages in consumption order, whatever step found them.

    :meth:`judge` raises :class:`DlqFlood` when more than ``max_consecutive`` messages in a row
    are poison, or when more than ``max_ratio`` of the messages judged so far are (checked once
    at least ``ratio_min_messages`` were judged). Any message that is not poison (indexed,
    duplicate or rejected) ends a run.
    """

    def __init__(
        self,
        *,
        max_consecutive: int = DLQ_MAX_CONSECUTIVE,
        max_ratio: float = DLQ_MAX_RATIO,
        ratio_min_messages: int = DLQ_RATIO_MIN_MESSAGES,
    ) -> None:
        self._max_consecutive = max_consecutive
        self._max_ratio = max_ratio
        self._ratio_min = ratio_min_messages
        self._consecutive = 0
        self._poisoned = 0
        self._seen = 0

    def judge(self, poison: list[str | None]) -> None:
        """Count messages in order: each entry is a poison message's reason, or ``None``."""
        for reason in poison:
            self._seen += 1
            if reason is None:
                self._consecutive = 0
                continue
            self._consecutive += 1
            self._poisoned += 1
            if self._consecutive > self._max_consecutive:
                raise DlqFlood(f"{self._consecutive} poison messages in a row ({reason})")
            ratio = self._poisoned / self._seen
            if self._seen >= self._ratio_min and ratio > self._max_ratio:
                raise DlqFlood(
                    f"{ratio:.0%} of {self._seen} messages were poison "
                    f"(limit {self._max_ratio:.0%})"
                )


class RouteToDlq:
    """The DLQ step (per batch): judge the batch with the breaker, then write its poison.

    In: a :class:`Batch` whose poison the decode and embed steps collected. Out: the same batch,
    returned only once the DLQ acknowledged every poison message of it (retried through an
    outage until ``stop``). Raises :class:`DlqFlood` before writing anything when the breaker
    opens.
    """

    def __init__(
        self,
        sink: DlqSink,
        breaker: DlqBreaker,
        *,
        stop: threading.Event,
        max_backoff_s: float,
    ) -> None:
        self._sink = sink
        self._breaker = breaker
        self._stop = stop
        self._max_backoff_s = max_backoff_s

    def __call__(self, batch: Batch) -> Batch:
        reasons = {id(item): reason for item, reason in batch.poison}
        self._breaker.judge([reasons.get(id(item)) for item in batch.items])
        if batch.poison:
            items = [(i.origin, reason) for i, reason in batch.poison if i.origin is not None]
            retry_transient(
                lambda: self._sink.send(items),
                dependency="kafka",
                stop=self._stop,
                max_backoff_s=self._max_backoff_s,
            )
        return batch
