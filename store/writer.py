"""The one write path of article rows: Milvus, plus the keyword index where Milvus has no BM25.

What goes in: :class:`store.row.ArticleRow` values (the worker and every change of stored rows;
the benchmarks' bulk fills also pass dicts of every schema field, as
:meth:`ArticleRow.to_milvus` makes them), or a partial change of stored rows
(:meth:`ArticleWriter.update` and the changes built on it). What comes out: the upsert count
Milvus acknowledged. Guaranteed:

- when Milvus acknowledged every row and the collection has no BM25 field, the same rows are in
  the keyword index before ``upsert`` returns (a keyword-index failure raises
  :class:`core.errors.TransientError`; retrying the whole call is safe because both writes are
  upserts);
- a partial change rewrites whole rows (Milvus has no partial update that every server
  supports): it reads the latest stored rows (Strong), vector included, changes only what it
  names, leaves out the fields Milvus computes (BM25 outputs), upserts the rows that changed
  and raises :class:`core.errors.TransientError` when Milvus acknowledges fewer of them.
  Repeating a change gives the same rows;
- a delete (:meth:`ArticleWriter.delete`) has left Milvus, the keyword index and the
  ``also_reported_by`` lists of other rows when it returns; deleting an id that is not there is
  a no-op, and repeating a delete is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from pymilvus import MilvusClient

from core.errors import TransientError
from core.settings import Settings
from store.fingerprint import ModelStamp
from store.keyword_index import KeywordIndex, doc_from_row, fill_from_milvus, keyword_index_path
from store.row import ArticleRow, OtherSource, listing_any
from store.schema import VECTOR_FIELD, ensure_collection

log = logging.getLogger(__name__)


class ArticleWriter:
    """Writes article rows to ``settings.milvus_collection`` through ``client``."""

    def __init__(self, client: MilvusClient, settings: Settings, *, has_bm25: bool) -> None:
        self._client = client
        self._collection = settings.milvus_collection
        self.keywords: KeywordIndex | None = None
        if settings.keyword_index and not has_bm25:
            self.keywords = KeywordIndex(keyword_index_path(settings))

    @classmethod
    def open(
        cls,
        client: MilvusClient,
        settings: Settings,
        dim: int,
        fingerprint: ModelStamp | None = None,
    ) -> ArticleWriter:
        """Ensure the collection exists for the model (see
        :func:`store.schema.ensure_collection`), then a writer for it."""
        has_bm25 = ensure_collection(client, settings, dim, fingerprint)
        return cls(client, settings, has_bm25=has_bm25)

    @classmethod
    def fresh(
        cls,
        client: MilvusClient,
        settings: Settings,
        dim: int,
        fingerprint: ModelStamp | None = None,
    ) -> ArticleWriter:
        """A writer for an empty collection: the collection and its keyword index are dropped
        first (benchmarks and evaluations, never the service)."""
        if client.has_collection(settings.milvus_collection):
            client.drop_collection(settings.milvus_collection)
        keyword_index_path(settings).unlink(missing_ok=True)
        return cls.open(client, settings, dim, fingerprint)

    def catch_up(self) -> int:
        """Index rows Milvus has and the keyword index lacks (a new or lost index file);
        returns how many (0 without a keyword index or when it is complete)."""
        if self.keywords is None:
            return 0
        filled = fill_from_milvus(self.keywords, self._client, self._collection)
        if filled:
            log.info("keyword index: indexed %d rows already in Milvus", filled)
        return filled

    def upsert(self, rows: Sequence[ArticleRow | Mapping[str, Any]]) -> int:
        """Upsert ``rows``; returns the count Milvus acknowledged (see the module docstring).

        A dict (the benchmarks' bulk fills) must hold every schema field, as
        :meth:`ArticleRow.to_milvus` makes them.
        """
        entities = [row.to_milvus() if isinstance(row, ArticleRow) else row for row in rows]
        count = int(self._client.upsert(self._collection, entities)["upsert_count"])
        if self.keywords is not None and count == len(entities):
            self.keywords.upsert(doc_from_row(entity) for entity in entities)
        return count

    def update(self, ids: Collection[str], change: Callable[[ArticleRow], ArticleRow]) -> int:
        """Apply ``change`` to the stored rows of ``ids`` and write those it changed; returns
        how many were rewritten. Ids with no stored row are skipped (an article that left the
        collection is not brought back). Raises :class:`TransientError` when Milvus acknowledges
        fewer rows than were changed, and what pymilvus raises when Milvus is away."""
        if not ids:
            return 0
        # Strong: a row may have been upserted a moment ago (by this worker, in this batch, or
        # by another process), and a server serves Bounded reads a little behind the writes.
        stored = self._client.get(
            self._collection,
            ids=list(ids),
            output_fields=["*", VECTOR_FIELD],
            consistency_level="Strong",
        )
        changed: list[ArticleRow] = []
        for entity in stored:
            row = ArticleRow.from_milvus(entity)
            new = change(row)
            if new != row:
                changed.append(new)
        if not changed:
            return 0
        written = self.upsert(changed)
        if written != len(changed):
            raise TransientError(f"Milvus acknowledged {written} of {len(changed)} changed rows")
        return written

    def set_story(self, ids: Collection[str], story_id: str) -> int:
        """Move the stored articles ``ids`` into story ``story_id``; returns how many moved
        (those already in it are left alone). See :meth:`update` for errors."""
        return self.update(ids, lambda row: row.with_changes(story_id=story_id))

    def add_sources(self, sources: Mapping[str, Sequence[OtherSource]]) -> int:
        """Add other outlets to stored articles' ``also_reported_by`` (article id -> outlets,
        merged as :meth:`ArticleRow.with_sources` does); returns how many rows changed. See
        :meth:`update` for errors."""
        return self.update(sources.keys(), lambda row: row.with_sources(sources[row.id]))

    def delete(self, ids: Collection[str]) -> int:
        """Remove the articles ``ids``: their rows from Milvus, then from the keyword index,
        then their entries from the ``also_reported_by`` of the rows that list them (found
        with a Strong query of the ids kept in that field). Returns how many other rows were
        rewritten. Raises :class:`TransientError` (keyword index busy, short count of a
        rewrite) and what pymilvus raises when Milvus is away; the whole call may be
        repeated."""
        if not ids:
            return 0
        gone = set(ids)
        self._client.delete(self._collection, ids=sorted(gone))
        if self.keywords is not None:
            self.keywords.delete(gone)
        listing = self._client.query(
            self._collection,
            filter=listing_any(sorted(gone)),
            output_fields=["id"],
            consistency_level="Strong",
        )
        others = {str(row["id"]) for row in listing} - gone
        return self.update(others, lambda row: row.without_sources(gone))
