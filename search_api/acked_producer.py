"""Records the API writes to Kafka and waits for: story edits, audit records, delete tombstones.

What goes in: :class:`Record` values (topic, key, value or ``None`` for a tombstone, headers).
What comes out: :meth:`AckedProducer.send` returns once the broker acknowledged every record of
the call (``acks=all``, idempotent producer, the settings of :func:`core.kafka.producer_config`,
so keys land in the partitions the feed producers' messages of the same key land in), else it
raises :class:`core.errors.TransientError`. A record not acknowledged within
:data:`DELIVERY_TIMEOUT_S` is reported as failed; one that was in flight may still reach the
broker, so every record the API sends is safe to repeat (a tombstone, an edit keyed by article,
an audit record with its own id).

One producer per API process, made on first use and shared by the request threads; after a
failed delivery it is replaced by a fresh one on the next call (librdkafka may have bumped the
idempotent producer's epoch or met a fatal error).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.errors import TransientError
from core.kafka import ensure_topics, producer_config
from core.settings import Settings

#: Seconds the broker has to acknowledge a call's records.
DELIVERY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Record:
    """One Kafka record: ``value=None`` is a tombstone."""

    topic: str
    key: bytes
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


class RecordSink(Protocol):
    """What the routes need of a producer: records sent and acknowledged, or an error."""

    def send(self, records: Sequence[Record]) -> None:
        """Return once every record is acknowledged; raise :class:`TransientError` otherwise."""


class AckedProducer:
    """The API's Kafka producer: :meth:`send` waits for the delivery report of each record."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: Producer | None = None
        self._topics_ready = False
        self._lock = threading.Lock()

    def send(self, records: Sequence[Record]) -> None:
        """Produce ``records`` and wait for every delivery report (see the module docstring)."""
        if not records:
            return
        producer = self._current()
        pending = {"count": len(records)}
        failures: list[KafkaError] = []
        done = threading.Event()
        lock = threading.Lock()

        def report(err: KafkaError | None, _msg: Message) -> None:
            with lock:
                if err is not None:
                    failures.append(err)
                pending["count"] -= 1
                if pending["count"] == 0:
                    done.set()

        try:
            for record in records:
                producer.produce(
                    record.topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers.items()),
                    on_delivery=report,
                )
            # Reports are served by whichever thread polls; each caller polls until its own
            # records are reported (librdkafka fails them at message.timeout.ms at the latest).
            deadline = time.monotonic() + DELIVERY_TIMEOUT_S + 5
            while not done.is_set() and time.monotonic() < deadline:
                producer.poll(0.05)
        except (KafkaException, BufferError) as exc:
            self._discard(producer)
            raise TransientError(f"Kafka did not take the records: {exc}") from exc
        if failures or not done.is_set():
            self._discard(producer)
            why = failures[0] if failures else "no delivery report"
            raise TransientError(f"Kafka did not acknowledge the records: {why}")

    def close(self) -> None:
        """Deliver what is queued (briefly) and drop the producer."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(2.0)

    def _current(self) -> Producer:
        with self._lock:
            if not self._topics_ready:
                # The audit and story-edit topics are created with their policies, never by a
                # producer with the broker's defaults.
                ensure_topics(self._settings, timeout_s=DELIVERY_TIMEOUT_S)
                self._topics_ready = True
            if self._producer is None:
                config = producer_config(self._settings, client_id="newsstream-api")
                # A record not delivered within the timeout is failed, and the caller told so.
                config["message.timeout.ms"] = int(DELIVERY_TIMEOUT_S * 1000)
                config["linger.ms"] = 0
                self._producer = Producer(config)
            return self._producer

    def _discard(self, producer: Producer) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
