"""Stage 1, decode + validate: one Kafka message becomes an :class:`Item`.

In: a message from ``news.articles``. Out: an item with the decoded Article, or a poison item
(its DLQ reason) when the value breaks the Article contract or is over the size cap. Either way
the item carries its origin (topic, partition, offset, original key, bytes and headers) for a
DLQ write, and its ``produced_at`` header (ms) for time-to-searchable. Poison is not written
here: it travels with its batch to :class:`consumers.dlq.RouteToDlq`.
"""

from __future__ import annotations

import time

from arroyo.backends.kafka import KafkaPayload
from arroyo.types import BrokerValue, Message

from consumers.dlq import dlq_reason
from consumers.item import Item, Origin
from core.article import decode_article
from core.errors import InvalidMessage
from core.metrics import STAGE_SECONDS, Stage


def produced_at_ms(payload: KafkaPayload) -> int | None:
    """The ``produced_at`` header in ms, ``None`` when absent or not a number."""
    for name, value in payload.headers:
        if name == "produced_at":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class Decode:
    """The decode step (see the module docstring)."""

    def __init__(self, *, max_message_bytes: int) -> None:
        self._max_bytes = max_message_bytes

    def __call__(self, message: Message[KafkaPayload]) -> Item:
        payload = message.payload
        value = message.value
        origin = None
        if isinstance(value, BrokerValue):
            origin = Origin(
                topic=value.partition.topic.name,
                partition=value.partition.index,
                offset=value.offset,
                key=payload.key,
                value=payload.value or b"",
                headers=tuple((k, bytes(v)) for k, v in payload.headers),
            )
        started = time.perf_counter()
        produced_at = produced_at_ms(payload)
        try:
            if payload.value is not None and len(payload.value) > self._max_bytes:
                raise InvalidMessage(
                    f"message of {len(payload.value)} bytes is over {self._max_bytes}"
                )
            article = decode_article(payload.value)
        except InvalidMessage as exc:
            return Item(
                produced_at_ms=produced_at, origin=origin, poison=dlq_reason(Stage.DECODE, exc)
            )
        STAGE_SECONDS.labels(Stage.DECODE).observe(time.perf_counter() - started)
        return Item(produced_at_ms=produced_at, origin=origin, article=article)
