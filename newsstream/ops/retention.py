"""The retention sweep: find expired articles in Milvus and publish their tombstones.

What goes in: the settings (global window ``NEWSSTREAM_RETENTION_DAYS``), the feeds with their
own windows (the registry merged with the feeds file, :func:`producers.registry.resolve_feeds`)
and a "now" (the clock, or a simulated one). What comes out: a :class:`SweepReport`; unless
``dry_run``, every expired id got a tombstone on the articles topic (key = id, null value,
header ``newsstream-delete-reason: expired``, ``acks=all``, delivery awaited), which the worker
applies to every store like any delete.

How: one Milvus query per distinct window (:func:`producers.retention.plan`): a count at
Strong consistency, then, when it is not zero, the ids in pages with a query iterator; each
page's tombstones are
acknowledged before the next page is read, so memory is bounded by one page whatever the
index holds. An article's event time is ``published_at`` when known, else ``ingested_at``.

Guarantees: idempotent and safe on several machines at once: a tombstone for an id that is
already gone is a no-op for the worker. Ids this process tombstoned in its last sweeps
(:class:`RecentTombstones`) are not sent again while the worker may still be applying them,
which keeps a periodic sweep from doubling its own deletes; two machines may each send one.
Nothing is reported as deleted unless the broker acknowledged its tombstone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from pymilvus import MilvusClient, MilvusException

from core.article import DELETE_REASON_HEADER, DeleteReason
from core.errors import NewsstreamError, TransientError
from core.kafka import producer_config
from core.settings import Settings
from producers.feeds import FeedSpec
from producers.registry import FeedRegistry, resolve_feeds, state_path
from producers.retention import RetentionPlan, WindowGroup, cutoff, plan
from store.client import milvus_client, row_pages
from store.expressions import quote_literal

log = logging.getLogger(__name__)

#: The delete reason retention's tombstones carry (the contract is :mod:`core.article`'s).
EXPIRED = DeleteReason.EXPIRED.value.encode("ascii")
#: How long a periodic sweep remembers the ids it tombstoned (at least one period): longer than
#: a worker that is catching up should take to apply them.
RECENT_TTL_S = 900.0
#: Ids read (and tombstones published) per page.
PAGE = 1000
#: ``progress(event, n)``: "window" (a window's count of expired ids, before they are read),
#: "found" (expired ids read from Milvus) or "sent" (tombstones acknowledged).
Progress = Callable[[str, int], None]


@dataclass
class WindowReport:
    """What the sweep did for one window."""

    days: int
    cutoff: int
    feeds: str
    expired: int = 0
    tombstones: int = 0


@dataclass
class SweepReport:
    """What one sweep found and did (``tombstones`` were acknowledged by the broker)."""

    now: float
    dry_run: bool
    windows: list[WindowReport] = field(default_factory=list)
    skipped_recent: int = 0

    @property
    def expired(self) -> int:
        return sum(w.expired for w in self.windows)

    @property
    def tombstones(self) -> int:
        return sum(w.tombstones for w in self.windows)

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "dry_run": self.dry_run,
            "expired": self.expired,
            "tombstones": self.tombstones,
            "skipped_recent": self.skipped_recent,
            "windows": [vars(w) for w in self.windows],
        }


class RecentTombstones:
    """Ids this process tombstoned lately (at most ``capacity``, each for ``ttl_s``).

    A sweep that runs again before the worker applied the last one's tombstones would find the
    same ids; skipping them is the cheap part of avoiding duplicate deletes.
    """

    def __init__(self, ttl_s: float, capacity: int = 200_000) -> None:
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._sent: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, article_id: object) -> bool:
        sent = self._sent.get(str(article_id))
        return sent is not None and time.monotonic() - sent < self._ttl_s

    def add(self, ids: Sequence[str]) -> None:
        now = time.monotonic()
        for article_id in ids:
            self._sent[article_id] = now
            self._sent.move_to_end(article_id)
        while len(self._sent) > self._capacity:
            self._sent.popitem(last=False)


class TombstonePublisher:
    """Publishes tombstones with a delete reason and waits for every delivery report."""

    def __init__(self, settings: Settings, reason: bytes = EXPIRED) -> None:
        self._producer = Producer(producer_config(settings, client_id="newsstream-retention"))
        self._topic = settings.kafka_topic
        self._reason = reason

    def send(self, ids: Sequence[str], timeout_s: float = 120.0) -> int:
        """Tombstone ``ids``; returns how many were acknowledged. Raises
        :class:`TransientError` when any was refused or unacknowledged after ``timeout_s``."""
        failures: list[str] = []
        produced_at = str(int(time.time() * 1000)).encode("ascii")

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        deadline = time.monotonic() + timeout_s
        for article_id in ids:
            while True:
                try:
                    self._producer.produce(
                        self._topic,
                        key=article_id.encode("ascii"),
                        value=None,
                        headers=[
                            (DELETE_REASON_HEADER, self._reason),
                            ("produced_at", produced_at),
                        ],
                        on_delivery=report,
                    )
                    break
                except BufferError:
                    # The local queue is full: serve reports until there is room (never drop).
                    if time.monotonic() > deadline:
                        raise TransientError("Kafka producer queue full past the timeout") from None
                    self._producer.poll(0.1)
        left = self._producer.flush(max(0.0, deadline - time.monotonic()))
        if left or failures:
            raise TransientError(
                f"{len(ids) - left - len(failures)} of {len(ids)} tombstones acknowledged "
                f"({left} pending, first failure: {failures[:1] or 'none'})"
            )
        return len(ids)

    def close(self) -> None:
        self._producer.flush(10)


def configured_feeds(settings: Settings) -> list[FeedSpec]:
    """The feeds the producers poll (registry merged with the feeds file), with their windows."""
    registry = FeedRegistry(state_path(settings.data_dir))
    try:
        return [r.spec for r in resolve_feeds(settings.feeds_file, registry)]
    finally:
        registry.close()


def retention_active(settings: Settings) -> bool:
    """True when the global window or some feed's own window expires articles."""
    return plan(configured_feeds(settings), settings.retention_days).active


def expired_filter(group: WindowGroup, overridden: Sequence[str], bound: int) -> str:
    """The Milvus expression of the rows of ``group`` whose event time is before ``bound``."""
    when = (
        f"((published_at > 0 and published_at < {bound}) or "
        f"(published_at <= 0 and ingested_at < {bound}))"
    )
    if group.others:
        if not overridden:
            return when
        listed = ", ".join(quote_literal(f) for f in overridden)
        return f"{when} and not (feed_id in [{listed}])"
    listed = ", ".join(quote_literal(f) for f in group.feed_ids)
    return f"{when} and feed_id in [{listed}]"


def _describe(group: WindowGroup) -> str:
    if group.others:
        return "feeds without their own window"
    return f"{len(group.feed_ids)} feeds with their own window"


def _count(client: MilvusClient, collection: str, expression: str) -> int:
    """Rows matching ``expression``, at Strong consistency.

    Also why the iterator sees recent writes: on the 2.3 server a query iterator opened right
    after an upsert (it reads at a client-side timestamp) missed those rows, while an iterator
    opened after a Strong query saw them.
    """
    rows = client.query(
        collection, filter=expression, output_fields=["count(*)"], consistency_level="Strong"
    )
    return int(rows[0]["count(*)"]) if rows else 0


def _expired_pages(client: MilvusClient, collection: str, expression: str) -> Iterator[list[str]]:
    """Ids matching ``expression``, one page at a time (only one page held)."""
    for rows in row_pages(client, collection, ["id"], expression=expression, batch=PAGE):
        yield [str(row["id"]) for row in rows]


def sweep(
    settings: Settings,
    *,
    now: float | None = None,
    dry_run: bool = False,
    feeds: Sequence[FeedSpec] | None = None,
    progress: Progress | None = None,
    recent: RecentTombstones | None = None,
) -> SweepReport:
    """Tombstone every article older than its feed's window at ``now`` (see the module doc).

    ``feeds`` defaults to :func:`configured_feeds`; ``recent`` remembers what this process sent
    across sweeps. Raises :class:`TransientError` when Milvus or Kafka fails (ids already
    acknowledged are deleted; running again continues where it stopped).
    """
    moment = time.time() if now is None else now
    report = SweepReport(now=moment, dry_run=dry_run)
    retention = plan(
        configured_feeds(settings) if feeds is None else feeds, settings.retention_days
    )
    if not retention.active:
        return report
    client = milvus_client(settings)
    publisher = None if dry_run else TombstonePublisher(settings)
    try:
        if not client.has_collection(settings.milvus_collection):
            # Nothing indexed yet: each window is reported with nothing expired.
            for group in retention.groups:
                bound = cutoff(moment, group.days)
                report.windows.append(WindowReport(group.days, bound or 0, _describe(group)))
            return report
        for group in retention.groups:
            _sweep_window(
                client, settings, retention, group, moment, report, publisher, progress, recent
            )
    except MilvusException as exc:
        raise TransientError(f"Milvus failed during the retention sweep: {exc}") from exc
    finally:
        if publisher is not None:
            publisher.close()
        client.close()
    return report


def _sweep_window(
    client: MilvusClient,
    settings: Settings,
    retention: RetentionPlan,
    group: WindowGroup,
    now: float,
    report: SweepReport,
    publisher: TombstonePublisher | None,
    progress: Progress | None,
    recent: RecentTombstones | None,
) -> None:
    bound = cutoff(now, group.days)
    assert bound is not None  # plan() makes groups only for windows that expire something
    window = WindowReport(group.days, bound, _describe(group))
    report.windows.append(window)
    expression = expired_filter(group, retention.overridden, bound)
    total = _count(client, settings.milvus_collection, expression)
    if progress is not None:
        progress("window", total)
    if total == 0:
        return
    for page in _expired_pages(client, settings.milvus_collection, expression):
        window.expired += len(page)
        if progress is not None:
            progress("found", len(page))
        if publisher is None:
            continue
        fresh = [i for i in page if recent is None or i not in recent]
        report.skipped_recent += len(page) - len(fresh)
        if not fresh:
            continue
        window.tombstones += publisher.send(fresh)
        if recent is not None:
            recent.add(fresh)
        if progress is not None:
            progress("sent", len(fresh))


def run_sweeps(settings: Settings, stop: threading.Event, first_after_s: float = 60.0) -> None:
    """Sweep every ``settings.retention_sweep_s`` (the first after ``first_after_s``) until
    ``stop`` is set. Windows are read again before each sweep, so a feed's new window applies
    from the next one; while no window is set a sweep does nothing. A Milvus or Kafka outage
    is logged and the sweep tried again at the next period."""
    recent = RecentTombstones(ttl_s=max(RECENT_TTL_S, settings.retention_sweep_s))
    wait = first_after_s
    while not stop.wait(wait):
        wait = settings.retention_sweep_s
        started = time.monotonic()
        try:
            report = sweep(settings, recent=recent)
        except NewsstreamError as exc:
            log.warning("retention sweep failed (%s); next try in %.0f s", exc, wait)
            continue
        if report.windows:
            log.info(
                "retention sweep: %d expired, %d tombstones in %.1f s",
                report.expired,
                report.tombstones,
                time.monotonic() - started,
            )
