"""Search over the articles collection: semantic, keyword (BM25) and hybrid (RRF).

What goes in: a query text, ``k``, a mode and :class:`search_api.filters.SearchFilters`.
What comes out: :class:`search_api.results.SearchResult` rows, best first. Keyword and hybrid use the collection's BM25
field where Milvus has one (Milvus >= 2.5, Milvus Lite 3); on older servers (the PyPI ``milvus``
2.3 server) they use the FTS5 keyword index the workers keep in the data dir
(:mod:`store.keyword_index`), fused with the dense ranking by the same RRF formula
(:mod:`search_api.fusion`). With neither, both degrade to semantic and the result says which
mode ran. With Milvus BM25, hybrid fuses the dense ranking, the text BM25 ranking and, where
the collection has the title's BM25 field, its best headline match (see ``TITLE_CANDIDATES``).
Milvus errors become :class:`core.errors.TransientError` (the API answers 503).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pymilvus import AnnSearchRequest, MilvusClient, MilvusException, RRFRanker

from core.errors import TransientError
from core.metrics import SearchMode
from core.settings import Settings
from embedding.embedder import Embedder
from search_api.filters import SearchFilters, build_expression, quote
from search_api.fusion import rrf_fuse
from search_api.results import SearchResult
from store.aliases import is_missing_collection, keyword_path, resolve
from store.keyword_index import KeywordIndex
from store.row import decode_sources
from store.schema import (
    SPARSE_FIELD,
    TITLE_SPARSE_FIELD,
    VECTOR_FIELD,
    collection_has_bm25,
    collection_has_title_bm25,
)
from store.writer import ROUTING_REFRESH_S

T = TypeVar("T")

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
#: Candidates of the title's BM25 request in hybrid search: only the best headline match takes
#: part in the fusion, as one extra vote. A query that is (nearly) a headline then finds that
#: article first, while for other queries a single title-only candidate cannot push out the
#: articles both the dense and the text ranking agree on (`newsstream eval search`, 500 queries:
#: known-item MRR@10 0.946 -> 0.978 at category precision 0.895; 2 or 3 title candidates rank
#: worse on both).
TITLE_CANDIDATES = 1
#: Threads that run keyword-index rankings beside the dense search.
_KEYWORD_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyword-search")
#: Waits before retrying a read that found no collection: the first swap of an install whose
#: name was a real collection renames it, then creates the alias (two calls, milliseconds
#: apart; see :func:`store.aliases.swap`), and a read between them must not fail.
MISSING_RETRY_WAITS_S = (0.05, 0.1, 0.2, 0.4, 0.8)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of ``text`` cut at a word boundary."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + "…"


class Searcher:
    """Runs searches against one collection with one embedding model."""

    def __init__(
        self,
        settings: Settings,
        client: MilvusClient,
        embedder: Embedder,
        keywords: KeywordIndex | None = None,
    ) -> None:
        """``keywords`` serves keyword and hybrid search when the collection has no BM25
        field; when None, one is opened lazily from the data dir if settings allow it."""
        self._settings = settings
        self._client = client
        self._embedder = embedder
        self._collection = settings.milvus_collection
        self._bm25: bool | None = None
        self._title_bm25: bool | None = None
        self._keywords = keywords
        self._fixed_keywords = keywords is not None
        self._keyword_files: dict[str, KeywordIndex] = {}
        self._next_route = 0.0
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._embedder.model_name

    def milvus_bm25(self) -> bool:
        """Whether the collection has Milvus's own BM25 field (checked once, then cached)."""
        if self._bm25 is None:
            try:
                self._bm25 = collection_has_bm25(self._client, self._collection)
            except MilvusException as exc:
                raise TransientError(f"Milvus unavailable: {exc}") from exc
        return self._bm25

    def milvus_title_bm25(self) -> bool:
        """Whether the collection also has the title's BM25 field (collections created before
        it existed lack it; hybrid search then fuses dense and text BM25 only)."""
        if self._title_bm25 is None:
            try:
                self._title_bm25 = collection_has_title_bm25(self._client, self._collection)
            except MilvusException as exc:
                raise TransientError(f"Milvus unavailable: {exc}") from exc
        return self._title_bm25

    def keyword_index(self) -> KeywordIndex | None:
        """The FTS5 keyword index used when Milvus has no BM25 (None when Milvus has it, or
        when ``keyword_index`` is off): the one of the real collection the configured name
        serves, re-read every :data:`store.writer.ROUTING_REFRESH_S` seconds so a reindex's
        swap moves keyword search to the new collection's index too."""
        if self.milvus_bm25() or not self._settings.keyword_index:
            return None
        with self._lock:
            if not self._fixed_keywords and time.monotonic() >= self._next_route:
                try:
                    serving = resolve(self._client, self._collection)
                except MilvusException as exc:
                    if self._keywords is None:
                        raise TransientError(f"Milvus unavailable: {exc}") from exc
                else:  # an unreachable Milvus keeps the index in use until the next look
                    self._next_route = time.monotonic() + ROUTING_REFRESH_S
                    path = keyword_path(
                        self._settings.data_dir, serving.collection, serving.properties
                    )
                    if str(path) not in self._keyword_files:
                        self._keyword_files[str(path)] = KeywordIndex(path)
                    self._keywords = self._keyword_files[str(path)]
        return self._keywords

    def _retry_missing(self, read: Callable[[], T]) -> T:
        """``read()``, retried a few times over about 1.5 s while Milvus says the collection
        does not exist (see :data:`MISSING_RETRY_WAITS_S`)."""
        for wait in MISSING_RETRY_WAITS_S:
            try:
                return read()
            except (MilvusException, TransientError) as exc:
                cause = exc.__cause__ if isinstance(exc, TransientError) else exc
                if cause is None or not is_missing_collection(cause):
                    raise
                time.sleep(wait)
        return read()

    def has_bm25(self) -> bool:
        """Whether keyword and hybrid search are available (Milvus BM25 or the keyword index)."""
        return self.milvus_bm25() or self.keyword_index() is not None

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
    ) -> list[SearchResult]:
        """The top ``k`` hits after ``offset`` for ``query`` in ``mode`` (already effective)."""
        return self._retry_missing(
            lambda: self._search(query, k=k, mode=mode, filters=filters, offset=offset)
        )

    def _search(
        self,
        query: str,
        *,
        k: int,
        mode: SearchMode,
        filters: SearchFilters,
        offset: int,
    ) -> list[SearchResult]:
        expr = build_expression(filters)
        limit = k + offset
        keywords = self.keyword_index() if mode != SearchMode.SEMANTIC else None
        try:
            if keywords is not None:
                rows = self._search_with_keyword_index(keywords, query, mode, filters, expr, limit)
                return [self._hit(row) for row in rows[offset:limit]]
            if mode == SearchMode.KEYWORD:
                raw = self._client.search(
                    self._collection,
                    data=[query],
                    anns_field=SPARSE_FIELD,
                    limit=limit,
                    filter=expr,
                    output_fields=RESULT_FIELDS,
                    consistency_level=self._settings.milvus_search_consistency,
                )
            elif mode == SearchMode.SEMANTIC:
                raw = [self._dense(query, expr, limit)]
            else:
                raw = self._client.hybrid_search(
                    self._collection,
                    self._hybrid_requests(query, expr, limit),
                    ranker=RRFRanker(RRF_K),
                    limit=limit,
                    output_fields=RESULT_FIELDS,
                    consistency_level=self._settings.milvus_search_consistency,
                )
        except MilvusException as exc:
            raise TransientError(f"Milvus search failed: {exc}") from exc
        rows = list(raw[0]) if raw else []
        return [self._hit(row) for row in rows[offset:limit]]

    def _hybrid_requests(self, query: str, expr: str, limit: int) -> list[AnnSearchRequest]:
        """The rankings hybrid search fuses by RRF: dense and text BM25, each
        ``milvus_hybrid_candidates`` deep (at least ``2 * limit``), and the best title BM25
        match where the collection has that field."""
        depth = max(limit * 2, self._settings.milvus_hybrid_candidates)
        requests = [
            AnnSearchRequest(
                data=[self._embedder.embed([query])[0].tolist()],
                anns_field=VECTOR_FIELD,
                param=self._dense_params(depth, fused=True),
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
        if self.milvus_title_bm25():
            requests.append(
                AnnSearchRequest(
                    data=[query],
                    anns_field=TITLE_SPARSE_FIELD,
                    param={},
                    limit=TITLE_CANDIDATES,
                    expr=expr or None,
                )
            )
        return requests

    def _dense_params(self, limit: int, *, fused: bool = False) -> dict[str, Any]:
        """HNSW parameters for ``limit`` candidates: ef is ``milvus_search_ef`` (at least
        ``limit``) for semantic search; the dense leg of a hybrid search (``fused``) uses ef =
        its candidate depth (100 by default), the setting hybrid quality was measured with: the
        keyword rankings fused with it make up for what an approximate search misses."""
        ef = limit if fused else max(self._settings.milvus_search_ef, limit)
        return {"metric_type": "COSINE", "params": {"ef": ef}}

    def _dense(self, query: str, expr: str, limit: int, *, fused: bool = False) -> list[Any]:
        """Milvus rows nearest to the embedded ``query`` (best first)."""
        raw = self._client.search(
            self._collection,
            data=[self._embedder.embed([query])[0].tolist()],
            anns_field=VECTOR_FIELD,
            limit=limit,
            filter=expr,
            output_fields=RESULT_FIELDS,
            consistency_level=self._settings.milvus_search_consistency,
            search_params=self._dense_params(limit, fused=fused),
        )
        return list(raw[0]) if raw else []

    def _search_with_keyword_index(
        self,
        keywords: KeywordIndex,
        query: str,
        mode: SearchMode,
        filters: SearchFilters,
        expr: str,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Keyword (BM25 from the keyword index) or hybrid (dense from Milvus fused with it by
        RRF) rows, best first, each with its fused or BM25 score as ``distance``."""
        if mode == SearchMode.KEYWORD:
            ranked = keywords.search(query, limit=limit, filters=filters)
            by_id = self._rows_by_id([ident for ident, _ in ranked])
        else:
            # The same three rankings as the Milvus hybrid (see _hybrid_requests).
            depth = max(limit * 2, self._settings.milvus_hybrid_candidates)
            # The keyword rankings run in SQLite while this thread embeds and waits for Milvus;
            # the rows of the best keyword matches are fetched meanwhile too, as the fused page
            # mostly holds them (what it holds beyond them is fetched after the fusion).
            sparse_job = _KEYWORD_POOL.submit(
                self._keyword_rows, keywords, query, filters, depth, limit
            )
            title_job = _KEYWORD_POOL.submit(
                keywords.search, query, limit=TITLE_CANDIDATES, filters=filters, titles_only=True
            )
            dense = self._dense(query, expr, depth, fused=True)
            (sparse, by_id), title = sparse_job.result(), title_job.result()
            ranked = rrf_fuse(
                [
                    [str(row["id"]) for row in dense],
                    [ident for ident, _ in sparse],
                    [ident for ident, _ in title],
                ],
                k=RRF_K,
            )[:limit]
            by_id.update((str(row["id"]), dict(row.get("entity", row))) for row in dense)
            missing = [ident for ident, _ in ranked if ident not in by_id]
            by_id.update(self._rows_by_id(missing))
        return [
            {**by_id[ident], "id": ident, "distance": score}
            for ident, score in ranked
            if ident in by_id
        ]

    def _keyword_rows(
        self, keywords: KeywordIndex, query: str, filters: SearchFilters, depth: int, fetch: int
    ) -> tuple[list[tuple[str, float]], dict[str, dict[str, Any]]]:
        """The keyword ranking ``depth`` deep and the stored rows of its best ``fetch`` ids."""
        ranked = keywords.search(query, limit=depth, filters=filters)
        return ranked, self._rows_by_id([ident for ident, _ in ranked[:fetch]])

    def _rows_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of ``ids`` that exist, by id."""
        if not ids:
            return {}
        rows = self._client.get(
            self._collection,
            ids=ids,
            output_fields=RESULT_FIELDS,
            consistency_level=self._settings.milvus_search_consistency,
        )
        return {str(row["id"]): dict(row) for row in rows}

    def similar(self, article_id: str, *, k: int) -> list[SearchResult] | None:
        """The ``k`` articles nearest to a stored one (itself excluded); None when unknown."""
        try:
            rows = self._client.get(
                self._collection,
                ids=[article_id],
                output_fields=[VECTOR_FIELD],
                consistency_level=self._settings.milvus_search_consistency,
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
                consistency_level=self._settings.milvus_search_consistency,
                search_params={"metric_type": "COSINE", "params": {"ef": max(64, k + 1)}},
            )
        except MilvusException as exc:
            raise TransientError(f"Milvus search failed: {exc}") from exc
        return [self._hit(row) for row in (raw[0] if raw else [])][:k]

    def get(self, article_id: str) -> dict[str, Any] | None:
        """The stored article with ``article_id``, or None."""
        return self._retry_missing(lambda: self._get(article_id))

    def _get(self, article_id: str) -> dict[str, Any] | None:
        try:
            rows = self._client.get(
                self._collection,
                ids=[article_id],
                consistency_level=self._settings.milvus_search_consistency,
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
        if not rows:
            return None
        row = dict(rows[0])
        row["also_reported_by"] = decode_sources(row.get("also_reported_by"))
        return row

    def held(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` the collection holds now, read at Strong consistency (every
        acknowledged upsert and delete is seen), for ``GET /articles/{id}/explain``."""
        if not ids:
            return set()
        try:
            rows = self._client.get(
                self._collection, ids=ids, output_fields=["id"], consistency_level="Strong"
            )
        except MilvusException as exc:
            raise TransientError(f"Milvus unavailable: {exc}") from exc
        return {str(row["id"]) for row in rows}

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
    def _hit(row: Any) -> SearchResult:
        entity = row.get("entity", row)
        published = entity.get("published_at") or None
        return SearchResult(
            id=str(row.get("id", entity.get("id", ""))),
            title=entity.get("title", ""),
            snippet=snippet(entity.get("text", "")),
            url=entity.get("url", ""),
            source=entity.get("source", ""),
            published_at=int(published) if published else None,
            score=float(row.get("distance", 0.0)),
            story_id=entity.get("story_id", ""),
            also_reported_by=decode_sources(entity.get("also_reported_by")),
        )
