"""Stage 1, decode + validate: one Kafka message becomes an :class:`Item`.

In: a message from ``news.articles``. Out: an item with the decoded Article; a delete item for
a tombstone (null value: :func:`consumers.consumer.is_tombstone`; an empty value is no
tombstone) whose key is an article id, with the reason its
``newsstream-delete-reason`` header gives (``deleted`` or ``expired``); or a poison item (its
DLQ reason) when the value breaks the Article contract or is over the size cap, or a tombstone
has no article id as its key (there is nothing it could delete). Either way
the item carries its origin (topic, partition, offset, original key, bytes and headers) for a
DLQ write, and its ``produced_at`` header (ms) for time-to-searchable. Poison is not written
here: it travels with its batch to :class:`consumers.dlq.RouteToDlq`.
"""

from __future__ import annotations

import time

from arroyo.backends.kafka import KafkaPayload
from arroyo.types import BrokerValue, Message

from consumers.consumer import is_tombstone
from consumers.dlq import dlq_reason
from consumers.item import Deletion, Item, Origin
from core.article import DELETE_REASON_HEADER, decode_article, delete_reason
from core.errors import InvalidMessage
from core.ids import is_article_id
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


def deletion(payload: KafkaPayload) -> Deletion:
    """The delete a tombstone asks for; :class:`InvalidMessage` when its key is no article id."""
    key = (payload.key or b"").decode("ascii", "replace")
    if not is_article_id(key):
        raise InvalidMessage(f"a tombstone needs an article id as its key, found {key[:80]!r}")
    header = next((bytes(v) for k, v in payload.headers if k == DELETE_REASON_HEADER), None)
    return Deletion(article_id=key, reason=delete_reason(header))


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
                value=bytes(payload.value or b""),
                headers=tuple((k, bytes(v)) for k, v in payload.headers),
            )
        started = time.perf_counter()
        produced_at = produced_at_ms(payload)
        try:
            if is_tombstone(payload.value):
                return Item(produced_at_ms=produced_at, origin=origin, delete=deletion(payload))
            if len(payload.value) > self._max_bytes:
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
