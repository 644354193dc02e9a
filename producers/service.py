"""The producer process: builds the fetcher, publisher, state and scheduler from settings.

``run_producer`` polls until SIGTERM/SIGINT; with ``once`` it polls every feed one time and
returns the reports. Kafka's delivery reports are awaited before any feed state advances.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from core.kafka import ensure_topics
from core.settings import Settings
from producers.feeds import FeedSpec, load_feeds
from producers.fetcher import Fetcher
from producers.publisher import Publisher
from producers.scheduler import PollReport, Scheduler
from producers.state import ProducerState

log = logging.getLogger(__name__)


def build_scheduler(
    settings: Settings, feeds: list[FeedSpec] | None = None
) -> tuple[Scheduler, Publisher, Fetcher, ProducerState]:
    """The scheduler and the parts it owns (the caller closes them)."""
    ensure_topics(settings)
    fetcher = Fetcher(
        deadline_s=settings.fetch_timeout_s,
        max_bytes=settings.fetch_max_bytes,
        allow_networks=settings.fetch_allow_networks,
        user_agent=settings.fetch_user_agent,
    )
    publisher = Publisher(settings)
    state = ProducerState(settings.data_dir / "producer.sqlite3")
    scheduler = Scheduler(
        feeds if feeds is not None else load_feeds(settings.feeds_file),
        fetcher=fetcher,
        publisher=publisher,
        state=state,
        poll_interval_s=settings.poll_interval_s,
        max_entries=settings.max_entries_per_feed,
    )
    return scheduler, publisher, fetcher, state


def run_producer(settings: Settings, *, once: bool = False) -> list[PollReport]:
    """Poll feeds (once, or until a stop signal); returns the reports of a single pass."""
    scheduler, publisher, fetcher, state = build_scheduler(settings)
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
        scheduler.run(stop)
        return []
    finally:
        left = publisher.close()
        if left:
            log.warning(
                "%d messages were not delivered before shutdown; they will be "
                "fetched and published again on the next start",
                left,
            )
        fetcher.close()
        state.close()
