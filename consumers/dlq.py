"""The dead-letter queue producer: poison messages to ``news.articles.dlq`` with their story.

Each DLQ message is the original key and bytes plus headers: ``stage``, ``error_class``,
``error_message``, ``original_topic``, ``original_partition``, ``original_offset`` (and the
original headers). arroyo's DLQ policy waits for this write to be acknowledged before it commits
the offset it replaces, and its :class:`arroyo.dlq.DlqLimit` is the circuit breaker that stops
the worker when too many messages in a row, or too large a share, are poison.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from arroyo.backends.kafka import KafkaPayload, KafkaProducer
from arroyo.dlq import DlqLimit, DlqLimitState, DlqProducer
from arroyo.types import BrokerValue, Partition
from arroyo.types import Topic as ArroyoTopic

DLQ_HEADERS = (
    "stage",
    "error_class",
    "error_message",
    "original_topic",
    "original_partition",
    "original_offset",
)


def dlq_headers(value: BrokerValue[KafkaPayload], reason: str | None) -> list[tuple[str, bytes]]:
    """The headers added to a poisoned message (``reason`` is the JSON of ``dlq_reason``)."""
    details: dict[str, Any] = {}
    if reason:
        try:
            details = json.loads(reason)
        except json.JSONDecodeError:
            details = {"message": reason}
    return [
        ("stage", str(details.get("stage", "unknown")).encode()),
        ("error_class", str(details.get("error_class", "unknown")).encode()),
        ("error_message", str(details.get("message", ""))[:1000].encode("utf-8", "replace")),
        ("original_topic", value.partition.topic.name.encode()),
        ("original_partition", str(value.partition.index).encode()),
        ("original_offset", str(value.offset).encode()),
    ]


class NewsDlqProducer(DlqProducer[KafkaPayload]):
    """Writes poison messages to the DLQ topic with the headers above."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = ArroyoTopic(topic)

    def produce(self, value: BrokerValue[KafkaPayload], reason: str | None = None) -> Any:
        original = [(k, v) for k, v in value.payload.headers if k not in DLQ_HEADERS]
        payload = KafkaPayload(
            value.payload.key, value.payload.value, original + dlq_headers(value, reason)
        )
        return self._producer.produce(self._topic, payload)

    @classmethod
    def build_initial_state(
        cls, limit: DlqLimit | None, assignment: Mapping[Partition, int]
    ) -> DlqLimitState:
        return DlqLimitState(limit)
