"""Service status snapshots on a compacted Kafka topic: how the API learns what workers and
the producer are doing without importing them (they meet through Kafka).

Each worker publishes its outcome counters, and the producer the status of each feed, as JSON
under the key ``<kind>:<id>`` to ``settings.kafka_status_topic`` every few seconds and at
shutdown. Readers take the newest snapshot per key. Snapshots are cumulative since the process
started (a restarted worker starts a new id), so totals are sums over keys.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from core.errors import TransientError
from core.kafka import LIBRDKAFKA_LOGGER, producer_config
from core.settings import Settings

STATUS_KINDS = ("worker", "feed", "producer", "trends")


def new_instance_id(prefix: str) -> str:
    """A unique id for one process's life (host-independent)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class StatusPublisher:
    """Publishes ``snapshot()`` under ``kind:key`` every ``every_s`` seconds on a thread."""

    def __init__(
        self,
        settings: Settings,
        kind: str,
        snapshot: Callable[[], dict[str, dict[str, Any]]],
        every_s: float = 5.0,
    ) -> None:
        if kind not in STATUS_KINDS:
            raise ValueError(f"unknown status kind {kind!r}")
        config = producer_config(settings, client_id=f"newsstream-status-{kind}")
        config["linger.ms"] = 5
        self._producer = Producer(config)
        self._topic = settings.kafka_status_topic
        self._kind = kind
        self._snapshot = snapshot
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"status-{kind}", daemon=True)

    def start(self) -> StatusPublisher:
        self._thread.start()
        return self

    def publish_now(self) -> None:
        """Send the current snapshot (best effort: status is advisory, never data)."""
        now = time.time()
        for key, value in self._snapshot().items():
            body = json.dumps({**value, "kind": self._kind, "key": key, "at": now})
            try:
                self._producer.produce(
                    self._topic, key=f"{self._kind}:{key}".encode(), value=body.encode()
                )
            except BufferError:
                break
        self._producer.poll(0)

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            self.publish_now()

    def close(self) -> None:
        self._stop.set()
        self.publish_now()
        self._producer.flush(5)


def read_status(settings: Settings, kind: str, timeout_s: float = 5.0) -> dict[str, dict[str, Any]]:
    """The newest snapshot per key of ``kind`` (``{}`` when none was published yet)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap or "",
            "group.id": f"newsstream-status-reader-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "logger": LIBRDKAFKA_LOGGER,
        }
    )
    latest: dict[str, dict[str, Any]] = {}
    try:
        metadata = consumer.list_topics(settings.kafka_status_topic, timeout=timeout_s)
        topic = metadata.topics.get(settings.kafka_status_topic)
        if topic is None or topic.error is not None:
            return {}
        ends: dict[int, int] = {}
        assignment = []
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(settings.kafka_status_topic, partition), timeout=timeout_s
            )
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(settings.kafka_status_topic, partition, low))
        if not assignment:
            return {}
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        done: set[int] = set()
        prefix = f"{kind}:"
        while len(done) < len(ends) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset + 1 >= ends.get(partition, 0):
                done.add(partition)
            key = (message.key() or b"").decode("utf-8", "replace")
            if key.startswith(prefix):
                try:
                    latest[key[len(prefix) :]] = json.loads(message.value() or b"{}")
                except json.JSONDecodeError:
                    continue
        return latest
    except KafkaException as exc:
        raise TransientError(f"status topic unavailable: {exc}") from exc
    finally:
        consumer.close()
