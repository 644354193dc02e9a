"""Search over the articles collection: semantic, keyword (BM25) and hybrid (RRF).

What goes in: a query text, ``k``, a mode and :class:`search_api.filters.SearchFilters`.
What comes out: :class:`Hit` rows, best first. Hybrid and keyword need the collection's BM25
field; where the server lacks it, both degrade to semantic and the result says which mode ran.
Milvus errors become :class:`core.errors.TransientError` (the API answers 503).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from pymilvus import AnnSearchRequest, MilvusClient, MilvusException, RRFRanker

from core.embedding import Embedder
from core.errors import TransientError
from core.metrics import SearchMode
from core.milvus import SPARSE_FIELD, VECTOR_FIELD, collection_has_bm25
from core.settings import Settings
from search_api.filters import SearchFilters, build_expression, quote

log = logging.getLogger(__name__)

SNIPPET_CHARS = 280
RESULT_FIELDS = [
    "id",
    "title",
    "text",
    "url",
    "source",
    "published_at",
    "story_id",
    "also_reported_by",
]
RRF_K = 60


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: str
    title: str
    snippet: str
    url: str
    source: str
    published_at: int | None
    score: float
    story_id: str
    also_reported_by: list[dict[str, str]] = field(default_factory=list)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of ``text`` cut at a word boundary."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + "…"


class Searcher:
    """Runs searches against one collection with one embedding model."""

    def __init__(self, settings: Settings, client: MilvusClient, embedder: Embedder) -> None:
        self._settings = settings
        self._client = client
        self._embedder = embedder
        self._collection = settings.milvus_collection
        self._bm25: bool | None = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._embedder.model_name

    def has_bm25(self) -> bool:
        """Whether keyword and hybrid search are available (checked once, then cached)."""
        if self._bm25 is None:
            try:
                self._bm25 = collection_has_bm25(self._client, self._collection)
            except MilvusException as exc:
                raise TransientError(f"Milvus unavailable: {exc}") from exc
        return self._bm25

    def default_mode(self) -> SearchMode:
        return SearchMode.HYBRID if self.has_bm25() else SearchMode.SEMANTIC

    def effective_mode(self, requested: SearchMode | None) -> SearchMode:
        """The mode that will run for ``requested`` on this collection."""
        mode = requested or self.default_mode()
        if mode != SearchMode.SEMANTIC and not self.has_bm25():
            return SearchMode.SEMANTIC
        return mode

    def search(
        self,
        query: str,
        *,
        k: int,
        mode: SearchMode,
        filters: SearchFilters,
        offset: int = 0,
    ) -> list[Hit]:
        """The top ``k`` hits after ``offset`` for ``query`` in ``mode`` (already effective)."""
        expr = build_expression(filters)
        limit = k + offset
        try:
            if mode == SearchMode.KEYWORD:
                raw = self._client.search(
                    self._collection,
                    data=[query],
                    anns_field=SPARSE_FIELD,
                    limit=limit,
                    filter=expr,
                    output_fields=RESULT_FIELDS,
                )
            else:
                vector = self._embedder.embed([query])[0].tolist()
                dense_params = {
                    "metric_type": "COSINE",
                    "params": {"ef": max(self._settings.milvus_search_ef, limit)},
                }
                if mode == SearchMode.SEMANTIC:
                    raw = self._client.search(
                        self._collection,
                        data=[vector],
                        anns_field=VECTOR_FIELD,
                        limit=limit,
                        filter=expr,
                        output_fields=RESULT_FIELDS,
                        search_params=dense_params,
                    )
                else:
                    depth = max(limit * 2, 20)
                    requests = [
                        AnnSearchRequest(
                            data=[vector],
                            anns_field=VECTOR_FIELD,
                            param=dense_params,
                            limit=depth,
                            expr=expr or None,
                        ),
                        AnnSearchRequest(
                            data=[query],
                            anns_field=SPARSE_FIELD,
                            param={},
                            limit=depth,
                            expr=expr or None,
                        ),
                    ]
                    raw = self._client.hybrid_search(
                        self._collection,
                        requests,
                        ranker=RRFRanker(RRF_K),
                        limit=limit,
                        output_fields=RESULT_FIELDS,
                    )
        except MilvusException as exc:
            raise TransientError(f"Milvus search failed: {exc}") from exc
        rows = list(raw[0]) if raw else []
        return [self._hit(row) for row in rows[offset:limit]]

    def similar(self, article_id: str, *, k: int) -> list[Hit] | None:
        """The ``k`` articles nearest to a stored one (itself excluded); None when unknown."""
        try:
            rows = self._client.get(
                self._collection, ids=[article_id], output_fields=[VECTOR_FIELD]
            )
            if not rows:
                return None
            vector = [float(x) for x in rows[0][VECTOR_FIELD]]
            raw = self._client.search(
                self._collection,
                data=[vector],
                anns_field=VECTOR_FIELD,
                limit=k + 1,
                filter=f"id != {quote(article_id)}",
                output_fields=RESULT_FIELDS,
                search_params={"metric_type": "COSINE", "params": {"ef": max(64, k + 1)}},
            )
        except MilvusException as exc:
            raise TransientError(f"Milvus search failed: {exc}") from exc
        return [self._hit(row) for row in (raw[0] if raw else [])][:k]

    def get(self, article_id: str) -> dict[str, Any] | None:
        """The stored article with ``article_id``, or None."""
        try:
            rows = self._client.get(
                self._collection,
                ids=[article_id],
                output_fields=[
                    *RESULT_FIELDS,
                    "feed_id",
                    "language",
                    "ingested_at",
                    "model",
                    "content_hash",
                ],
            )
        except MilvusException as exc:
            raise TransientError(f"Milvus unavailable: {exc}") from exc
        return dict(rows[0]) if rows else None

    def count(self) -> int:
        """Rows in the collection at Strong consistency."""
        try:
            result = self._client.query(
                self._collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
            )
        except MilvusException as exc:
            raise TransientError(f"Milvus unavailable: {exc}") from exc
        return int(result[0]["count(*)"])

    def ready(self) -> bool:
        """True when Milvus answers and the collection is loaded."""
        try:
            state = self._client.get_load_state(self._collection)
        except MilvusException:
            return False
        return "Loaded" in str(state.get("state", ""))

    @staticmethod
    def _hit(row: Any) -> Hit:
        entity = row.get("entity", row)
        published = entity.get("published_at") or None
        also = entity.get("also_reported_by") or []
        return Hit(
            id=str(row.get("id", entity.get("id", ""))),
            title=entity.get("title", ""),
            snippet=snippet(entity.get("text", "")),
            url=entity.get("url", ""),
            source=entity.get("source", ""),
            published_at=int(published) if published else None,
            score=float(row.get("distance", 0.0)),
            story_id=entity.get("story_id", ""),
            also_reported_by=[a for a in also if isinstance(a, dict)],
        )
