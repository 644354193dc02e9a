"""The FastAPI application: routes, error shape, and the lifecycle of its Milvus connection.

Errors are JSON with one stable shape: ``{"error": {"code": str, "message": str}}`` with the
HTTP status (422 for invalid requests, 404 for unknown articles, 503 with ``Retry-After`` when
Milvus is unavailable). No stack trace is ever returned.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from core.embedding import Embedder
from core.errors import InvalidRequest, TransientError
from core.ids import is_article_id
from core.kafka import kafka_reachable
from core.metrics import SEARCH_REQUESTS, SEARCH_SECONDS, SearchMode
from core.milvus import ensure_collection, milvus_client
from core.settings import Settings
from search_api.filters import SearchFilters
from search_api.searcher import Hit, Searcher

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class SourceRef(BaseModel):
    source: str
    url: str


class SearchResult(BaseModel):
    id: str
    title: str
    snippet: str
    url: str
    source: str
    published_at: int | None
    score: float
    story_id: str
    also_reported_by: list[SourceRef] = Field(default_factory=list)


class SearchResponse(BaseModel):
    query: str
    mode: SearchMode
    results: list[SearchResult]
    next_cursor: str | None = None


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = int(json.loads(base64.urlsafe_b64decode(padded.encode()))["o"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InvalidRequest("cursor is not one this API gave out") from exc
    if not 0 <= offset <= 10_000:
        raise InvalidRequest("cursor is out of range")
    return offset


class Backend:
    """The API's lazily connected searcher; reconnects after Milvus comes back."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._searcher: Searcher | None = None
        self._lock = threading.Lock()

    def load_model(self) -> None:
        if self._embedder is None:
            self._embedder = Embedder(self.settings)

    def searcher(self) -> Searcher:
        """The connected searcher; raises :class:`TransientError` while Milvus is away."""
        with self._lock:
            if self._searcher is None:
                self.load_model()
                assert self._embedder is not None
                client = milvus_client(self.settings)
                ensure_collection(client, self.settings, self._embedder.dimension)
                self._searcher = Searcher(self.settings, client, self._embedder)
            return self._searcher


def create_app(settings: Settings, embedder: Embedder | None = None) -> FastAPI:
    """Build the API app for ``settings`` (the embedder may be shared, e.g. in tests)."""
    backend = Backend(settings, embedder)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        backend.load_model()
        try:
            backend.searcher()
        except TransientError as exc:
            log.warning("Milvus not ready at start (%s); /readyz will say so", exc)
        yield

    app = FastAPI(
        title="newsstream",
        version="0.1.0",
        summary="Semantic and hybrid search over a live news index.",
        lifespan=lifespan,
        responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    )
    app.state.backend = backend

    @app.exception_handler(InvalidRequest)
    async def _invalid(_request: Request, exc: InvalidRequest) -> JSONResponse:
        return _error(422, "invalid_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return _error(422, "invalid_request", f"{where}: {first.get('msg')}".strip(": "))

    @app.exception_handler(TransientError)
    async def _unavailable(_request: Request, exc: TransientError) -> JSONResponse:
        log.warning("dependency unavailable: %s", exc)
        return _error(
            503,
            "unavailable",
            "the search index is temporarily unavailable; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return (
            "<!doctype html><title>newsstream</title><h1>newsstream</h1><ul>"
            '<li><a href="/dashboard">dashboard</a></li><li><a href="/docs">API docs</a></li>'
            '<li><a href="/metrics">metrics</a></li></ul>'
        )

    @app.get("/healthz", summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: Kafka and Milvus reachable, collection loaded.")
    def readyz() -> JSONResponse:
        checks: dict[str, bool] = {}
        checks["kafka"] = bool(settings.kafka_bootstrap) and kafka_reachable(settings)
        try:
            checks["milvus"] = backend.searcher().ready()
        except TransientError:
            checks["milvus"] = False
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/search", response_model=SearchResponse, summary="Search the news index.")
    def search(
        q: Annotated[str, Query(description="The query text.", examples=["floods in Pakistan"])],
        k: Annotated[int, Query(ge=1, description="Results per page (at most api_max_k).")] = 10,
        mode: Annotated[
            SearchMode | None, Query(description="semantic, keyword or hybrid.")
        ] = None,
        source: Annotated[list[str] | None, Query(description="Publisher domains.")] = None,
        lang: Annotated[str | None, Query(max_length=16)] = None,
        feed: Annotated[list[str] | None, Query(description="Feed ids.")] = None,
        since: Annotated[
            int | None, Query(ge=0, description="Published at or after (epoch s).")
        ] = None,
        until: Annotated[
            int | None, Query(ge=0, description="Published at or before (epoch s).")
        ] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> SearchResponse:
        query = q.strip()
        if not query:
            raise InvalidRequest("q must contain text")
        if len(query) > settings.api_max_query_chars:
            raise InvalidRequest(f"q is longer than {settings.api_max_query_chars} characters")
        if k > settings.api_max_k:
            raise InvalidRequest(f"k must be at most {settings.api_max_k}")
        offset = decode_cursor(cursor) if cursor else 0
        searcher = backend.searcher()
        effective = searcher.effective_mode(mode)
        filters = SearchFilters(
            sources=tuple(source or ()),
            language=lang,
            feeds=tuple(feed or ()),
            since=since,
            until=until,
        )
        started = time.perf_counter()
        try:
            hits = searcher.search(query, k=k, mode=effective, filters=filters, offset=offset)
        except TransientError:
            SEARCH_REQUESTS.labels(effective, "5xx").inc()
            raise
        SEARCH_SECONDS.labels(effective).observe(time.perf_counter() - started)
        SEARCH_REQUESTS.labels(effective, "2xx").inc()
        next_cursor = encode_cursor(offset + k) if len(hits) == k else None
        return SearchResponse(
            query=query, mode=effective, results=[_result(h) for h in hits], next_cursor=next_cursor
        )

    @app.get(
        "/articles/{article_id}",
        summary="One stored article.",
        responses={404: {"model": ErrorResponse}},
    )
    def article(article_id: str) -> Any:
        if not is_article_id(article_id):
            return _error(404, "not_found", "no article with this id")
        row = backend.searcher().get(article_id)
        if row is None:
            return _error(404, "not_found", "no article with this id")
        return row

    return app


def _result(hit: Hit) -> SearchResult:
    return SearchResult(
        id=hit.id,
        title=hit.title,
        snippet=hit.snippet,
        url=hit.url,
        source=hit.source,
        published_at=hit.published_at,
        score=hit.score,
        story_id=hit.story_id,
        also_reported_by=[
            SourceRef(**a) for a in hit.also_reported_by if "source" in a and "url" in a
        ],
    )
