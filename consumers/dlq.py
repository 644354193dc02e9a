"""The dead-letter queue writer: poison messages to ``news.articles.dlq`` with their story.

Each DLQ message is the original key and bytes plus headers: ``stage``, ``error_class``,
``error_message``, ``original_topic``, ``original_partition``, ``original_offset`` (and the
original headers). The indexer writes a batch's poison before the batch reaches the commit
step, so a DLQ write is always acknowledged before the offset it replaces is committed.
"""

from __future__ import annotations

import json

from confluent_kafka import KafkaError, Message, Producer

from consumers.prepare import Origin
from core.errors import TransientError
from core.kafka import producer_config
from core.settings import Settings

DLQ_HEADERS = (
    "stage",
    "error_class",
    "error_message",
    "original_topic",
    "original_partition",
    "original_offset",
)


class DlqWriter:
    """Synchronous DLQ writes for poison found after batching (e.g. a NaN vector).

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
