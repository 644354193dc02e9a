"""Feeds sharded over producers: Kafka's consumer group over the feeds topic decides who polls
what.

Every producer joins one consumer group (:attr:`core.settings.Settings.producer_group`) over
the compacted feeds topic (:mod:`producers.feed_topic`). Kafka assigns each partition, and with
it every feed whose id maps to it, to exactly one live member, and moves partitions when a
member joins, leaves (a clean stop hands them over at once) or dies (after the group's session
timeout, ``NEWSSTREAM_KAFKA_SESSION_TIMEOUT_MS``, plus the rebalance). No lock and no election
of our own.

On assignment of partitions, a producer (1) reads the same partitions of the feed-state topic
from start to end and adopts the state the previous owner left (:mod:`producers.feed_state_topic`),
(2) reads its feeds partitions from the beginning, and (3) hands a partition's feeds to the
scheduler once that partition's end is reached (the compacted log is the registry: a feed added
then removed earlier in the log is never polled). Later records (``feeds add/remove``) apply
at once. On revocation it stops starting polls of those feeds, waits for the polls in flight
and for the acknowledgement of their state records, then lets the partitions go.

:class:`ShardView` is the pure part (assignment and records in, the feeds to poll out);
:class:`FeedShard` drives it from the group consumer. Offsets are never committed: every
assignment reads its partitions from the beginning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from core.errors import InvalidMessage, TransientError
from core.kafka import LIBRDKAFKA_LOGGER
from core.settings import Settings
from producers.feed_state_topic import StateJournal, load_states
from producers.feed_topic import decode_spec
from producers.feeds import FeedSpec
from producers.scheduler import Scheduler
from producers.state import ProducerState

log = logging.getLogger(__name__)

#: How long a revocation waits for the polls in flight of the feeds it takes away.
REVOKE_WAIT_S = 20.0


class ShardView:
    """Which feeds this producer owns: the feeds of its assigned partitions whose log was read
    to the end.

    Goes in: assignments and revocations of partition numbers, records ``(partition, feed id,
    value)`` in log order (None: removed) and end-of-partition marks. Comes out:
    :meth:`feeds`, sorted by id. A record whose value is not a feed is skipped (logged).
    """

    def __init__(self) -> None:
        self._feeds: dict[int, dict[str, FeedSpec]] = {}
        self._loaded: set[int] = set()

    @property
    def partitions(self) -> set[int]:
        return set(self._feeds)

    def assign(self, partitions: list[int]) -> None:
        """Start reading ``partitions`` (their feeds count once their end is marked)."""
        for partition in partitions:
            self._feeds[partition] = {}
            self._loaded.discard(partition)

    def revoke(self, partitions: list[int]) -> set[str]:
        """Forget ``partitions``; returns the ids of the feeds that were polled from them."""
        gone: set[str] = set()
        for partition in partitions:
            feeds = self._feeds.pop(partition, {})
            if partition in self._loaded:
                gone.update(feeds)
            self._loaded.discard(partition)
        return gone

    def apply(self, partition: int, feed_id: str, value: bytes | None) -> bool:
        """Apply one record; returns True when the feeds to poll changed."""
        feeds = self._feeds.get(partition)
        if feeds is None:  # a record of a partition no longer ours (in flight at revocation)
            return False
        if value is None:
            removed = feeds.pop(feed_id, None)
            return removed is not None and partition in self._loaded
        try:
            spec = decode_spec(value)
        except InvalidMessage as exc:
            log.warning("feeds topic [%d] %s: skipped (%s)", partition, feed_id, exc)
            return False
        if spec.id != feed_id:
            log.warning("feeds topic [%d] %s: key is not the URL's id, skipped", partition, feed_id)
            return False
        changed = feeds.get(feed_id) != spec
        feeds[feed_id] = spec
        return changed and partition in self._loaded

    def mark_loaded(self, partition: int) -> bool:
        """The partition's end was reached; returns True when that made feeds pollable."""
        if partition not in self._feeds or partition in self._loaded:
            return False
        self._loaded.add(partition)
        return bool(self._feeds[partition])

    def feeds(self) -> list[FeedSpec]:
        """The feeds to poll now."""
        owned = [spec for p in self._loaded for spec in self._feeds[p].values()]
        return sorted(owned, key=lambda spec: spec.id)


def group_config(settings: Settings) -> dict[str, object]:
    """librdkafka settings of a producer's membership in the feeds group: cooperative-sticky
    (a rebalance moves only the partitions that change owner; the others keep polling), never
    committing, end-of-partition events on (the end of the registry's log)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap or "",
        "group.id": settings.producer_group,
        "client.id": "newsstream-producer-group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": settings.kafka_max_poll_interval_ms,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": max(500, settings.kafka_session_timeout_ms // 5),
        "reconnect.backoff.max.ms": 5_000,
        "logger": LIBRDKAFKA_LOGGER,
    }


class FeedShard:
    """A producer's membership in the feeds group, feeding its scheduler (see the module
    docstring). :meth:`run` blocks until ``stop`` is set, then leaves the group cleanly."""

    def __init__(
        self,
        settings: Settings,
        scheduler: Scheduler,
        state: ProducerState,
        journal: StateJournal,
        on_change: Callable[[list[FeedSpec]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._scheduler = scheduler
        self._state = state
        self._journal = journal
        self._view = ShardView()
        self._on_change = on_change
        self._topic = settings.feeds_topic
        self._consumer = Consumer(group_config(settings))

    @property
    def view(self) -> ShardView:
        return self._view

    def _publish_feeds(self) -> None:
        feeds = self._view.feeds()
        self._scheduler.set_feeds(feeds)
        if self._on_change is not None:
            self._on_change(feeds)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        if numbers:
            adopted = load_states(self._settings, self._state, numbers)
            log.info(
                "assigned feeds partitions %s (state of %d feeds taken over)", numbers, adopted
            )
        self._view.assign(numbers)
        consumer.incremental_assign(
            [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in numbers]
        )

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        gone = self._view.revoke(numbers)
        self._publish_feeds()
        if not self._scheduler.wait_idle(gone, REVOKE_WAIT_S):
            log.warning("polls of revoked feeds still running after %.0f s", REVOKE_WAIT_S)
        try:
            self._journal.flush()
        except TransientError as exc:
            log.warning("feed state not acknowledged before handing over: %s", exc)
        log.info("revoked feeds partitions %s (%d feeds handed over)", numbers, len(gone))

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another member may own them already: stop at once, nothing to hand over.
        numbers = sorted(tp.partition for tp in partitions)
        gone = self._view.revoke(numbers)
        self._publish_feeds()
        log.warning("lost feeds partitions %s (%d feeds)", numbers, len(gone))

    def _handle(self, message: Message) -> bool:
        """Apply one message; returns True when the feeds to poll changed."""
        error = message.error()
        partition = message.partition() or 0
        if error is None:
            key = message.key()
            return key is not None and self._view.apply(
                partition, key.decode("utf-8", "replace"), message.value()
            )
        if error.code() == KafkaError._PARTITION_EOF:
            return self._view.mark_loaded(partition)
        if error.fatal():
            raise TransientError(f"feeds group: {error}")
        log.warning("feeds group: %s", error)
        return False

    def run(self, stop: threading.Event) -> None:
        """Join the group and follow the feeds topic until ``stop`` is set."""
        self._consumer.subscribe(
            [self._topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        try:
            while not stop.is_set():
                # The scheduler gets the feeds once per batch of records, not per record (a
                # registry of thousands of feeds arrives in one go).
                changed = False
                for message in self._consumer.consume(num_messages=1000, timeout=0.2):
                    changed = self._handle(message) or changed
                if changed:
                    self._publish_feeds()
        finally:
            # Leaving the group revokes every partition through _revoked: the next owner gets
            # them at once, with the state of the last polls acknowledged.
            self._consumer.close()
