"""BM25 keyword search in SQLite FTS5, for Milvus servers that have no BM25 of their own.

Milvus before 2.5 (the PyPI ``milvus`` 2.3.5 server among them) has no sparse vectors, so
keyword and hybrid search need an index beside it. This one lives in one SQLite file in the
data dir, shared by every process of one machine (WAL mode: the workers write, the API reads):

- ``upsert`` replaces the title, text and filter fields of each article id (last write wins),
  in one transaction; the worker calls it after Milvus acknowledged the same rows and before
  it commits the offsets, so the index never misses an acknowledged article.
- ``delete`` removes article ids (a deleted article); ids it does not hold are a no-op.
- ``search`` turns any user text into a plain OR of quoted terms (no FTS5 syntax from the
  user reaches SQLite; every value is a bound parameter), ranks by BM25 with the title weighted
  above the body, and applies the same filters as the Milvus expression (sources, language,
  feeds, publish-time range). Headline-only search (``titles_only``) runs on a table of its own
  holding only the titles, so its cost follows the title postings, not the whole articles'.

Scores are BM25 scores as positive numbers (higher is better), comparable within one query.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.errors import TransientError
from core.settings import Settings
from store.client import row_pages

#: Terms kept from a query (the rest are dropped): bounds the cost of one MATCH.
MAX_QUERY_TERMS = 32
#: BM25 weight of a title match relative to a body match.
TITLE_WEIGHT = 2.0

_TERM = re.compile(r"\w+", re.UNICODE)
#: English function words dropped from queries (they match most articles, cost the most to
#: rank and carry almost no BM25 weight); a query made only of them keeps them.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "she",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    ]
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    feed_id TEXT NOT NULL,
    language TEXT NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS docs_fts USING fts5(
    title, text, tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS titles_fts USING fts5(
    title, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


@dataclass(frozen=True)
class KeywordDoc:
    """What the keyword index keeps of one article."""

    id: str
    title: str
    text: str
    source: str
    feed_id: str
    language: str
    published_at: int


class Filters(Protocol):
    """The filters a keyword search honours (``search_api.filters.SearchFilters`` is one):
    empty lists and None mean no restriction; the time bounds are inclusive epoch seconds."""

    @property
    def sources(self) -> Sequence[str]: ...
    @property
    def language(self) -> str | None: ...
    @property
    def feeds(self) -> Sequence[str]: ...
    @property
    def since(self) -> int | None: ...
    @property
    def until(self) -> int | None: ...


def match_expression(query: str) -> str | None:
    """The FTS5 MATCH text for ``query``: its word terms, each quoted, joined by OR.

    Returns None when the query has no word characters. The quoting makes every term a plain
    string (FTS5 operators such as ``NEAR``, ``*``, ``:`` or ``-`` typed by a user are text).
    """
    words = _TERM.findall(query.lower())
    content = [word for word in words if word not in STOP_WORDS]
    terms: list[str] = []
    for term in content or words:
        if term not in terms:
            terms.append(term)
        if len(terms) == MAX_QUERY_TERMS:
            break
    if not terms:
        return None
    return " OR ".join(f'"{term}"' for term in terms)


class KeywordIndex:
    """The FTS5 index in one SQLite file; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._fill_titles()
        # Searches read on a connection of their own thread: WAL readers run in parallel
        # (with each other and with the writer), which a shared connection would serialize.
        self._readers = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []

    def _fill_titles(self) -> None:
        """Fill the headline table from the articles table when it holds fewer rows (an index
        file written before the headline table existed)."""
        with self._lock, self._db:
            titles = self._db.execute("SELECT count(*) FROM titles_fts").fetchone()[0]
            if titles < self._db.execute("SELECT count(*) FROM docs").fetchone()[0]:
                self._db.execute("DELETE FROM titles_fts")
                self._db.execute(
                    "INSERT INTO titles_fts (rowid, title) SELECT rowid, title FROM docs_fts"
                )

    def upsert(self, docs: Iterable[KeywordDoc]) -> int:
        """Index ``docs`` (replacing earlier versions of the same ids) in one transaction;
        returns how many. A busy or failing database raises :class:`TransientError` with
        nothing written."""
        try:
            return self._upsert(docs)
        except sqlite3.Error as exc:
            raise TransientError(f"keyword index {self.path}: {exc}") from exc

    def _upsert(self, docs: Iterable[KeywordDoc]) -> int:
        count = 0
        with self._lock, self._db:
            for doc in docs:
                row = self._db.execute("SELECT rowid FROM docs WHERE id = ?", (doc.id,)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM docs_fts WHERE rowid = ?", (row[0],))
                    self._db.execute("DELETE FROM titles_fts WHERE rowid = ?", (row[0],))
                    self._db.execute(
                        "UPDATE docs SET source = ?, feed_id = ?, language = ?, published_at = ?"
                        " WHERE rowid = ?",
                        (doc.source, doc.feed_id, doc.language, doc.published_at, row[0]),
                    )
                    rowid = row[0]
                else:
                    cursor = self._db.execute(
                        "INSERT INTO docs (id, source, feed_id, language, published_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (doc.id, doc.source, doc.feed_id, doc.language, doc.published_at),
                    )
                    rowid = cursor.lastrowid
                self._db.execute(
                    "INSERT INTO docs_fts (rowid, title, text) VALUES (?, ?, ?)",
                    (rowid, doc.title, doc.text),
                )
                self._db.execute(
                    "INSERT INTO titles_fts (rowid, title) VALUES (?, ?)", (rowid, doc.title)
                )
                count += 1
        return count

    def delete(self, ids: Iterable[str]) -> int:
        """Remove the articles ``ids`` in one transaction; returns how many were indexed. A busy
        or failing database raises :class:`TransientError` with nothing removed."""
        try:
            return self._delete(ids)
        except sqlite3.Error as exc:
            raise TransientError(f"keyword index {self.path}: {exc}") from exc

    def _delete(self, ids: Iterable[str]) -> int:
        count = 0
        with self._lock, self._db:
            for ident in ids:
                row = self._db.execute("SELECT rowid FROM docs WHERE id = ?", (ident,)).fetchone()
                if row is None:
                    continue
                self._db.execute("DELETE FROM docs_fts WHERE rowid = ?", (row[0],))
                self._db.execute("DELETE FROM titles_fts WHERE rowid = ?", (row[0],))
                self._db.execute("DELETE FROM docs WHERE rowid = ?", (row[0],))
                count += 1
        return count

    def search(
        self,
        query: str,
        *,
        limit: int,
        filters: Filters | None = None,
        titles_only: bool = False,
    ) -> list[tuple[str, float]]:
        """The ``limit`` best (id, score) pairs for ``query`` under ``filters``, best first;
        with ``titles_only``, matched and ranked on the titles alone."""
        match = match_expression(query)
        if match is None or limit <= 0:
            return []
        table, weights = ("titles_fts", "") if titles_only else ("docs_fts", ", ?, 1.0")
        weight = () if titles_only else (TITLE_WEIGHT,)
        clauses, params = _filter_sql(filters) if filters is not None else ([], [])
        try:
            reader = self._reader()
            if not clauses:
                # Without filters the ranking needs no join: only the best rows are named.
                ranked = reader.execute(
                    f"SELECT rowid, bm25({table}{weights}) AS score FROM {table}"
                    f" WHERE {table} MATCH ? ORDER BY score LIMIT ?",
                    (*weight, match, limit),
                ).fetchall()
                names = dict(
                    reader.execute(
                        "SELECT rowid, id FROM docs WHERE rowid IN"
                        f" ({', '.join('?' for _ in ranked)})",
                        [rowid for rowid, _ in ranked],
                    ).fetchall()
                )
                rows = [(names[rowid], score) for rowid, score in ranked if rowid in names]
            else:
                rows = reader.execute(
                    f"SELECT docs.id, bm25({table}{weights}) AS score FROM {table}"
                    f" JOIN docs ON docs.rowid = {table}.rowid WHERE {table} MATCH ?"
                    + "".join(f" AND {clause}" for clause in clauses)
                    + " ORDER BY score LIMIT ?",
                    (*weight, match, *params, limit),
                ).fetchall()
        except sqlite3.Error as exc:  # busy, locked or damaged: the API answers 503
            raise TransientError(f"keyword index {self.path}: {exc}") from exc
        # FTS5's bm25() is lower-is-better (negative); flip it so higher is better.
        return [(str(ident), -float(score)) for ident, score in rows]

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._readers, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._readers.connection = connection
            with self._lock:
                self._reader_connections.append(connection)
        return connection

    def contains(self, article_id: str) -> bool:
        """Whether the index holds the article ``article_id`` (``newsstream explain``)."""
        row = self._reader().execute("SELECT 1 FROM docs WHERE id = ?", (article_id,))
        return row.fetchone() is not None

    def count(self) -> int:
        """Articles in the index."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM docs").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
            self._db.close()


def _filter_sql(filters: Filters) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    for column, values in (("source", filters.sources), ("feed_id", filters.feeds)):
        if values:
            clauses.append(f"docs.{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
    if filters.language:
        clauses.append("docs.language = ?")
        params.append(filters.language)
    if filters.since is not None:
        clauses.append("docs.published_at >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("docs.published_at <= ?")
        params.append(filters.until)
    return clauses, params


def keyword_index_path(settings: Settings) -> Path:
    """Where the keyword index of the configured collection lives (one file per collection)."""
    return settings.data_dir / "keywords" / f"{settings.milvus_collection}.sqlite"


def doc_from_row(row: Mapping[str, Any]) -> KeywordDoc:
    """The keyword document of an articles-collection row (as the worker upserts it)."""
    return KeywordDoc(
        id=str(row["id"]),
        title=str(row.get("title") or ""),
        text=str(row.get("text") or ""),
        source=str(row.get("source") or ""),
        feed_id=str(row.get("feed_id") or ""),
        language=str(row.get("language") or ""),
        published_at=int(row.get("published_at") or 0),
    )


def fill_from_milvus(index: KeywordIndex, client: Any, collection: str, batch: int = 1000) -> int:
    """Index every row of ``collection`` when the index holds fewer ids than Milvus does (a new
    or lost index file beside an existing collection); returns the rows indexed (0 when the
    index was complete). ``client`` is a ``pymilvus.MilvusClient``."""
    total = client.query(
        collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
    )[0]["count(*)"]
    if index.count() >= int(total):
        return 0
    fields = ["id", "title", "text", "source", "feed_id", "language", "published_at"]
    done = 0
    for rows in row_pages(client, collection, fields, batch=batch):
        done += index.upsert(doc_from_row(row) for row in rows)
    return done
