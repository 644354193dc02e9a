"""The embedding cache of reindexes: a vector per (content hash, model fingerprint).

What goes in: the content hash of an embedded text (rows carry it in ``content_hash``: the hash
of exactly the text the worker embedded) and the key of the model fingerprint that embedded it
(:func:`fingerprint_key`). What comes out: the stored float32 vector, or nothing. Guaranteed:
a vector is only ever returned for the same text hash AND the same fingerprint, so a reindex
with another model (or another backend of it) never reads vectors it did not make; a re-run,
or a retry after a rollback, embeds only what it has not embedded before.

One SQLite file under the data dir (WAL; one writer at a time, which a reindex is).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    fingerprint TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (fingerprint, content_hash)
) WITHOUT ROWID;
"""
#: Hashes per look-up statement (SQLite's bound-parameter limit is far above it).
_CHUNK = 500


def fingerprint_key(fingerprint: Mapping[str, Any]) -> str:
    """A short stable key of a fingerprint's JSON form (sorted keys): 16 bytes of its SHA-256."""
    text = json.dumps(dict(fingerprint), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def text_key(text: str) -> str:
    """The cache key of a row stored without a content hash: the SHA-256 of its text."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class EmbeddingCache:
    """Vectors by (fingerprint key, content hash) in the SQLite file ``path``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def get_many(self, fingerprint: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors of ``hashes`` under ``fingerprint`` (those it holds), by hash."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows = self._db.execute(
                    "SELECT content_hash, vector FROM vectors WHERE fingerprint = ?"
                    f" AND content_hash IN ({', '.join('?' for _ in chunk)})",
                    (fingerprint, *chunk),
                ).fetchall()
                for content_hash, blob in rows:
                    found[str(content_hash)] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(
        self, fingerprint: str, vectors: Mapping[str, Sequence[float] | np.ndarray]
    ) -> None:
        """Store ``vectors`` (hash -> vector) under ``fingerprint`` in one transaction."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (fingerprint, content_hash, vector)"
                " VALUES (?, ?, ?)",
                [
                    (fingerprint, h, np.asarray(v, dtype=np.float32).tobytes())
                    for h, v in vectors.items()
                ],
            )

    def count(self, fingerprint: str | None = None) -> int:
        """Vectors held (under ``fingerprint`` when given)."""
        with self._lock:
            if fingerprint is None:
                row = self._db.execute("SELECT count(*) FROM vectors").fetchone()
            else:
                row = self._db.execute(
                    "SELECT count(*) FROM vectors WHERE fingerprint = ?", (fingerprint,)
                ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
