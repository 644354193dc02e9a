"""The feed registry on Kafka: a compacted topic keyed by feed id, shared by every producer.

What it is: one record per feed on the feeds topic (:attr:`core.settings.Settings.feeds_topic`,
``news.feeds`` by default), key = the feed id, value = the feed as JSON (:func:`encode_spec`),
a null value (tombstone) = the feed was removed. The topic is compacted and keeps tombstones
(``delete.retention.ms`` of a century), so a removal made anywhere stays a removal: a producer
with an old local registry cannot bring the feed back.

Where a feed lives: partition :func:`feed_partition` (CRC-32 of the id modulo the partition
count, the ledger's function), on the feeds topic and on the feed-state topic alike, so the
producer that Kafka gives partition ``p`` of the feeds topic finds the poll state of its feeds in
partition ``p`` of the state topic. Never add partitions to either topic later (feeds would move
away from their state).

Who writes it: ``newsstream feeds add/update/remove/import`` through
:class:`producers.registry.FeedRegistry` (its :class:`FeedTopicWriter` sink), and every producer
at start, which publishes the feeds of its local registry and feeds file that the topic never
held (:func:`seed_feeds`: same key and same value, so several producers seeding at once agree).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.errors import InvalidMessage, TransientError
from core.kafka import create_topics, producer_config
from core.ledger import ledger_partition
from core.settings import Settings
from producers.feeds import FeedSpec
from producers.registry import FeedOrigin, FeedRegistry, ResolvedFeed, state_path

#: Version of a feed record's JSON; a reader refuses versions it does not know.
SPEC_VERSION = 1
#: Tombstones are kept this long (a century): a removal must outlive every stale local registry.
TOMBSTONE_RETENTION_MS = 100 * 365 * 24 * 3600 * 1000


def feed_partition(feed_id: str, partitions: int) -> int:
    """The partition of ``feed_id`` on the feeds and the feed-state topics (CRC-32 modulo the
    partition count: :func:`core.ledger.ledger_partition`, so no client's partitioner decides)."""
    return ledger_partition(feed_id, partitions)


def encode_spec(spec: FeedSpec) -> bytes:
    """A feed as the value of its record (compact JSON, keys sorted: the same feed always
    encodes to the same bytes, so a re-publish is recognisably the same value)."""
    body: dict[str, Any] = {"v": SPEC_VERSION, "url": spec.url, "name": spec.name}
    if spec.tags:
        body["tags"] = list(spec.tags)
    if spec.retention_days is not None:
        body["retention_days"] = spec.retention_days
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def decode_spec(value: bytes) -> FeedSpec:
    """The feed of a record value; :class:`InvalidMessage` when it is not one this version wrote."""
    try:
        body = json.loads(value)
        if body.get("v") != SPEC_VERSION:
            raise InvalidMessage(f"feed record version {body.get('v')!r} is not {SPEC_VERSION}")
        retention = body.get("retention_days")
        return FeedSpec(
            url=str(body["url"]),
            name=str(body.get("name", "")),
            tags=tuple(str(t) for t in body.get("tags", [])),
            retention_days=None if retention is None else int(retention),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidMessage(f"not a feed record: {exc}") from exc


def ensure_feed_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the feeds and feed-state topics when missing: compacted, with
    ``settings.kafka_partitions`` partitions each (idempotent; TransientError when the broker
    does not answer)."""
    partitions = settings.kafka_partitions
    create_topics(
        settings,
        {
            settings.feeds_topic: (
                partitions,
                {"cleanup.policy": "compact", "delete.retention.ms": str(TOMBSTONE_RETENTION_MS)},
            ),
            settings.feed_state_topic: (partitions, {"cleanup.policy": "compact"}),
        },
        timeout_s,
    )


def topic_partitions(producer: Producer, topic: str, timeout_s: float = 10.0) -> int:
    """The partition count of ``topic`` as the broker reports it (TransientError when absent
    or unreachable: the topics are created before anything is written to them)."""
    try:
        metadata = producer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise TransientError(f"Kafka unavailable while reading {topic!r}: {exc}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise TransientError(f"topic {topic!r} does not exist (yet)")
    return len(found.partitions)


class KeyedTopicWriter:
    """Writes records keyed by feed id to their :func:`feed_partition` of one topic.

    :meth:`write` queues; :meth:`flush` waits for every delivery report and raises
    :class:`TransientError` when any failed or the timeout passed.
    """

    def __init__(self, settings: Settings, topic: str, client_id: str) -> None:
        self._topic = topic
        self._producer = Producer(producer_config(settings, client_id))
        self._partitions = topic_partitions(self._producer, topic)
        self._errors: list[str] = []

    def _report(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def write(self, feed_id: str, value: bytes | None) -> None:
        """Queue ``value`` (None: a tombstone) under ``feed_id``; never drops (waits for room)."""
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=feed_id.encode("ascii"),
                    value=value,
                    partition=feed_partition(feed_id, self._partitions),
                    on_delivery=self._report,
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything queued is acknowledged (TransientError otherwise)."""
        left = self._producer.flush(timeout_s)
        errors, self._errors = self._errors, []
        if left or errors:
            raise TransientError(
                f"{left} records to {self._topic!r} unacknowledged, {len(errors)} failed"
                + (f" ({errors[0]})" if errors else "")
            )

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is queued; returns the records still unacknowledged."""
        return int(self._producer.flush(timeout_s))


class FeedTopicWriter:
    """The registry's sink: every change of a feed, written to the feeds topic and acknowledged
    before the call returns (so a command that printed "added" has reached Kafka)."""

    def __init__(self, settings: Settings) -> None:
        ensure_feed_topics(settings)
        self._writer = KeyedTopicWriter(settings, settings.feeds_topic, "newsstream-feeds")

    def put(self, specs: Iterable[FeedSpec]) -> None:
        """Publish ``specs`` (added or changed feeds) and wait for Kafka's acknowledgement."""
        for spec in specs:
            self._writer.write(spec.id, encode_spec(spec))
        self._writer.flush()

    def remove(self, feed_id: str) -> None:
        """Publish the tombstone of ``feed_id`` and wait for Kafka's acknowledgement."""
        self._writer.write(feed_id, None)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def read_feed_keys(settings: Settings, timeout_s: float = 30.0) -> dict[str, bytes | None]:
    """Every key the feeds topic holds with its latest value (None: removed), read from the
    start to the end of every partition. TransientError when the end is not reached."""
    from producers.topic_reader import read_partitions

    latest: dict[str, bytes | None] = {}
    for key, value in read_partitions(settings, settings.feeds_topic, None, timeout_s):
        latest[key] = value
    return latest


def seed_feeds(settings: Settings, local: Iterable[ResolvedFeed]) -> int:
    """Publish the feeds of ``local`` whose id the feeds topic never held (neither a value nor
    a tombstone); returns how many. Feeds the topic knows keep the topic's value: it is the
    registry, and a removal made elsewhere wins over a stale local copy. The packaged default
    feeds stand in only for an empty registry: they are published only while the topic holds
    no record at all."""
    ensure_feed_topics(settings)
    known = read_feed_keys(settings)
    fresh = [
        r.spec
        for r in local
        if r.spec.id not in known and (r.origin != FeedOrigin.DEFAULT or not known)
    ]
    if fresh:
        writer = FeedTopicWriter(settings)
        try:
            writer.put(fresh)
        finally:
            writer.close()
    return len(fresh)


def remove_from_topic(settings: Settings, feed_id: str) -> FeedSpec | None:
    """Remove a feed the feeds topic holds (whatever registry or file it came from); returns
    it, or None when the topic does not hold it (nothing is written then)."""
    value = read_feed_keys(settings).get(feed_id)
    if value is None:
        return None
    writer = FeedTopicWriter(settings)
    try:
        writer.remove(feed_id)
    finally:
        writer.close()
    return decode_spec(value)


def open_registry(settings: Settings) -> FeedRegistry:
    """The local registry of ``settings.data_dir``, writing every change to the feeds topic
    too when a Kafka bootstrap is configured (the caller closes it)."""
    sink = FeedTopicWriter(settings) if settings.kafka_bootstrap else None
    return FeedRegistry(state_path(settings.data_dir), sink=sink)
