"""Search trends: windowed counting of queries and stories, in memory, bounded, without Kafka.

What goes in: :class:`core.search_events.SearchEvent` objects (from the trends app) and the
current time. What comes out: :meth:`TrendsAggregator.snapshot`, a JSON-ready dict per window
(``"1h"``, ``"24h"``) with top queries, rising queries and top stories.

Windows. Each window of length ``W`` is split into buckets of ``bucket_s`` seconds (1 min for
1 h, 15 min for 24 h). "The last window" is the ``W / bucket_s`` most recent buckets (the
newest one is partly filled), "the previous window" the same number of buckets before them.
So windows slide in steps of one bucket, and an event counts where its own ``at`` falls
(event time; an ``at`` in the future is taken as "now", an ``at`` older than two windows is
ignored).

Rising queries. With ``c`` the count of a query in the last window and ``p`` its count in the
previous one::

    growth = (c - p) / (p + 1)

A query is rising when ``c >= min_rising_count`` and ``c > p``; rising queries are ordered by
growth, then by ``c``. The ``+ 1`` keeps a brand-new query finite (``0 -> 10`` gives 10.0,
``5 -> 10`` gives 0.83) and damps noise on small counts. Right after a start the previous
window is empty, so every query with enough searches looks new.

Stories. A story is a ``story_id`` with its latest title and the set of sources that showed up
in the top results of searches (the result's source and, when the API sends them, the
story's other sources), each with the time it was last seen. Top stories of a window are
ordered by the number of distinct sources seen within it, then by the most recent sighting.
Stories are kept for 24 h.

Memory bounds. Each window's last and previous counts hold at most ``max_keys`` distinct
queries; on overflow the least-counted tenth is evicted (from the totals and from the window's
buckets, so totals always equal the sum of their buckets). Heavy hitters survive a flood of
one-off queries; counts of evicted tail queries restart from zero. Stories are capped at
``max_stories`` (the ones with the fewest sources go first) and ``max_sources`` per story.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.search_events import SearchEvent, normalise_query

#: Window name -> (length in seconds, bucket length in seconds).
WINDOWS: dict[str, tuple[int, int]] = {"1h": (3_600, 60), "24h": (86_400, 900)}
#: How long a story is remembered (the longest window).
STORY_HORIZON_S = 86_400.0

_CURRENT, _PREVIOUS, _EXPIRED = 0, 1, 2
#: On overflow, a counter is cut down to this fraction of its cap (amortises eviction).
_EVICT_TO = 0.9


@dataclass(frozen=True)
class QueryCount:
    query: str
    count: int


@dataclass(frozen=True)
class RisingQuery:
    query: str
    count: int
    previous: int
    growth: float


@dataclass(frozen=True)
class StoryTrend:
    story_id: str
    title: str
    sources: list[str]
    source_count: int


def growth(count: int, previous: int) -> float:
    """Growth of a query from the previous window to the last: ``(c - p) / (p + 1)``."""
    return (count - previous) / (previous + 1)


def top_counts(counts: Mapping[str, int], n: int) -> list[QueryCount]:
    """The ``n`` largest counts, ties broken alphabetically (stable output)."""
    best = heapq.nsmallest(n, counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [QueryCount(query, count) for query, count in best]


def rising_queries(
    current: Mapping[str, int], previous: Mapping[str, int], min_count: int, n: int
) -> list[RisingQuery]:
    """Queries whose count grew (see the module docstring for the formula), best first."""
    candidates = [
        RisingQuery(query, count, previous.get(query, 0), growth(count, previous.get(query, 0)))
        for query, count in current.items()
        if count >= min_count and count > previous.get(query, 0)
    ]
    candidates.sort(key=lambda r: (-r.growth, -r.count, r.query))
    return candidates[:n]


class WindowedCounter:
    """Counts of keys in the last window and the previous window of the same length.

    Input: ``add(key, at, now)``; time only moves forward (an older ``now`` is taken as the
    newest seen). Guarantees: ``current()``/``previous()`` equal the sums of their buckets; at
    most ``max_keys`` keys per window (the smallest are evicted first).
    """

    def __init__(self, window_s: int, bucket_s: int, max_keys: int) -> None:
        if window_s <= 0 or bucket_s <= 0 or window_s % bucket_s:
            raise ValueError(f"window {window_s}s must be a positive multiple of {bucket_s}s")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.max_keys = max_keys
        self._per_window = window_s // bucket_s
        self._now_bucket: int | None = None
        self._buckets: dict[int, Counter[str]] = {}
        self._totals: tuple[Counter[str], Counter[str]] = (Counter(), Counter())

    def _region(self, bucket: int) -> int:
        assert self._now_bucket is not None
        age = self._now_bucket - bucket
        if age < self._per_window:
            return _CURRENT
        if age < 2 * self._per_window:
            return _PREVIOUS
        return _EXPIRED

    def advance(self, now: float) -> None:
        """Slide both windows to ``now``: buckets move from the last window to the previous
        one, and out of it."""
        new_bucket = int(now // self.bucket_s)
        if self._now_bucket is not None and new_bucket <= self._now_bucket:
            return
        if self._now_bucket is None:
            self._now_bucket = new_bucket
            return
        before = {b: self._region(b) for b in self._buckets}
        self._now_bucket = new_bucket
        for bucket in sorted(before):
            old, new = before[bucket], self._region(bucket)
            if old == new:
                continue
            counts = self._buckets[bucket]
            _subtract(self._totals[old], counts)
            if new == _EXPIRED:
                del self._buckets[bucket]
            else:
                self._totals[new].update(counts)
        self._enforce_cap(_PREVIOUS)

    def add(self, key: str, at: float, now: float, count: int = 1) -> bool:
        """Count ``key`` at event time ``at``; False when ``at`` is older than two windows."""
        self.advance(now)
        assert self._now_bucket is not None
        bucket = min(int(at // self.bucket_s), self._now_bucket)
        region = self._region(bucket)
        if region == _EXPIRED:
            return False
        self._buckets.setdefault(bucket, Counter())[key] += count
        self._totals[region][key] += count
        self._enforce_cap(region)
        return True

    def current(self) -> Mapping[str, int]:
        """Counts in the last window."""
        return self._totals[_CURRENT]

    def previous(self) -> Mapping[str, int]:
        """Counts in the previous window."""
        return self._totals[_PREVIOUS]

    def _enforce_cap(self, region: int) -> None:
        totals = self._totals[region]
        if len(totals) <= self.max_keys:
            return
        keep = max(1, int(self.max_keys * _EVICT_TO))
        victims = [k for k, _ in heapq.nsmallest(len(totals) - keep, totals.items(), key=_count)]
        for key in victims:
            del totals[key]
        for bucket, counts in list(self._buckets.items()):
            if self._region(bucket) != region:
                continue
            for key in victims:
                counts.pop(key, None)
            if not counts:
                del self._buckets[bucket]


def _count(item: tuple[str, int]) -> int:
    return item[1]


def _subtract(totals: Counter[str], counts: Mapping[str, int]) -> None:
    for key, count in counts.items():
        left = totals.get(key, 0) - count
        if left > 0:
            totals[key] = left
        else:
            totals.pop(key, None)


@dataclass
class _Story:
    title: str
    sources: dict[str, float]  # source -> last seen (epoch s)
    last_seen: float


class StoryTracker:
    """Stories seen in search results, with the sources that carried them and when.

    Guarantees: at most ``max_stories`` stories (the fewest sources, then the oldest, are
    evicted first) and ``max_sources`` sources per story (the least recently seen go first);
    stories not seen for ``horizon_s`` are forgotten.
    """

    def __init__(
        self, max_stories: int, max_sources: int = 64, horizon_s: float = STORY_HORIZON_S
    ) -> None:
        if max_stories < 1 or max_sources < 1:
            raise ValueError("max_stories and max_sources must be at least 1")
        self.max_stories = max_stories
        self.max_sources = max_sources
        self.horizon_s = horizon_s
        self._stories: dict[str, _Story] = {}

    def __len__(self) -> int:
        return len(self._stories)

    def add(self, story_id: str, title: str, sources: Iterable[str], at: float) -> None:
        """Record that ``story_id`` was shown with ``sources`` at ``at``."""
        names = {s.strip().lower() for s in sources if s and s.strip()}
        story = self._stories.get(story_id)
        if story is None:
            story = self._stories[story_id] = _Story(title, {}, at)
        if title and at >= story.last_seen:
            story.title = title
        story.last_seen = max(story.last_seen, at)
        for name in names:
            story.sources[name] = max(story.sources.get(name, at), at)
        if len(story.sources) > self.max_sources:
            newest = heapq.nlargest(self.max_sources, story.sources.items(), key=_seen)
            story.sources = dict(newest)
        if len(self._stories) > self.max_stories:
            self._evict()

    def prune(self, now: float) -> None:
        """Forget stories not seen within the horizon."""
        cutoff = now - self.horizon_s
        for story_id in [k for k, s in self._stories.items() if s.last_seen < cutoff]:
            del self._stories[story_id]

    def top(self, n: int, now: float, window_s: float) -> list[StoryTrend]:
        """The ``n`` stories with the most distinct sources seen in ``(now - window_s, now]``."""
        cutoff = now - window_s
        ranked: list[tuple[int, float, str, list[str]]] = []
        for story_id, story in self._stories.items():
            if story.last_seen < cutoff:
                continue
            sources = sorted(s for s, seen in story.sources.items() if seen >= cutoff)
            if sources:
                ranked.append((len(sources), story.last_seen, story_id, sources))
        best = heapq.nsmallest(n, ranked, key=lambda r: (-r[0], -r[1], r[2]))
        return [
            StoryTrend(story_id, self._stories[story_id].title, sources, count)
            for count, _, story_id, sources in best
        ]

    def _evict(self) -> None:
        keep = max(1, int(self.max_stories * _EVICT_TO))
        order = heapq.nsmallest(
            len(self._stories) - keep,
            self._stories.items(),
            key=lambda kv: (len(kv[1].sources), kv[1].last_seen),
        )
        for story_id, _ in order:
            del self._stories[story_id]


def _seen(item: tuple[str, float]) -> float:
    return item[1]


class TrendsAggregator:
    """Top and rising queries per window and top stories, fed one search event at a time.

    Not thread-safe: the trends app serialises ``add`` and ``snapshot`` with a lock.
    """

    def __init__(
        self,
        *,
        max_keys: int = 10_000,
        max_stories: int = 5_000,
        max_sources: int = 64,
        min_rising_count: int = 3,
        top_n: int = 20,
        windows: Mapping[str, tuple[int, int]] = WINDOWS,
    ) -> None:
        if min_rising_count < 1 or top_n < 1:
            raise ValueError("min_rising_count and top_n must be at least 1")
        self.min_rising_count = min_rising_count
        self.top_n = top_n
        self._windows = {
            name: WindowedCounter(length, bucket, max_keys)
            for name, (length, bucket) in windows.items()
        }
        self._lengths = {name: length for name, (length, _) in windows.items()}
        self.stories = StoryTracker(
            max_stories, max_sources, horizon_s=max(self._lengths.values(), default=0)
        )
        self.events = 0

    @property
    def windows(self) -> tuple[str, ...]:
        return tuple(self._windows)

    def add(self, event: SearchEvent, now: float) -> bool:
        """Count one search; False when the event is older than every window can hold."""
        at = min(event.at, now)
        query = normalise_query(event.query)
        counted = False
        for counter in self._windows.values():
            if query:
                counted = counter.add(query, at, now) or counted
        if at >= now - self.stories.horizon_s:
            counted = True
            for result in event.top_results:
                if result.story_id:
                    self.stories.add(
                        result.story_id, result.title, [result.source, *result.other_sources], at
                    )
        if counted:
            self.events += 1
        return counted

    def snapshot(self, window: str, now: float) -> dict[str, Any]:
        """The trends of ``window`` at ``now`` as a JSON-ready dict."""
        counter = self._windows.get(window)
        if counter is None:
            raise KeyError(f"unknown window {window!r}; expected one of {self.windows}")
        counter.advance(now)
        self.stories.prune(now)
        current, previous = counter.current(), counter.previous()
        return {
            "window": window,
            "window_s": self._lengths[window],
            "searches": sum(current.values()),
            "top_queries": [_plain(q) for q in top_counts(current, self.top_n)],
            "rising_queries": [
                _plain(r)
                for r in rising_queries(current, previous, self.min_rising_count, self.top_n)
            ],
            "top_stories": [
                _plain(s) for s in self.stories.top(self.top_n, now, self._lengths[window])
            ],
        }


def _plain(item: QueryCount | RisingQuery | StoryTrend) -> dict[str, Any]:
    data = dict(item.__dict__)
    if isinstance(item, RisingQuery):
        data["growth"] = round(item.growth, 4) if math.isfinite(item.growth) else 0.0
    return data
