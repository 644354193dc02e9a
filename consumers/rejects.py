"""A small, bounded sample of what the quality gate rejected, for ``newsstream rejects``.

What goes in: one rejected item at a time (reason, article id, title, url, text, time), and a
path to an SQLite file (usually ``<data dir>/rejects.sqlite3``). What comes out: the most
recent items, newest first, optionally for one reason.

Guarantees: at most ``per_reason`` items are kept for each reason (older ones are deleted as
new ones arrive), so the file stays small whatever the feeds send; fields are capped (title
300, url 2048, text head 500 characters); the same article id rejected again replaces its
row. Safe to use from several processes at once (every worker process of a host writes the same
file): SQLite in WAL mode, each ``add`` one ``BEGIN IMMEDIATE`` transaction (insert, then trim
its reason to the bound) that takes the write lock before it reads, so concurrent writers queue
on SQLite's lock (waiting up to ``BUSY_TIMEOUT_S``) instead of failing, and the bound holds
after every transaction. Readers never block writers. The sample is advisory: commits are not
fsynced (``synchronous=NORMAL``), so a power cut may lose the last few items, never the file.
One connection per :class:`RejectSample`, shared by its threads under a lock, so an ``add`` costs
a fraction of a millisecond (a connection per call paid a WAL checkpoint at every close).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TITLE_CHARS = 300
URL_CHARS = 2048
HEAD_CHARS = 500
DEFAULT_PER_REASON = 50
#: How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rejects (
    article_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT NOT NULL,
    head TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rejects_reason_time ON rejects (reason, rejected_at);
"""


@dataclass(frozen=True)
class RejectedItem:
    """One kept sample: why, which article, what it looked like, when (epoch seconds)."""

    reason: str
    article_id: str
    title: str
    url: str
    head: str
    rejected_at: float


class RejectSample:
    """The sample store at ``path`` (created with its parent directory when missing)."""

    def __init__(self, path: Path, *, per_reason: int = DEFAULT_PER_REASON) -> None:
        if per_reason < 1:
            raise ValueError(f"per_reason must be at least 1, got {per_reason}")
        self.path = path
        self.per_reason = per_reason
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level="IMMEDIATE", check_same_thread=False
        )
        try:
            # Switching to WAL needs a moment alone with the file: processes creating the
            # sample together retry until one of them has switched it (then it is a no-op).
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            while True:
                try:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the connection (the sample stays in its file)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> RejectSample:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def add(
        self,
        *,
        reason: str,
        article_id: str,
        title: str,
        url: str,
        text: str,
        now: float | None = None,
    ) -> None:
        """Keep one rejected item (capped), dropping the oldest of its reason past the bound."""
        when = time.time() if now is None else now
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO rejects VALUES (?, ?, ?, ?, ?, ?)",
                (
                    article_id,
                    reason,
                    title[:TITLE_CHARS],
                    url[:URL_CHARS],
                    text[:HEAD_CHARS],
                    when,
                ),
            )
            self._db.execute(
                "DELETE FROM rejects WHERE reason = ? AND article_id NOT IN ("
                "SELECT article_id FROM rejects WHERE reason = ? "
                "ORDER BY rejected_at DESC, article_id LIMIT ?)",
                (reason, reason, self.per_reason),
            )

    def items(self, *, reason: str | None = None, limit: int = 100) -> list[RejectedItem]:
        """The kept items, newest first (only ``reason``'s when given), at most ``limit``."""
        query = "SELECT reason, article_id, title, url, head, rejected_at FROM rejects"
        args: tuple[object, ...] = ()
        if reason is not None:
            query += " WHERE reason = ?"
            args = (reason,)
        query += " ORDER BY rejected_at DESC, article_id LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, max(0, limit))).fetchall()
        return [RejectedItem(r[0], r[1], r[2], r[3], r[4], float(r[5])) for r in rows]

    def counts(self) -> dict[str, int]:
        """Kept items per reason (the sample, not the total: see the metrics for totals)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT reason, COUNT(*) FROM rejects GROUP BY reason"
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}


def rejects_path(data_dir: Path) -> Path:
    """Where the worker keeps the sample inside the data dir."""
    return data_dir / "rejects.sqlite3"
