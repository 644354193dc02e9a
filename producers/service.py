"""The producer process: builds the fetcher, publisher, state and scheduler from settings.

``run_producer`` polls until SIGTERM/SIGINT the feeds Kafka assigns this producer in the
producers' consumer group (:mod:`producers.shard`; one producer alone gets every feed); with
``once`` it polls every local feed (the config file's merged with the registry's, see
:mod:`producers.registry`) one time and returns the reports (:func:`poll_failed` tells which of
them failed). Kafka's delivery reports are awaited before any feed state advances.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from core.kafka import ensure_topics
from core.settings import Settings
from core.status import StatusPublisher
from producers.feed_state_topic import StateJournal
from producers.feed_topic import seed_feeds
from producers.feeds import FeedSpec
from producers.fetcher import Fetcher
from producers.publisher import Publisher
from producers.registry import FeedRegistry, ResolvedFeed, resolve_feeds, state_path
from producers.sandbox import ParserPool
from producers.schedule import SchedulePolicy
from producers.scheduler import PUBLISH_INCOMPLETE, PollReport, Scheduler
from producers.shard import FeedShard
from producers.state import ProducerState

log = logging.getLogger(__name__)


def build_scheduler(
    settings: Settings, feeds: list[FeedSpec] | None = None
) -> tuple[Scheduler, Publisher, Fetcher, ProducerState]:
    """The scheduler and the parts it owns (the caller closes them, and ``scheduler.close()``
    stops its parser processes).

    Without ``feeds``, the feeds are the config file's merged with the registry's
    (:func:`producers.registry.resolve_feeds`), and the scheduler re-reads them while it runs.
    """
    ensure_topics(settings)
    fetcher = Fetcher(
        deadline_s=settings.fetch_timeout_s,
        max_bytes=settings.fetch_max_bytes,
        allow_networks=settings.fetch_allow_networks,
        user_agent=settings.fetch_user_agent,
        pool_size=max(16, settings.poll_concurrency * 2),
    )
    publisher = Publisher(settings)
    path = state_path(settings.data_dir)
    state = ProducerState(path)
    feed_source = None
    if feeds is None:
        registry = FeedRegistry(path)

        def feed_source() -> list[FeedSpec]:
            return [r.spec for r in resolve_feeds(settings.feeds_file, registry)]

        feeds = feed_source()
    policy = SchedulePolicy(
        default_s=settings.poll_interval_s,
        min_s=min(settings.poll_interval_min_s, settings.poll_interval_max_s),
        max_s=settings.poll_interval_max_s,
        backoff_cap_s=settings.poll_backoff_max_s,
    )
    parser = ParserPool(
        settings.parse_workers,
        cpu_s=settings.parse_cpu_s,
        memory_mb=settings.parse_memory_mb,
        timeout_s=settings.parse_timeout_s,
    )
    scheduler = Scheduler(
        feeds,
        fetcher=fetcher,
        publisher=publisher,
        state=state,
        poll_interval_s=settings.poll_interval_s,
        max_entries=settings.max_entries_per_feed,
        concurrency=settings.poll_concurrency,
        policy=policy,
        per_host=settings.fetch_per_host_limit,
        parser=parser,
        publish_timeout_s=settings.publish_timeout_s,
        feed_source=feed_source,
        retention_days=settings.retention_days,
    )
    return scheduler, publisher, fetcher, state


def poll_failed(report: PollReport) -> bool:
    """True when a poll did not bring its feed's entries to Kafka: the fetch or the parse
    failed, or the broker did not acknowledge every new entry (a 304 is a success)."""
    return report.error is not None or report.result == PUBLISH_INCOMPLETE


def _run_sharded(
    settings: Settings, scheduler: Scheduler, state: ProducerState, stop: threading.Event
) -> None:
    """Poll the feeds this producer owns in the group until ``stop`` (see :mod:`producers.shard`)."""
    journal = StateJournal(settings, state)
    state.on_commit(journal.record)
    shard = FeedShard(settings, scheduler, state, journal)
    # Feed health for the API's /feeds and the dashboard (they meet through Kafka): the feeds
    # this producer owns now; their previous owner published the rest.
    status = StatusPublisher(
        settings, "feed", lambda: _feed_snapshot(state, {f.id for f in scheduler.feeds})
    ).start()
    poller = threading.Thread(target=scheduler.run, args=(stop,), name="poller", daemon=True)
    poller.start()
    try:
        shard.run(stop)
    finally:
        stop.set()
        poller.join(30)
        status.close()
        state.on_commit(None)
        journal.close()


def _feed_snapshot(
    state: ProducerState, owned: set[str] | None = None
) -> dict[str, dict[str, object]]:
    """Status of every polled feed (of ``owned`` when given), keyed by feed id (advisory,
    published every few seconds)."""
    return {
        feed.feed_id: {
            "feed_id": feed.feed_id,
            "url": feed.url,
            "last_fetch_at": feed.last_fetch_at,
            "last_result": feed.last_result,
            "last_error": feed.last_error,
            "items": feed.items,
            "error_streak": feed.error_streak,
            "next_poll_at": feed.next_poll_at,
        }
        for feed in state.all_feeds()
        if owned is None or feed.feed_id in owned
    }


def _local_feeds(settings: Settings) -> list[ResolvedFeed]:
    """The feeds of this machine's registry and feeds file (or the packaged list)."""
    registry = FeedRegistry(state_path(settings.data_dir))
    try:
        return resolve_feeds(settings.feeds_file, registry)
    finally:
        registry.close()


def run_producer(settings: Settings, *, once: bool = False) -> list[PollReport]:
    """Poll feeds (once, or until a stop signal); returns the reports of a single pass.

    With ``once``, every feed of the local registry and feeds file is polled here. Otherwise
    the producer seeds the feeds topic with the local feeds it never held
    (:func:`producers.feed_topic.seed_feeds`) and polls the feeds Kafka assigns it in the
    producers' group (:mod:`producers.shard`), replicating each poll's state to the feed-state
    topic, until SIGTERM or SIGINT.
    """
    if once:
        scheduler, publisher, fetcher, state = build_scheduler(settings)
    else:
        seeded = seed_feeds(settings, _local_feeds(settings))
        if seeded:
            log.info("published %d local feeds to %s", seeded, settings.feeds_topic)
        scheduler, publisher, fetcher, state = build_scheduler(settings, feeds=[])
    try:
        if once:
            reports = scheduler.poll_all()
            for report in reports:
                if report.error:
                    log.warning("feed %s: %s", report.url, report.error)
            return reports
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping the producer", signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        _run_sharded(settings, scheduler, state, stop)
        return []
    finally:
        left = publisher.close()
        if left:
            log.warning(
                "%d messages were not delivered before shutdown; they will be "
                "fetched and published again on the next start",
                left,
            )
        scheduler.close()
        fetcher.close()
        state.close()
