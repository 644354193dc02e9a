"""Scheduling policy: when to poll a feed next, and how many fetches one host may take at once.

Pure policy, no I/O. What goes in: what a poll learnt (entry dates, RSS ``ttl``, the response's
``Cache-Control`` and ``Expires``, an error streak, a ``Retry-After``). What comes out: the
seconds until the next poll. Guarantees:

- After a successful poll the interval follows the feed's own pace: half the mean gap between
  its recent entries (or half the time since its newest entry, when the feed went quiet), never
  shorter than what the publisher asked for (``ttl``, ``max-age``, ``Expires``), and always
  clamped to ``[min_s, max_s]`` (default 2 min to 6 h). A feed without dates or hints gets
  ``default_s``. A 304 keeps the feed's previous interval (and honours new cache hints).
- After a failure: exponential backoff from ``min_s`` with jitter (a delay drawn from the upper
  half of the window), capped at ``backoff_cap_s`` (default 24 h). A failing feed is retried
  for ever, never abandoned. ``Retry-After`` (429/503) is honoured for that feed, up to the cap.
- :class:`HostLimiter`: at most ``per_host`` fetches run against one host at a time.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

_MAX_AGE = re.compile(r"(?:^|[,\s])(?:s-maxage|max-age)\s*=\s*\"?(\d{1,10})", re.I)
#: Entries used to estimate a feed's pace (the most recent ones).
PACE_WINDOW = 20
#: Entry dates further ahead than this are garbage and ignored.
FUTURE_SLACK_S = 86_400.0


def cache_hint_s(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the response says it stays fresh (``Cache-Control`` max-age, else ``Expires``)."""
    control = headers.get("cache-control", "")
    match = _MAX_AGE.search(control)
    if match:
        return float(match.group(1))
    expires = headers.get("expires", "").strip()
    if expires:
        try:
            stamp = parsedate_to_datetime(expires).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None  # "Expires: 0" and garbage mean "already expired"
        return max(0.0, stamp - now)
    return None


def pace_s(entry_times: Iterable[int | None], now: float) -> float | None:
    """Expected seconds between new entries, from the feed's own entry dates (None if unknown)."""
    times = sorted(
        {t for t in entry_times if t is not None and 0 < t <= now + FUTURE_SLACK_S},
        reverse=True,
    )[:PACE_WINDOW]
    if len(times) < 2:
        return None
    mean_gap = (times[0] - times[-1]) / (len(times) - 1)
    quiet_for = now - times[0]
    # A feed that stopped publishing should not keep its old, fast pace.
    return max(mean_gap, quiet_for, 1.0)


@dataclass(frozen=True)
class SchedulePolicy:
    """The interval bounds of the producer's schedule (see the module docstring)."""

    default_s: float = 300.0
    min_s: float = 120.0
    max_s: float = 6 * 3600.0
    backoff_cap_s: float = 24 * 3600.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(
                f"poll interval bounds need 0 < min <= max, got {self.min_s}, {self.max_s}"
            )

    def clamp(self, seconds: float) -> float:
        return min(self.max_s, max(self.min_s, seconds))

    def after_success(
        self,
        *,
        entry_times: Iterable[int | None],
        ttl_minutes: int | None,
        headers: Mapping[str, str],
        now: float,
    ) -> float:
        """Seconds until the next poll of a feed that just answered 200 with a feed."""
        pace = pace_s(entry_times, now)
        interval = self.default_s if pace is None else pace / 2
        return self.clamp(max(interval, self._publisher_hint(ttl_minutes, headers, now)))

    def after_not_modified(
        self, *, previous_s: float | None, headers: Mapping[str, str], now: float
    ) -> float:
        """Seconds until the next poll of a feed that just answered 304."""
        interval = previous_s if previous_s else self.default_s
        return self.clamp(max(interval, self._publisher_hint(None, headers, now)))

    def after_error(self, streak: int, retry_after_s: float | None = None) -> float:
        """Seconds until the next try after ``streak`` consecutive failures (``streak`` >= 1)."""
        ceiling = min(self.backoff_cap_s, self.min_s * 2 ** min(max(streak, 1) - 1, 40))
        delay = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(self.backoff_cap_s, delay)

    @staticmethod
    def _publisher_hint(ttl_minutes: int | None, headers: Mapping[str, str], now: float) -> float:
        hints = [cache_hint_s(headers, now) or 0.0]
        if ttl_minutes:
            hints.append(ttl_minutes * 60.0)
        return max(hints)


def host_of(url: str) -> str:
    """The host a fetch of ``url`` connects to (lower-case, with a non-default port)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return url


class HostLimiter:
    """Bounds concurrent fetches per host; :meth:`slot` blocks until the host has room."""

    def __init__(self, per_host: int = 2) -> None:
        if per_host < 1:
            raise ValueError(f"per-host concurrency must be at least 1, got {per_host}")
        self.per_host = per_host
        self._active: dict[str, int] = {}
        self._cond = threading.Condition()

    def has_room(self, host: str) -> bool:
        with self._cond:
            return self._active.get(host, 0) < self.per_host

    @contextmanager
    def slot(self, host: str, timeout_s: float | None = None) -> Iterator[None]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._active.get(host, 0) >= self.per_host:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no fetch slot for {host} within {timeout_s} s")
                self._cond.wait(remaining)
            self._active[host] = self._active.get(host, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                left = self._active[host] - 1
                if left:
                    self._active[host] = left
                else:
                    del self._active[host]
                self._cond.notify_all()
