"""The poll scheduler: which feed to fetch when, and one poll from fetch to committed state.

One poll: conditional fetch (holding one of the host's fetch slots) -> parse (in the sandboxed
parser pool) -> drop entries older than the feed's retention window (counted in
``newsstream_entries_skipped_expired_total``: a backfill must not index what the next retention
sweep deletes) -> drop entries already delivered with the same content -> publish -> wait for
delivery reports -> commit the feed's new validators, seen entries and next poll time. A 304
costs no parse and no publish. If any entry was not acknowledged, the validators are not
advanced (the next poll fetches the whole feed again); acknowledged entries are still recorded
as seen.

When a publish comes back incomplete (the broker is away), :meth:`Scheduler.run` stops starting
polls until the broker answers again and the local queue has drained: a bounded queue, no
fetch storm, nothing dropped. When to poll is :class:`producers.schedule.SchedulePolicy`'s call.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from core.errors import FeedError, TransientError
from core.ids import entry_fingerprint
from core.metrics import (
    ENTRIES_SKIPPED_EXPIRED,
    ENTRIES_SKIPPED_SEEN,
    FEED_FETCH_SECONDS,
    FEED_FETCHES,
    FEEDS_BROKEN,
    FEEDS_POLLED,
    FetchResult,
)
from producers.feeds import FeedSpec
from producers.fetcher import Fetcher, RateLimited
from producers.parser import ParsedFeed, parse_feed
from producers.publisher import Publisher
from producers.retention import expired, window_days
from producers.schedule import HostLimiter, SchedulePolicy, host_of
from producers.state import FeedState, ProducerState

log = logging.getLogger(__name__)

#: Result of a poll whose entries were not all acknowledged by Kafka.
PUBLISH_INCOMPLETE = "publish_incomplete"
#: How soon a feed whose publish was incomplete is tried again (once Kafka is back).
RETRY_INCOMPLETE_S = 30.0
FEED_REFRESH_S = 30.0
#: Shortest time between two rounds of starting due polls (each round scans the feed list).
ROUND_GAP_S = 0.01


class Parser(Protocol):
    """Anything that parses a body like :func:`producers.parser.parse_feed` does."""

    def parse(self, body: bytes, **kwargs: Any) -> ParsedFeed: ...


class InProcessParser:
    """Parses in the calling thread, without a sandbox (tests and trusted inputs only)."""

    def parse(self, body: bytes, **kwargs: Any) -> ParsedFeed:
        return parse_feed(body, **kwargs)

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class PollReport:
    """What one poll of one feed did."""

    feed_id: str
    url: str
    result: str
    entries: int = 0
    published: int = 0
    expired: int = 0
    error: str | None = None
    next_poll_at: float = 0.0


class Scheduler:
    """Polls a set of feeds on their schedules and publishes new entries.

    ``feed_source``, when given, is called every ``FEED_REFRESH_S`` while :meth:`run` runs, so
    feeds added to or removed from the registry are picked up without a restart. The scheduler
    owns ``parser`` and closes it in :meth:`close`.
    """

    def __init__(
        self,
        feeds: Sequence[FeedSpec],
        *,
        fetcher: Fetcher,
        publisher: Publisher,
        state: ProducerState,
        poll_interval_s: float = 300.0,
        max_entries: int = 500,
        concurrency: int = 8,
        policy: SchedulePolicy | None = None,
        per_host: int = 2,
        parser: Parser | None = None,
        publish_timeout_s: float = 60.0,
        feed_source: Callable[[], list[FeedSpec]] | None = None,
        retention_days: int = 0,
    ) -> None:
        self._feeds = list(feeds)
        self._fetcher = fetcher
        self._publisher = publisher
        self._state = state
        self._policy = policy or SchedulePolicy(
            default_s=poll_interval_s, min_s=min(120.0, poll_interval_s)
        )
        self._max_entries = max_entries
        self._concurrency = concurrency
        self._hosts = HostLimiter(per_host)
        self._parser: Parser = parser or InProcessParser()
        self._publish_timeout_s = publish_timeout_s
        self._feed_source = feed_source
        self._retention_days = retention_days
        self._broken: set[str] = set()
        self._broken_lock = threading.Lock()
        self._kafka_blocked = threading.Event()
        # Set when a poll ends, so run() starts the next due feed at once instead of on its
        # next tick (with fast polls, a fixed tick capped polls at concurrency per tick).
        self._poll_ended = threading.Event()
        self._active: set[str] = set()
        self._idle = threading.Condition()

    @property
    def feeds(self) -> list[FeedSpec]:
        return list(self._feeds)

    def set_feeds(self, feeds: Sequence[FeedSpec]) -> None:
        """Replace the feeds to poll (thread-safe): :meth:`run` polls an added feed when its
        stored state says it is due and starts no new poll of a removed one."""
        self._feeds = list(feeds)

    def wait_idle(self, feed_ids: set[str], timeout_s: float) -> bool:
        """Wait until no poll of ``feed_ids`` is running (so their state is committed); returns
        False when ``timeout_s`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: not (self._active & feed_ids), timeout_s)

    def _tracked_poll(self, feed: FeedSpec) -> PollReport:
        # Marked active by _submit_due, before the pool starts it: wait_idle sees it queued.
        try:
            return self.poll_feed(feed)
        finally:
            with self._idle:
                self._active.discard(feed.id)
                self._idle.notify_all()

    @property
    def parser(self) -> Parser:
        """The parser the scheduler parses with (the sandboxed pool in production)."""
        return self._parser

    @property
    def kafka_blocked(self) -> bool:
        """True while a publish came back incomplete and the broker has not been seen back."""
        return self._kafka_blocked.is_set()

    def close(self) -> None:
        """Release what the scheduler owns (the parser pool)."""
        close = getattr(self._parser, "close", None)
        if callable(close):
            close()

    def poll_feed(self, feed: FeedSpec) -> PollReport:
        """Poll one feed now (see the module docstring for the order of effects)."""
        state = self._state.feed(feed.id, feed.url)
        now = time.time()
        started = time.monotonic()
        try:
            with self._hosts.slot(host_of(feed.url)):
                response = self._fetcher.fetch(
                    feed.url, etag=state.etag, last_modified=state.last_modified
                )
        except FeedError as exc:
            return self._failed(feed, state, exc, now)
        finally:
            FEED_FETCH_SECONDS.observe(time.monotonic() - started)
        if response.not_modified:
            FEED_FETCHES.labels(FetchResult.NOT_MODIFIED).inc()
            interval = self._policy.after_not_modified(
                previous_s=state.interval_s, headers=response.headers, now=now
            )
            new_state = self._succeeded(state, now, FetchResult.NOT_MODIFIED, state.items, interval)
            self._state.commit_poll(new_state, [])
            return PollReport(
                feed.id, feed.url, FetchResult.NOT_MODIFIED, next_poll_at=new_state.next_poll_at
            )
        try:
            parsed = self._parser.parse(
                response.body,
                feed_url=feed.url,
                feed_id=feed.id,
                headers=response.headers,
                max_entries=self._max_entries,
                fetched_at=int(now),
            )
        except FeedError as exc:
            return self._failed(feed, state, exc, now)
        return self._publish(feed, state, parsed, response.headers, now)

    def _publish(
        self,
        feed: FeedSpec,
        state: FeedState,
        parsed: ParsedFeed,
        headers: dict[str, str],
        now: float,
    ) -> PollReport:
        days = window_days(feed.retention_days, self._retention_days)
        current = [a for a in parsed.articles if not expired(a.published_at, int(now), now, days)]
        skipped = len(parsed.articles) - len(current)
        if skipped:
            ENTRIES_SKIPPED_EXPIRED.inc(skipped)
            log.info("feed %s: %d entries older than its %d-day retention", feed.url, skipped, days)
        hashes = {a.id: entry_fingerprint(a.title, a.summary, a.content) for a in current}
        fresh_ids = self._state.unseen(hashes.items())
        # Several entries of one feed can share an id (same link twice): publish each id once.
        unique = list({a.id: a for a in current if a.id in fresh_ids}.values())
        ENTRIES_SKIPPED_SEEN.inc(len(hashes) - len(fresh_ids))
        try:
            delivered = (
                self._publisher.publish(unique, self._publish_timeout_s) if unique else set()
            )
        except TransientError as exc:
            delivered = set()
            log.warning("feed %s: Kafka unavailable (%s); will retry", feed.url, exc)
        complete = delivered >= {a.id for a in unique}
        interval = self._policy.after_success(
            entry_times=[a.published_at for a in parsed.articles],
            ttl_minutes=parsed.ttl_minutes,
            headers=headers,
            now=now,
        )
        new_state = self._succeeded(state, now, FetchResult.OK, len(parsed.articles), interval)
        if complete:
            new_state = replace(
                new_state,
                etag=headers.get("etag") or None,
                last_modified=headers.get("last-modified") or None,
            )
        else:
            # Keep the old validators so the next poll sees these entries again, and hold
            # further fetches until the broker is back.
            self._kafka_blocked.set()
            new_state = replace(
                new_state,
                next_poll_at=now + min(interval, RETRY_INCOMPLETE_S),
                last_result=PUBLISH_INCOMPLETE,
            )
        self._state.commit_poll(new_state, [(aid, hashes[aid]) for aid in delivered])
        FEED_FETCHES.labels(FetchResult.OK).inc()
        return PollReport(
            feed.id,
            feed.url,
            FetchResult.OK if complete else PUBLISH_INCOMPLETE,
            entries=len(parsed.articles),
            published=len(delivered),
            expired=skipped,
            next_poll_at=new_state.next_poll_at,
        )

    def _succeeded(
        self, state: FeedState, now: float, result: str, items: int, interval: float
    ) -> FeedState:
        FEEDS_POLLED.inc()
        with self._broken_lock:
            self._broken.discard(state.feed_id)
            FEEDS_BROKEN.set(len(self._broken))
        return replace(
            state,
            last_fetch_at=now,
            last_result=str(result),
            last_error=None,
            items=items,
            error_streak=0,
            next_poll_at=now + interval,
            interval_s=interval,
        )

    def _failed(self, feed: FeedSpec, state: FeedState, exc: FeedError, now: float) -> PollReport:
        FEEDS_POLLED.inc()
        FEED_FETCHES.labels(exc.kind).inc()
        streak = state.error_streak + 1
        retry_after = exc.retry_after_s if isinstance(exc, RateLimited) else None
        delay = self._policy.after_error(streak, retry_after)
        new_state = replace(
            state,
            last_fetch_at=now,
            last_result=str(exc.kind),
            last_error=str(exc)[:500],
            error_streak=streak,
            next_poll_at=now + delay,
        )
        self._state.commit_poll(new_state, [])
        with self._broken_lock:
            self._broken.add(feed.id)
            FEEDS_BROKEN.set(len(self._broken))
        log.warning("feed %s failed (%s), retry in %.0f s", feed.url, exc, delay)
        return PollReport(
            feed.id, feed.url, str(exc.kind), error=str(exc), next_poll_at=new_state.next_poll_at
        )

    def poll_all(self) -> list[PollReport]:
        """Poll every feed once, now, concurrently; returns one report per feed, in order."""
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            return list(pool.map(self.poll_feed, self._feeds))

    def _kafka_back(self) -> bool:
        """True once the broker answers and nothing is left waiting in the local queue."""
        if self._publisher.pending() == 0 and self._publisher.reachable(2.0):
            self._kafka_blocked.clear()
            log.info("Kafka is back: polling resumes")
            return True
        return False

    def run(self, stop: threading.Event) -> None:
        """Poll feeds when they are due until ``stop`` is set.

        The due feeds come from a heap of ``(due time, feed id)``: a round costs the polls it
        starts, not the number of feeds (10,000 overdue feeds were sorted on every round
        before). The heap is rebuilt when the feed list changes.
        """
        due = {s.feed_id: s.next_poll_at for s in self._state.all_feeds()}
        running: dict[str, tuple[str, Future[PollReport]]] = {}
        refreshed = time.monotonic()
        polled = self._feeds
        by_id = {f.id: f for f in polled}
        queue = _due_queue(by_id, due, running)
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            while not stop.is_set():
                if self._feeds is not polled:
                    # Feeds handed to this scheduler while it runs (another producer's, with
                    # the state it left): due when their stored state says so.
                    polled = self._feeds
                    fresh = {f.id: f for f in polled}
                    for feed_id, feed in fresh.items():
                        if feed_id not in by_id:
                            due[feed_id] = self._state.feed(feed_id, feed.url).next_poll_at
                    by_id = fresh
                    queue = _due_queue(by_id, due, running)
                for feed_id in [k for k, (_h, f) in running.items() if f.done()]:
                    _host, future = running.pop(feed_id)
                    error = future.exception()
                    if error is not None:
                        log.error("poll crashed", exc_info=error)
                        due[feed_id] = time.time() + self._policy.min_s
                    else:
                        due[feed_id] = future.result().next_poll_at
                    if feed_id in by_id:
                        heapq.heappush(queue, (due[feed_id], feed_id))
                if self._feed_source and time.monotonic() - refreshed > FEED_REFRESH_S:
                    self._feeds = self._feed_source()
                    refreshed = time.monotonic()
                if self._kafka_blocked.is_set() and not self._kafka_back():
                    stop.wait(2.0)
                    continue
                self._submit_due(pool, running, due, queue, by_id)
                self._poll_ended.wait(0.2)
                self._poll_ended.clear()
                # A few polls end together: start their successors in one round.
                stop.wait(ROUND_GAP_S)
            for feed_id, (_host, future) in running.items():
                if future.cancel():  # never started: not a poll in flight for wait_idle
                    with self._idle:
                        self._active.discard(feed_id)
                        self._idle.notify_all()

    def _submit_due(
        self,
        pool: ThreadPoolExecutor,
        running: dict[str, tuple[str, Future[PollReport]]],
        due: dict[str, float],
        queue: list[tuple[float, str]],
        by_id: dict[str, FeedSpec],
    ) -> None:
        now = time.time()
        per_host = Counter(host for host, _f in running.values())
        held: list[tuple[float, str]] = []  # due, but their host has no free fetch slot
        while queue and len(running) < self._concurrency and queue[0][0] <= now:
            when, feed_id = heapq.heappop(queue)
            feed = by_id.get(feed_id)
            if feed is None or feed_id in running or due.get(feed_id, 0.0) != when:
                continue  # removed, running, or an older entry of a feed due again later
            host = host_of(feed.url)
            if per_host[host] >= self._hosts.per_host:
                held.append((when, feed_id))
                continue
            per_host[host] += 1
            with self._idle:
                self._active.add(feed.id)
            future = pool.submit(self._tracked_poll, feed)
            future.add_done_callback(lambda _f: self._poll_ended.set())
            running[feed.id] = (host, future)
        for item in held:
            heapq.heappush(queue, item)


def _due_queue(
    by_id: dict[str, FeedSpec],
    due: dict[str, float],
    running: dict[str, tuple[str, Future[PollReport]]],
) -> list[tuple[float, str]]:
    """The heap of ``(due time, feed id)`` of the feeds not polling now (never polled: 0)."""
    queue = [(due.setdefault(i, 0.0), i) for i in by_id if i not in running]
    heapq.heapify(queue)
    return queue
