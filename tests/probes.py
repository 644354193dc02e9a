"""Test probes: wait for the worker group to catch up, count rows in Milvus, bounded waits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from pymilvus import MilvusException

from core.settings import Settings
from store.client import connect

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5
) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class ProbeTimeout(AssertionError):
    """A probe reached its deadline before it could answer: no answer is not an empty answer."""


def read_topic(settings: Settings, topic: str, timeout_s: float = 30) -> list[Any]:
    """Every message of ``topic``, read from the beginning to EOF on all partitions.

    Raises :class:`ProbeTimeout` when a partition did not reach EOF within ``timeout_s`` or the
    topic does not exist, so "the DLQ is empty" can never be the answer of a read that failed.
    """
    return _read_to_eof(settings, topic, timeout_s)[1]


def topic_ends(settings: Settings, timeout_s: float = 30) -> dict[int, int]:
    """The true end offset of each partition of the articles topic, found by reading to EOF.

    The local broker (Tansu 0.6) reports a wrong high watermark when a record batch holds
    several records (latest = last batch base offset + 1), so watermarks cannot be trusted
    in tests; reading the topic can. Raises :class:`ProbeTimeout` like :func:`read_topic`.
    """
    return _read_to_eof(settings, settings.kafka_topic, timeout_s)[0]


def _read_to_eof(
    settings: Settings, topic_name: str, timeout_s: float
) -> tuple[dict[int, int], list[Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"ends-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        topic = consumer.list_topics(topic_name, timeout=10).topics.get(topic_name)
        if topic is None or topic.error is not None or not topic.partitions:
            error = topic.error if topic is not None else "no metadata"
            raise ProbeTimeout(f"topic {topic_name} cannot be read to its end: {error}")
        partitions = sorted(topic.partitions)
        consumer.assign([TopicPartition(topic_name, p, OFFSET_BEGINNING) for p in partitions])
        ends = {p: 0 for p in partitions}
        messages: list[Any] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_eof) < len(partitions):
            if time.monotonic() >= deadline:
                raise ProbeTimeout(
                    f"{topic_name}: partitions {sorted(set(partitions) - at_eof)} did not reach "
                    f"their end within {timeout_s:.0f} s ({len(messages)} messages read)"
                )
            message = consumer.poll(0.5)
            if message is None:
                continue
            partition = message.partition() or 0
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(partition)
                elif message.error().fatal():
                    raise KafkaException(message.error())
                continue  # transient client errors: librdkafka retries; the deadline bounds it
            at_eof.discard(partition)
            messages.append(message)
            ends[partition] = max(ends[partition], (message.offset() or 0) + 1)
        return ends, messages
    finally:
        consumer.close()


def committed_offsets(settings: Settings) -> dict[int, int]:
    """The worker group's committed offset per partition (-1 when none)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    partitions = [TopicPartition(settings.kafka_topic, p) for p in range(settings.kafka_partitions)]
    request = ConsumerGroupTopicPartitions(settings.kafka_group_id, partitions)
    result = admin.list_consumer_group_offsets([request])[settings.kafka_group_id].result(10)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def total_lag(settings: Settings) -> int | None:
    """Messages of the articles topic the worker group has not committed (exact), or None when
    the broker did not answer in time (a caller asserting on the lag must check for None)."""
    try:
        ends = topic_ends(settings)
        committed = committed_offsets(settings)
    except (KafkaException, ProbeTimeout):
        return None
    return sum(max(0, end - max(committed.get(p, -1), 0)) for p, end in ends.items())


def wait_for_lag_zero(settings: Settings, timeout_s: float = 120) -> None:
    wait_until(lambda: total_lag(settings) == 0, timeout_s, "the worker group to reach lag 0")


def _retrying(probe: Callable[[], T], attempts: int = 3, pause_s: float = 2.0) -> T:
    """Run a Milvus probe, again after a pause when the connection fails (a busy Milvus Lite
    server can drop a channel); the last failure propagates."""
    for _ in range(attempts - 1):
        try:
            return probe()
        except MilvusException:
            time.sleep(pause_s)
    return probe()


def milvus_count(settings: Settings) -> int:
    """Rows in the test collection at Strong consistency."""
    return _retrying(lambda: _milvus_count(settings))


def milvus_ids(settings: Settings) -> set[str]:
    """Every id in the test collection at Strong consistency."""
    return _retrying(lambda: _milvus_ids(settings))


def _milvus_count(settings: Settings) -> int:
    client = connect(settings.milvus_uri or "")
    try:
        if not client.has_collection(settings.milvus_collection):
            return 0
        rows = client.query(
            settings.milvus_collection,
            filter="",
            output_fields=["count(*)"],
            consistency_level="Strong",
        )
        return int(rows[0]["count(*)"])
    finally:
        client.close()


def _milvus_ids(settings: Settings) -> set[str]:
    client = connect(settings.milvus_uri or "")
    try:
        ids: set[str] = set()
        iterator = client.query_iterator(
            settings.milvus_collection,
            batch_size=1000,
            filter="",
            output_fields=["id"],
            consistency_level="Strong",
        )
        while True:
            batch = iterator.next()
            if not batch:
                iterator.close()
                break
            ids.update(row["id"] for row in batch)
        return ids
    finally:
        client.close()
