"""Read a Kafka topic to its true end, without trusting high watermarks.

The local broker (Tansu 0.6) reports a wrong high watermark when a record batch holds several
records, so "how far is the end" is found by reading each partition until librdkafka reports
end-of-partition (``enable.partition.eof``). Used by the operator commands (``dlq``,
``reconcile``), which must see every message of a topic.

What goes in: settings, a topic name and, optionally, a start offset per partition. What comes
out: :class:`ScannedMessage` items in partition order of arrival, then the scan is complete;
:class:`core.errors.TransientError` when the broker does not answer or the scan cannot reach
the end within its deadline (a partial scan is never returned as if complete).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from core.errors import TransientError
from core.kafka import reader_config
from core.settings import Settings

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class ScannedMessage:
    """One message as read: where it is, its key, value and headers (values as bytes)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    def header(self, name: str) -> str:
        """The value of header ``name`` as text (``""`` when absent)."""
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return ""


def topic_partitions(consumer: Consumer, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The partition numbers of ``topic``; ``[]`` when the topic does not exist."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise TransientError(f"Kafka unavailable while reading {topic!r}: {exc}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return []
    return sorted(found.partitions)


def scan_consumer(settings: Settings, group_id: str | None = None) -> Consumer:
    """A consumer that never commits on its own and reports end-of-partition."""
    config = reader_config(settings, "scan")
    if group_id is not None:
        config["group.id"] = group_id
    return Consumer(config)


def scan_topic(
    consumer: Consumer,
    topic: str,
    start: dict[int, int] | None = None,
    timeout_s: float = 60.0,
    on_partition_done: Callable[[int], None] | None = None,
) -> Iterator[ScannedMessage]:
    """Every message of ``topic`` from ``start`` (default: the beginning) to the true end.

    ``consumer`` should come from :func:`scan_consumer`; it is assigned here (no group join).
    Raises :class:`TransientError` when the end is not reached within ``timeout_s`` of
    silence (the deadline restarts whenever a message arrives, so a long topic is fine).
    """
    partitions = topic_partitions(consumer, topic)
    if not partitions:
        return
    offsets = start or {}
    consumer.assign(
        [TopicPartition(topic, p, offsets.get(p, OFFSET_BEGINNING)) for p in partitions]
    )
    at_eof: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(at_eof) < len(partitions):
        if time.monotonic() > deadline:
            raise TransientError(
                f"reading {topic!r} did not reach the end of partitions "
                f"{sorted(set(partitions) - at_eof)} within {timeout_s:.0f} s"
            )
        try:
            message = consumer.poll(0.5)
        except KafkaException as exc:
            raise TransientError(f"Kafka failed while reading {topic!r}: {exc}") from exc
        if message is None:
            continue
        partition = message.partition() or 0
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if partition not in at_eof and on_partition_done is not None:
                    on_partition_done(partition)
                at_eof.add(partition)
                continue
            if error.retriable() or error.code() == KafkaError._TRANSPORT:
                continue
            raise TransientError(f"Kafka error while reading {topic!r}: {error}")
        at_eof.discard(partition)
        deadline = time.monotonic() + timeout_s
        yield ScannedMessage(
            partition=partition,
            offset=message.offset() or 0,
            key=message.key(),
            value=message.value(),
            headers=_headers(message.headers()),
        )


def _headers(raw: object) -> Headers:
    """Headers as ``(name, bytes)`` pairs (librdkafka gives ``None`` for an empty value)."""
    pairs: Headers = []
    if isinstance(raw, list):
        for name, value in raw:
            if isinstance(value, str):
                value = value.encode("utf-8")
            pairs.append((str(name), value or b""))
    return pairs
