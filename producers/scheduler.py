"""The poll scheduler: which feed to fetch when, and one poll from fetch to committed state.

One poll: conditional fetch -> parse -> drop entries already delivered with the same content
-> publish -> wait for delivery reports -> commit the feed's new validators and seen entries.
If any entry was not acknowledged, the validators are not advanced (the next poll fetches the
whole feed again); acknowledged entries are still recorded as seen.

Schedule: a feed is polled every ``poll_interval_s`` (or its RSS ``ttl`` when longer); after a
failure it backs off exponentially with jitter, capped at ``MAX_BACKOFF_S``, and is retried for
ever (a broken feed is reported, never silently abandoned). ``Retry-After`` on 429/503 is
honoured for that feed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from core.errors import FeedError, TransientError
from core.ids import content_hash
from core.metrics import FEED_FETCH_SECONDS, FEED_FETCHES, FEEDS_BROKEN, FEEDS_POLLED, FetchResult
from producers.feeds import FeedSpec
from producers.fetcher import Fetcher, RateLimited
from producers.parser import parse_feed
from producers.publisher import Publisher
from producers.state import FeedState, ProducerState

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 24 * 3600.0
MIN_INTERVAL_S = 1.0


@dataclass(frozen=True)
class PollReport:
    """What one poll of one feed did."""

    feed_id: str
    url: str
    result: str
    entries: int = 0
    published: int = 0
    error: str | None = None


def backoff_s(streak: int, base_s: float, cap_s: float = MAX_BACKOFF_S) -> float:
    """Delay after ``streak`` consecutive failures: exponential, full jitter, capped."""
    ceiling = min(cap_s, base_s * (2 ** min(streak, 30)))
    return random.uniform(ceiling / 2, ceiling)


class Scheduler:
    """Polls a set of feeds on their schedules and publishes new entries."""

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
    ) -> None:
        self._feeds = list(feeds)
        self._fetcher = fetcher
        self._publisher = publisher
        self._state = state
        self._interval = max(MIN_INTERVAL_S, poll_interval_s)
        self._max_entries = max_entries
        self._concurrency = concurrency
        self._broken: set[str] = set()
        self._broken_lock = threading.Lock()

    def poll_feed(self, feed: FeedSpec) -> PollReport:
        """Poll one feed now (see the module docstring for the order of effects)."""
        state = self._state.feed(feed.id, feed.url)
        now = time.time()
        started = time.monotonic()
        try:
            response = self._fetcher.fetch(
                feed.url, etag=state.etag, last_modified=state.last_modified
            )
        except FeedError as exc:
            return self._failed(feed, state, exc, now)
        finally:
            FEED_FETCH_SECONDS.observe(time.monotonic() - started)
        if response.not_modified:
            FEED_FETCHES.labels(FetchResult.NOT_MODIFIED).inc()
            self._state.commit_poll(
                self._succeeded(state, now, FetchResult.NOT_MODIFIED, state.items), []
            )
            return PollReport(feed.id, feed.url, FetchResult.NOT_MODIFIED)
        try:
            parsed = parse_feed(
                response.body,
                feed_url=feed.url,
                feed_id=feed.id,
                headers=response.headers,
                max_entries=self._max_entries,
                fetched_at=int(now),
            )
        except FeedError as exc:
            return self._failed(feed, state, exc, now)
        hashes = {
            a.id: content_hash(f"{a.title}\n{a.summary}\n{a.content}") for a in parsed.articles
        }
        fresh_ids = self._state.unseen(hashes.items())
        fresh = [a for a in parsed.articles if a.id in fresh_ids]
        # Several entries of one feed can share an id (same link twice): publish each id once.
        unique = list({a.id: a for a in fresh}.values())
        try:
            delivered = self._publisher.publish(unique) if unique else set()
        except TransientError as exc:
            delivered = set()
            log.warning("feed %s: Kafka unavailable (%s); will retry", feed.url, exc)
        complete = delivered >= {a.id for a in unique}
        new_state = self._succeeded(state, now, FetchResult.OK, len(parsed.articles))
        if complete:
            new_state = replace(
                new_state,
                etag=response.headers.get("etag") or None,
                last_modified=response.headers.get("last-modified") or None,
            )
            if parsed.ttl_minutes:
                new_state = replace(
                    new_state, next_poll_at=now + max(self._interval, parsed.ttl_minutes * 60.0)
                )
        else:
            # Keep the old validators so the next poll sees these entries again.
            new_state = replace(new_state, next_poll_at=now + min(self._interval, 30.0))
        self._state.commit_poll(new_state, [(aid, hashes[aid]) for aid in delivered])
        FEED_FETCHES.labels(FetchResult.OK).inc()
        return PollReport(
            feed.id,
            feed.url,
            FetchResult.OK if complete else "publish_incomplete",
            entries=len(parsed.articles),
            published=len(delivered),
        )

    def _succeeded(self, state: FeedState, now: float, result: str, items: int) -> FeedState:
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
            next_poll_at=now + self._interval,
        )

    def _failed(self, feed: FeedSpec, state: FeedState, exc: FeedError, now: float) -> PollReport:
        FEEDS_POLLED.inc()
        FEED_FETCHES.labels(exc.kind).inc()
        streak = state.error_streak + 1
        delay = backoff_s(streak, self._interval / 4)
        if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
            delay = min(MAX_BACKOFF_S, max(delay, exc.retry_after_s))
        self._state.commit_poll(
            replace(
                state,
                last_fetch_at=now,
                last_result=str(exc.kind),
                last_error=str(exc)[:500],
                error_streak=streak,
                next_poll_at=now + delay,
            ),
            [],
        )
        with self._broken_lock:
            self._broken.add(feed.id)
            FEEDS_BROKEN.set(len(self._broken))
        log.warning("feed %s failed (%s), retry in %.0f s", feed.url, exc, delay)
        return PollReport(feed.id, feed.url, str(exc.kind), error=str(exc))

    def poll_all(self) -> list[PollReport]:
        """Poll every feed once, now, concurrently; returns one report per feed."""
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            return list(pool.map(self.poll_feed, self._feeds))

    def run(self, stop: threading.Event) -> None:
        """Poll feeds when they are due until ``stop`` is set."""
        running: dict[str, Future[PollReport]] = {}
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            while not stop.is_set():
                now = time.time()
                for feed_id in [k for k, f in running.items() if f.done()]:
                    future = running.pop(feed_id)
                    if future.exception() is not None:
                        log.error("poll crashed", exc_info=future.exception())
                for feed in self._feeds:
                    if feed.id in running or len(running) >= self._concurrency:
                        continue
                    if self._state.feed(feed.id, feed.url).next_poll_at <= now:
                        running[feed.id] = pool.submit(self.poll_feed, feed)
                stop.wait(0.5)
            for future in running.values():
                future.cancel()
