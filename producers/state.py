"""The producer's durable state in SQLite (``<data dir>/producer.sqlite3``).

Per feed: ETag, Last-Modified, last fetch time and result, items, error streak, next poll and
the current poll interval.
Per article: the content hash of the last version delivered to Kafka.

Guarantee (the delivery rule of the design): callers advance a feed's validators and seen
entries with :meth:`ProducerState.commit_poll` only after Kafka's delivery reports for those
entries succeeded. A crash before that leaves the old validators in place, so the next poll
fetches and publishes the same entries again (duplicates are possible, loss is not).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_state (
    feed_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    last_fetch_at REAL,
    last_result TEXT,
    last_error TEXT,
    items INTEGER DEFAULT 0,
    error_streak INTEGER DEFAULT 0,
    next_poll_at REAL DEFAULT 0,
    interval_s REAL
);
CREATE TABLE IF NOT EXISTS seen_entry (
    article_id TEXT PRIMARY KEY,
    feed_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    delivered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_entry_delivered ON seen_entry(delivered_at);
CREATE INDEX IF NOT EXISTS seen_entry_feed ON seen_entry(feed_id, delivered_at);
"""
_COLUMNS = (
    "feed_id, url, etag, last_modified, last_fetch_at, last_result, last_error, items, "
    "error_streak, next_poll_at, interval_s"
)
_MARKS = ",".join("?" * len(_COLUMNS.split(",")))


@dataclass(frozen=True)
class FeedState:
    """What the producer remembers of one feed."""

    feed_id: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_fetch_at: float | None = None
    last_result: str | None = None
    last_error: str | None = None
    items: int = 0
    error_streak: int = 0
    next_poll_at: float = 0.0
    interval_s: float | None = None


class ProducerState:
    """Thread-safe access to the producer's SQLite state."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(feed_state)")}
        if "interval_s" not in columns:  # a state file from before adaptive intervals
            self._db.execute("ALTER TABLE feed_state ADD COLUMN interval_s REAL")
        self._lock = threading.Lock()
        self._listener: Callable[[FeedState, bool], None] | None = None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def feed(self, feed_id: str, url: str) -> FeedState:
        """The stored state of a feed (a fresh state when it was never polled)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM feed_state WHERE feed_id=?", (feed_id,)
            ).fetchone()
        return FeedState(*row) if row else FeedState(feed_id=feed_id, url=url)

    def all_feeds(self) -> list[FeedState]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM feed_state ORDER BY url").fetchall()
        return [FeedState(*row) for row in rows]

    def unseen(self, entries: Iterable[tuple[str, str]]) -> set[str]:
        """Ids among ``(article_id, content_hash)`` pairs not yet delivered with that hash."""
        pairs = list(entries)
        if not pairs:
            return set()
        with self._lock:
            known: dict[str, str] = {}
            ids = [p[0] for p in pairs]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                known.update(
                    self._db.execute(
                        f"SELECT article_id, content_hash FROM seen_entry "
                        f"WHERE article_id IN ({marks})",
                        chunk,
                    ).fetchall()
                )
        return {aid for aid, digest in pairs if known.get(aid) != digest}

    def commit_poll(
        self,
        state: FeedState,
        delivered: Iterable[tuple[str, str]],
        now: float | None = None,
        *,
        notify: bool = True,
    ) -> None:
        """Record a finished poll: the feed's new state and the entries Kafka acknowledged.

        Then, with ``notify``, the commit listener (:meth:`on_commit`) is told of the new state
        and whether any entry was delivered.
        """
        stamp = time.time() if now is None else now
        rows = [(aid, state.feed_id, digest, stamp) for aid, digest in delivered]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO seen_entry(article_id, feed_id, content_hash, delivered_at) "
                    "VALUES(?,?,?,?) ON CONFLICT(article_id) DO UPDATE SET "
                    "content_hash=excluded.content_hash, delivered_at=excluded.delivered_at",
                    rows,
                )
                self._db.execute(
                    f"INSERT OR REPLACE INTO feed_state({_COLUMNS}) VALUES({_MARKS})",
                    (
                        state.feed_id,
                        state.url,
                        state.etag,
                        state.last_modified,
                        state.last_fetch_at,
                        state.last_result,
                        state.last_error,
                        state.items,
                        state.error_streak,
                        state.next_poll_at,
                        state.interval_s,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        listener = self._listener
        if notify and listener is not None:
            listener(state, bool(rows))

    def on_commit(self, listener: Callable[[FeedState, bool], None] | None) -> None:
        """Call ``listener`` with a feed's state, and whether entries were delivered, after each
        committed poll (the producers
        replicate it to the feed-state topic); None stops it."""
        self._listener = listener

    def seen_of(self, feed_id: str, limit: int) -> list[tuple[str, str]]:
        """The feed's delivered entries ``(article id, fingerprint)``, newest first, at most
        ``limit``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT article_id, content_hash FROM seen_entry WHERE feed_id=? "
                "ORDER BY delivered_at DESC LIMIT ?",
                (feed_id, limit),
            ).fetchall()
        return [(str(aid), str(digest)) for aid, digest in rows]

    def adopt(self, state: FeedState, seen: Iterable[tuple[str, str]]) -> bool:
        """Take over a feed's state written by another producer (see
        :mod:`producers.feed_state_topic`), unless the local state is at least as recent (same
        or later last fetch); returns whether it was adopted. Seen entries are added either way,
        so nothing delivered elsewhere is published again."""
        local = self.feed(state.feed_id, state.url)
        newer = (state.last_fetch_at or 0.0) > (local.last_fetch_at or 0.0)
        if newer:
            self.commit_poll(state, seen, notify=False)
        else:
            self.commit_poll(local, seen, notify=False)
        return newer

    def forget_older_than(self, seconds: float) -> int:
        """Drop seen entries delivered more than ``seconds`` ago; returns how many."""
        cutoff = time.time() - seconds
        with self._lock:
            cursor = self._db.execute("DELETE FROM seen_entry WHERE delivered_at < ?", (cutoff,))
        return cursor.rowcount
