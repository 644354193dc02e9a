"""Kafka client factories: the librdkafka settings every newsstream process uses.

- Producers: ``acks=all`` and idempotence on, so a retried send never duplicates or reorders
  within a partition; delivery reports are the only proof that an entry reached Kafka.
- Consumers: auto-commit off (offsets are committed by the worker only after Milvus
  acknowledged the batch); ``max.poll.interval.ms`` from the settings (it is also the group's
  rebalance timeout, which the local broker waits out on every join).

``settings.kafka_*_config`` is a plain librdkafka passthrough applied last.

librdkafka's own log lines (for example "Connect to ... failed: Connection refused" while a
broker is down) go to the ``newsstream.librdkafka`` logger instead of raw stderr, so they carry
the process's log format and can be filtered like any other logger. They are delivered from the
client's ``poll()``, which every long-lived newsstream client calls.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from core.errors import ConfigurationError, TransientError
from core.settings import Settings

#: Receives librdkafka's log lines from every client built by this module.
LIBRDKAFKA_LOGGER = logging.getLogger("newsstream.librdkafka")


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise ConfigurationError(
            "NEWSSTREAM_KAFKA_BOOTSTRAP is not set: expected host:port of a Kafka broker "
            "(`newsstream up` sets it when it starts the local broker)"
        )
    return settings.kafka_bootstrap


def producer_config(settings: Settings, client_id: str = "newsstream-producer") -> dict[str, Any]:
    """librdkafka settings of a reliable producer."""
    config: dict[str, Any] = {
        "bootstrap.servers": _bootstrap(settings),
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 20,
        "message.timeout.ms": 120_000,
        "queue.buffering.max.messages": 100_000,
        "reconnect.backoff.max.ms": 5_000,
        # Topics are created by ensure_topics with their partitions and policies; a producer
        # must never create one with the broker's defaults (e.g. after a broker restart).
        "allow.auto.create.topics": False,
        "logger": LIBRDKAFKA_LOGGER,
    }
    config.update(settings.kafka_producer_config)
    return config


def consumer_config(settings: Settings, group_id: str | None = None) -> dict[str, Any]:
    """librdkafka settings of a worker consumer (manual commits, eager round-robin rebalancing)."""
    config: dict[str, Any] = {
        "bootstrap.servers": _bootstrap(settings),
        "group.id": group_id or settings.kafka_group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "max.poll.interval.ms": settings.kafka_max_poll_interval_ms,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.kafka_session_timeout_ms // 5),
        # arroyo's consumer drives eager assignment itself (assign(), not incremental_assign()),
        # so the classic protocol needs an eager strategy; cooperative-sticky fails in it with
        # "_STATE: Failed to set assignment". On each rebalance arroyo joins in-flight batches
        # and commits what Milvus acknowledged before the partitions go.
        "partition.assignment.strategy": "roundrobin",
        "reconnect.backoff.max.ms": 5_000,
        "logger": LIBRDKAFKA_LOGGER,
    }
    config.update(settings.kafka_consumer_config)
    return config


def reader_config(settings: Settings, name: str, **extra: Any) -> dict[str, Any]:
    """librdkafka settings of a reader that scans a topic without joining any group's work:
    a group id of its own (``newsstream-<name>-<random>``), no commits, from the earliest
    offset, and end-of-partition events (the end of a partition is where librdkafka says it
    is: the local broker's high watermarks are wrong when a record batch holds several
    records). ``extra`` adds or overrides librdkafka settings."""
    return {
        "bootstrap.servers": _bootstrap(settings),
        "group.id": f"newsstream-{name}-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "logger": LIBRDKAFKA_LOGGER,
        **extra,
    }


def admin_client(settings: Settings) -> AdminClient:
    """An admin client for topic management and health checks."""
    return AdminClient({"bootstrap.servers": _bootstrap(settings)})


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the articles, DLQ, search-events, status, story-edits, audit and ledger topics if
    missing
    (idempotent).

    Raises :class:`TransientError` when the broker does not answer within ``timeout_s``.
    """
    wanted = {
        settings.kafka_topic: settings.kafka_partitions,
        settings.kafka_dlq_topic: 1,
        settings.kafka_search_events_topic: 1,
        settings.kafka_status_topic: 1,
        settings.kafka_story_edits_topic: 1,
        # One partition: the audit is one append-only sequence, read newest first.
        settings.kafka_audit_topic: 1,
        # Keyed by article id, partitioned by core.ledger.ledger_partition: never add
        # partitions to it later (ids would move).
        settings.kafka_ledger_topic: settings.kafka_partitions,
    }
    # Status and story edits are compacted latest-per-key logs; search events are replayed by
    # the trends app at every start, so two days of them are enough; the audit is kept by time.
    topic_config = {
        settings.kafka_status_topic: {"cleanup.policy": "compact"},
        settings.kafka_story_edits_topic: {"cleanup.policy": "compact"},
        settings.kafka_ledger_topic: {"cleanup.policy": "compact"},
        settings.kafka_search_events_topic: {"retention.ms": str(2 * 24 * 3600 * 1000)},
        settings.kafka_audit_topic: {
            "cleanup.policy": "delete",
            "retention.ms": str(settings.audit_retention_days * 24 * 3600 * 1000),
        },
    }
    create_topics(
        settings,
        {name: (parts, topic_config.get(name, {})) for name, parts in wanted.items()},
        timeout_s,
    )


def create_topics(
    settings: Settings,
    topics: Mapping[str, tuple[int, Mapping[str, str]]],
    timeout_s: float = 30.0,
) -> None:
    """Create each topic of ``topics`` (name -> (partitions, topic config)) the broker lacks,
    with ``settings.kafka_replication_factor`` replicas; a topic that exists is left as it is.

    Raises :class:`TransientError` when the broker does not answer within ``timeout_s`` or
    refuses a creation (a topic another process created meanwhile is not an error).
    """
    admin = admin_client(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            existing = set(admin.list_topics(timeout=5).topics)
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise TransientError(
                    f"Kafka at {settings.kafka_bootstrap} unreachable: {exc}"
                ) from exc
            time.sleep(0.5)
    missing = [
        NewTopic(
            name,
            num_partitions=parts,
            replication_factor=settings.kafka_replication_factor,
            config=dict(config),
        )
        for name, (parts, config) in topics.items()
        if name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            # Another process may have created it between list and create.
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TransientError(f"could not create topic {name}: {exc}") from exc


def kafka_reachable(settings: Settings, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request within ``timeout_s``."""
    try:
        admin_client(settings).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def group_lag(settings: Settings, timeout_s: float = 5.0) -> dict[int, int]:
    """Messages not yet committed by the worker group, per partition of the articles topic.

    Committed offsets come from the admin API and watermarks from a consumer with a private
    group id: the probe never joins or touches the workers' group (a consumer sharing the
    group id disturbed the group on the local broker). Raises :class:`TransientError` when
    the broker does not answer.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    admin = admin_client(settings)
    probe = Consumer(
        {
            "bootstrap.servers": _bootstrap(settings),
            "group.id": f"newsstream-lag-probe-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = probe.list_topics(settings.kafka_topic, timeout=timeout_s)
        topic = metadata.topics.get(settings.kafka_topic)
        if topic is None or topic.error is not None:
            return {}
        partitions = [TopicPartition(settings.kafka_topic, p) for p in sorted(topic.partitions)]
        request = ConsumerGroupTopicPartitions(settings.kafka_group_id, partitions)
        future = admin.list_consumer_group_offsets([request])[settings.kafka_group_id]
        committed = {
            tp.partition: tp.offset for tp in future.result(timeout=timeout_s).topic_partitions
        }
        lag: dict[int, int] = {}
        for tp in partitions:
            low, high = probe.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            offset = committed.get(tp.partition, -1)
            position = offset if offset >= 0 else low
            lag[tp.partition] = max(0, high - position)
        return lag
    except KafkaException as exc:
        raise TransientError(f"Kafka lag unavailable: {exc}") from exc
    finally:
        probe.close()
