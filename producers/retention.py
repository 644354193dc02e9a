"""Retention windows: how long each feed's articles stay, and when an article has expired.

What goes in: the global window (``NEWSSTREAM_RETENTION_DAYS``, 0 = keep forever) and the feeds
with their own windows (:attr:`producers.feeds.FeedSpec.retention_days`: None follows the
global window, 0 keeps that feed's articles forever). What comes out: a feed's window, whether
an article has expired, and the :class:`RetentionPlan` the sweep runs (one group of feeds per
distinct window).

An article's event time is its published time, else its ingest time (a feed entry without a
date is timed by when it was read). An article expires when its event time is older than
``now - window``; an article exactly on the boundary stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from producers.feeds import FeedSpec

DAY_S = 86_400


def window_days(override: int | None, global_days: int) -> int:
    """A feed's window in days: its own when set, else the global one (0 = keep forever)."""
    return global_days if override is None else override


def cutoff(now: float, days: int) -> int | None:
    """Epoch seconds before which an event time has expired; None when nothing expires."""
    if days <= 0:
        return None
    return int(now) - days * DAY_S


def event_time(published_at: int | None, ingested_at: int) -> int:
    """An article's event time: published when known (> 0), else ingested."""
    return published_at if published_at is not None and published_at > 0 else ingested_at


def expired(published_at: int | None, ingested_at: int, now: float, days: int) -> bool:
    """True when the article's event time is older than the window ``days`` before ``now``."""
    bound = cutoff(now, days)
    return bound is not None and event_time(published_at, ingested_at) < bound


@dataclass(frozen=True)
class WindowGroup:
    """The feeds one window applies to.

    ``feed_ids`` lists them; when ``others`` is True the group also holds every feed not named
    by any group (the global window: feeds of the config file, feeds removed since, articles
    without a feed id), and ``feed_ids`` is then empty.
    """

    days: int
    feed_ids: tuple[str, ...] = ()
    others: bool = False


@dataclass(frozen=True)
class RetentionPlan:
    """The windows to sweep: one group per distinct window that expires anything.

    ``overridden`` lists every feed with its own window (those the ``others`` group excludes),
    including feeds kept forever, which have no group.
    """

    groups: tuple[WindowGroup, ...]
    overridden: tuple[str, ...]

    @property
    def active(self) -> bool:
        """True when some window expires articles (else a sweep has nothing to do)."""
        return bool(self.groups)


def plan(feeds: Iterable[FeedSpec], global_days: int) -> RetentionPlan:
    """Group the feeds with their own window by window; the global window takes the rest.

    Feeds whose override equals the global window join the global group, so there is exactly
    one group per distinct window. Windows of 0 (keep forever) get no group.
    """
    by_days: dict[int, list[str]] = {}
    overridden: list[str] = []
    for spec in feeds:
        if spec.retention_days is None or spec.retention_days == global_days:
            continue
        overridden.append(spec.id)
        if spec.retention_days > 0:
            by_days.setdefault(spec.retention_days, []).append(spec.id)
    groups = [WindowGroup(days, tuple(sorted(ids))) for days, ids in sorted(by_days.items())]
    if global_days > 0:
        groups.append(WindowGroup(global_days, others=True))
    return RetentionPlan(tuple(groups), tuple(sorted(set(overridden))))
