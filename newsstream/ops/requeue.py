"""Re-produce stored messages to the articles topic and wait for every delivery report.

Used by ``newsstream dlq replay`` and ``newsstream reconcile``. The producer is the reliable
one of :func:`core.kafka.producer_config` (``acks=all``, idempotence on). :func:`requeue`
returns only when every message was acknowledged; otherwise it raises
:class:`core.errors.TransientError` and the caller must not record anything as re-queued
(running the command again re-sends, which the idempotent upsert on id makes harmless).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from core.errors import TransientError
from core.kafka import producer_config
from core.settings import Settings


@dataclass(frozen=True)
class Outgoing:
    """One message to re-produce: key, value and headers as they should be on the topic."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def requeue(
    settings: Settings,
    messages: Sequence[Outgoing],
    client_id: str,
    on_delivered: Callable[[int], None] | None = None,
    timeout_s: float = 120.0,
) -> int:
    """Produce ``messages`` to ``settings.kafka_topic``; returns how many were acknowledged.

    ``on_delivered(n)`` is called as reports arrive (for progress bars). Raises
    :class:`TransientError` when any message failed or was still unacknowledged after
    ``timeout_s``.
    """
    if not messages:
        return 0
    producer = Producer(producer_config(settings, client_id=client_id))
    failures: list[str] = []
    delivered = 0

    def report(err: KafkaError | None, _msg: Message) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(str(err))
            return
        delivered += 1
        if on_delivered is not None:
            on_delivered(1)

    deadline = time.monotonic() + timeout_s
    for message in messages:
        while True:
            try:
                producer.produce(
                    settings.kafka_topic,
                    key=message.key,
                    value=message.value,
                    headers=list[tuple[str, str | bytes | None]](message.headers),
                    on_delivery=report,
                )
                break
            except BufferError:
                # The local queue is full: serve reports until there is room (never drop).
                if time.monotonic() > deadline:
                    raise TransientError("Kafka producer queue full past the timeout") from None
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(max(0.0, deadline - time.monotonic()))
    if left or failures:
        raise TransientError(
            f"{delivered} of {len(messages)} messages acknowledged "
            f"({left} pending, first failure: {failures[:1] or 'none'})"
        )
    return delivered
