"""Reading a keyed topic's partitions from their start to their end (the compacted registry
and the feed state are read this way).

:func:`read_partitions` yields ``(key, value)`` in log order per partition (value None for a
tombstone) and returns once every partition reported its end (librdkafka's end-of-partition
event: the local broker's high watermarks are not trusted). It reads with a group id of its own
and commits nothing, so it never disturbs the producers' group.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from core.errors import TransientError
from core.kafka import reader_config
from core.settings import Settings


def read_partitions(
    settings: Settings, topic: str, partitions: list[int] | None, timeout_s: float = 30.0
) -> Iterator[tuple[str, bytes | None]]:
    """Every record of ``partitions`` of ``topic`` (None: all of them), start to end.

    Raises :class:`TransientError` when the broker does not answer, or when ``timeout_s``
    passes without a record or an end-of-partition event.
    """
    consumer = Consumer(reader_config(settings, "feed-read", **{"fetch.wait.max.ms": 20}))
    try:
        if partitions is None:
            try:
                metadata = consumer.list_topics(topic, timeout=10)
            except KafkaException as exc:
                raise TransientError(f"Kafka unavailable while reading {topic!r}: {exc}") from exc
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                return
            partitions = sorted(found.partitions)
        if not partitions:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        open_partitions = set(partitions)
        deadline = time.monotonic() + timeout_s
        while open_partitions:
            if time.monotonic() > deadline:
                raise TransientError(
                    f"reading {topic!r} {sorted(open_partitions)} did not reach the end"
                )
            try:
                messages = consumer.consume(num_messages=10_000, timeout=0.1)
            except KafkaException as exc:
                raise TransientError(f"Kafka failed while reading {topic!r}: {exc}") from exc
            for message in messages:
                error = message.error()
                if error is None:
                    key = message.key()
                    if key is not None:
                        yield key.decode("utf-8", "replace"), message.value()
                    continue
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(message.partition() or 0)
                elif not (error.retriable() or error.code() == KafkaError._TRANSPORT):
                    raise TransientError(f"Kafka error while reading {topic!r}: {error}")
            if messages:
                deadline = time.monotonic() + timeout_s
    finally:
        consumer.close()
