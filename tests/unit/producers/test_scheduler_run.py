"""The scheduler's loop: every feed of its list is polled when due, the per-host limit holds,
and a feed taken off the list (its partition went to another producer) is not polled again."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from producers.feeds import FeedSpec
from producers.fetcher import FetchResponse
from producers.schedule import SchedulePolicy, host_of
from producers.scheduler import Scheduler
from producers.state import ProducerState


class CountingFetcher:
    """Answers 304 after a short wait; counts fetches per URL and the most at once per host."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fetches: Counter[str] = Counter()
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def fetch(self, url: str, **_kwargs: Any) -> FetchResponse:
        host = host_of(url)
        with self.lock:
            self.fetches[url] += 1
            self.now[host] += 1
            self.most[host] = max(self.most[host], self.now[host])
        time.sleep(0.002)
        with self.lock:
            self.now[host] -= 1
        return FetchResponse(304, url, b"", {}, 0.002)


def wait_for(predicate: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_due_feeds_are_polled_within_host_limits_and_a_feed_taken_away_is_not(
    tmp_path: Path,
) -> None:
    feeds = [FeedSpec(f"https://host{n % 4}.example/feed/{n}") for n in range(40)]
    fetcher = CountingFetcher()
    state = ProducerState(tmp_path / "producer.sqlite3")
    scheduler = Scheduler(
        feeds[:20],
        fetcher=fetcher,  # type: ignore[arg-type]
        publisher=None,  # type: ignore[arg-type]  # 304s publish nothing
        state=state,
        concurrency=8,
        per_host=2,
        policy=SchedulePolicy(default_s=0.05, min_s=0.05, max_s=0.05),
    )
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(stop,))
    loop.start()
    try:
        wait_for(lambda: all(fetcher.fetches[f.url] >= 2 for f in feeds[:20]), "two rounds")
        assert not any(fetcher.fetches[f.url] for f in feeds[20:])
        scheduler.set_feeds(feeds[10:30])
        assert scheduler.wait_idle({f.id for f in feeds[:10]}, 10)
        taken = {f.url: fetcher.fetches[f.url] for f in feeds[:10]}
        wait_for(lambda: all(fetcher.fetches[f.url] >= 2 for f in feeds[20:30]), "new feeds")
        wait_for(lambda: all(fetcher.fetches[f.url] >= 4 for f in feeds[10:20]), "kept feeds")
        assert {f.url: fetcher.fetches[f.url] for f in feeds[:10]} == taken
        assert not any(fetcher.fetches[f.url] for f in feeds[30:])
        assert max(fetcher.most.values()) <= 2
    finally:
        stop.set()
        loop.join(10)
        scheduler.close()
        state.close()
