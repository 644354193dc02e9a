"""The one write path of article rows: Milvus, plus the keyword index where Milvus has no BM25.

What goes in: rows of the articles collection (as the worker builds them). What comes out: the
upsert count Milvus acknowledged. Guaranteed: when Milvus acknowledged every row and the
collection has no BM25 field, the same rows are in the keyword index before ``upsert`` returns
(a keyword-index failure raises :class:`core.errors.TransientError`; retrying the whole call is
safe because both writes are upserts).
"""

from __future__ import annotations

import logging
from typing import Any

from pymilvus import MilvusClient

from core.keyword_index import KeywordIndex, doc_from_row, fill_from_milvus, keyword_index_path
from core.milvus import ensure_collection
from core.settings import Settings

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
    def open(cls, client: MilvusClient, settings: Settings, dim: int) -> ArticleWriter:
        """Ensure the collection exists (see :func:`core.milvus.ensure_collection`), then a
        writer for it."""
        return cls(client, settings, has_bm25=ensure_collection(client, settings, dim))

    @classmethod
    def fresh(cls, client: MilvusClient, settings: Settings, dim: int) -> ArticleWriter:
        """A writer for an empty collection: the collection and its keyword index are dropped
        first (benchmarks and evaluations, never the service)."""
        if client.has_collection(settings.milvus_collection):
            client.drop_collection(settings.milvus_collection)
        keyword_index_path(settings).unlink(missing_ok=True)
        return cls.open(client, settings, dim)

    def catch_up(self) -> int:
        """Index rows Milvus has and the keyword index lacks (a new or lost index file);
        returns how many (0 without a keyword index or when it is complete)."""
        if self.keywords is None:
            return 0
        filled = fill_from_milvus(self.keywords, self._client, self._collection)
        if filled:
            log.info("keyword index: indexed %d rows already in Milvus", filled)
        return filled

    def upsert(self, rows: list[dict[str, Any]]) -> int:
        """Upsert ``rows``; returns the count Milvus acknowledged (see the module docstring)."""
        count = int(self._client.upsert(self._collection, rows)["upsert_count"])
        if self.keywords is not None and count == len(rows):
            self.keywords.upsert(doc_from_row(row) for row in rows)
        return count
