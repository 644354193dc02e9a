"""The FastAPI application: routes, error shape, and the lifecycle of its Milvus connection.

Errors are JSON with one stable shape for every status: ``{"error": {"code": str, "message":
str}}`` (:mod:`search_api.errors`: 422 for invalid requests, 404 for unknown articles and
routes, 405 for wrong methods, 503 with ``Retry-After`` when Milvus is unavailable, 500 for the
unexpected). No stack trace is ever returned. ``/docs`` and ``/redoc`` load their scripts from
this server (the files of the ``fastapi-offline`` package), never from a CDN.
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
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from pymilvus import MilvusClient

from core.errors import InvalidRequest, TransientError
from core.ids import is_article_id
from core.kafka import kafka_reachable
from core.metrics import SEARCH_REQUESTS, SEARCH_SECONDS, SearchMode
from core.settings import Settings
from core.status import read_status
from embedding.embedder import Embedder
from search_api.body_limit import BodyLimit
from search_api.dashboard import attach_dashboard
from search_api.docs import offline_docs_app
from search_api.errors import ErrorResponse, error_response, install_error_handlers
from search_api.events import SearchEvents
from search_api.filters import SearchFilters
from search_api.ranking import apply_recency, collapse_stories
from search_api.searcher import Hit, Searcher
from search_api.security import (
    KeyRing,
    RateLimiter,
    Role,
    is_open_path,
    presented_key,
    require_keys_beyond_loopback,
)
from search_api.stats_view import stats_response
from search_api.stories import StoryStore, attach_stories
from search_api.trends_view import TREND_WINDOWS, trends_response
from store.client import milvus_client
from store.schema import ensure_collection

log = logging.getLogger(__name__)


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
    story_url: str = Field(description="The story's timeline: /stories/<story id>.")


class SearchResponse(BaseModel):
    query: str
    mode: SearchMode
    results: list[SearchResult]
    next_cursor: str | None = None


class SearchRequest(BaseModel):
    """The body of ``POST /search`` (the same fields as the query string of ``GET``)."""

    model_config = {
        "json_schema_extra": {
            "examples": [{"q": "floods in Pakistan", "k": 5, "mode": "hybrid", "lang": "en"}]
        }
    }

    q: str = Field(description="The query text.")
    k: int = Field(10, ge=1, description="Results per page (at most api_max_k).")
    mode: SearchMode | None = None
    source: list[str] = Field(default_factory=list, description="Publisher domains.")
    lang: str | None = Field(None, max_length=16)
    feed: list[str] = Field(default_factory=list, description="Feed ids.")
    since: int | None = Field(None, ge=0, description="Published at or after (epoch s).")
    until: int | None = Field(None, ge=0, description="Published at or before (epoch s).")
    collapse: bool = Field(True, description="One result per story.")
    recency: float | None = Field(
        None,
        gt=0,
        le=24 * 365,
        description="Half-life in hours of a freshness boost; off if unset.",
    )
    cursor: str | None = Field(None, max_length=200)


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
        self._client: MilvusClient | None = None
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
                self._client = client
            return self._searcher

    def stories(self) -> StoryStore:
        """Story reads and edits on the same connection; raises :class:`TransientError` while
        Milvus is away."""
        searcher = self.searcher()
        assert self._client is not None
        return StoryStore(self._client, self.settings, has_bm25=searcher.milvus_bm25())


def create_app(settings: Settings, embedder: Embedder | None = None) -> FastAPI:
    """Build the API app for ``settings`` (the embedder may be shared, e.g. in tests).

    Raises :class:`core.errors.ConfigurationError` when ``settings`` would expose the API
    beyond loopback without API keys.
    """
    require_keys_beyond_loopback(settings)
    backend = Backend(settings, embedder)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        backend.load_model()
        try:
            backend.searcher()
        except TransientError as exc:
            log.warning("Milvus not ready at start (%s); /readyz will say so", exc)
        yield
        events.close()

    app = offline_docs_app(
        title="newsstream",
        version="0.1.0",
        summary="Semantic and hybrid search over a live news index.",
        lifespan=lifespan,
        # Every route may answer these (in the one error shape).
        responses={status: {"model": ErrorResponse} for status in (401, 413, 422, 429, 500, 503)},
    )
    app.state.backend = backend
    install_error_handlers(app)
    attach_dashboard(app, settings)
    events = SearchEvents(settings)
    keys = KeyRing(settings)
    limiter = RateLimiter(settings.api_rate_limit_per_minute)
    if settings.api_cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )

    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        """Body size cap, API keys and rate limits, before any route runs."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > settings.api_max_body_bytes:
            return error_response(413, f"request body over {settings.api_max_body_bytes} bytes")
        path = request.url.path
        open_path = is_open_path(path)
        key = presented_key({k.lower(): v for k, v in request.headers.items()})
        if keys.enabled and not open_path:
            role = keys.role(key)
            if role is Role.NONE:
                return error_response(401, "a valid API key is required (X-API-Key)")
            if (
                request.method not in ("GET", "HEAD", "OPTIONS")
                and path != "/search"
                and role is not Role.ADMIN
            ):
                return error_response(403, "this route needs an admin key")
        if not open_path:
            caller = (
                f"key:{key}"
                if key and keys.enabled
                else f"ip:{request.client.host if request.client else '?'}"
            )
            wait = limiter.check(caller)
            if wait > 0:
                return error_response(
                    429,
                    "too many requests; slow down",
                    headers={"Retry-After": str(max(1, int(wait + 0.999)))},
                )
        return await call_next(request)

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

    def run_search(request: SearchRequest) -> SearchResponse:
        query = request.q.strip()
        if not query:
            raise InvalidRequest("q must contain text")
        if len(query) > settings.api_max_query_chars:
            raise InvalidRequest(f"q is longer than {settings.api_max_query_chars} characters")
        if request.k > settings.api_max_k:
            raise InvalidRequest(f"k must be at most {settings.api_max_k}")
        offset = decode_cursor(request.cursor) if request.cursor else 0
        searcher = backend.searcher()
        effective = searcher.effective_mode(request.mode)
        filters = SearchFilters(
            sources=tuple(request.source),
            language=request.lang,
            feeds=tuple(request.feed),
            since=request.since,
            until=request.until,
        )
        # Collapsing and the recency boost re-rank a deeper candidate list, then cut the page.
        shaping = request.collapse or request.recency is not None
        depth = min(settings.api_max_k * 3, (offset + request.k) * 3) if shaping else request.k
        started = time.perf_counter()
        try:
            hits = searcher.search(
                query,
                k=depth if shaping else request.k,
                mode=effective,
                filters=filters,
                offset=0 if shaping else offset,
            )
        except TransientError:
            SEARCH_REQUESTS.labels(effective, "5xx").inc()
            raise
        if request.recency is not None:
            hits = apply_recency(hits, request.recency * 3600)
        if request.collapse:
            hits = collapse_stories(hits)
        if shaping:
            hits = hits[offset : offset + request.k]
        latency = time.perf_counter() - started
        SEARCH_SECONDS.labels(effective).observe(latency)
        SEARCH_REQUESTS.labels(effective, "2xx").inc()
        events.emit(query, effective, filters, hits, latency)
        next_cursor = encode_cursor(offset + request.k) if len(hits) == request.k else None
        return SearchResponse(
            query=query, mode=effective, results=[_result(h) for h in hits], next_cursor=next_cursor
        )

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
        collapse: Annotated[bool, Query(description="One result per story.")] = True,
        recency: Annotated[
            float | None, Query(gt=0, le=24 * 365, description="Freshness half-life in hours.")
        ] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> SearchResponse:
        return run_search(
            SearchRequest(
                q=q,
                k=k,
                mode=mode,
                source=source or [],
                lang=lang,
                feed=feed or [],
                since=since,
                until=until,
                collapse=collapse,
                recency=recency,
                cursor=cursor,
            )
        )

    @app.post("/search", response_model=SearchResponse, summary="Search with a JSON body.")
    def search_post(request: SearchRequest) -> SearchResponse:
        return run_search(request)

    @app.get(
        "/articles/{article_id}/similar",
        response_model=SearchResponse,
        summary="Articles most similar to a stored one.",
        responses={404: {"model": ErrorResponse}},
    )
    def similar(
        article_id: str, k: Annotated[int, Query(ge=1, le=100)] = 10
    ) -> SearchResponse | JSONResponse:
        if not is_article_id(article_id):
            return error_response(404, "no article with this id")
        hits = backend.searcher().similar(article_id, k=k)
        if hits is None:
            return error_response(404, "no article with this id")
        return SearchResponse(
            query=article_id, mode=SearchMode.SEMANTIC, results=[_result(h) for h in hits]
        )

    @app.get("/stats", summary="Ingestion outcomes per worker and in total.")
    def stats() -> dict[str, Any]:
        return stats_response(read_status(settings, "worker"))

    # Only an admin key passes the guard to a story edit when keys are configured; without
    # keys the API listens on loopback only (require_keys_beyond_loopback).
    attach_stories(
        app,
        settings,
        backend.stories,
        lambda _request: "admin key" if keys.enabled else "loopback",
    )

    @app.get("/trends", summary="Top and rising queries and top stories over the last hour or day.")
    def trends(
        window: Annotated[
            str, Query(description="1h or 24h.", examples=list(TREND_WINDOWS))
        ] = "1h",
    ) -> dict[str, Any]:
        return trends_response(settings, window)

    @app.get("/feeds", summary="Status of each feed, as the producer last reported it.")
    def feeds() -> dict[str, Any]:
        statuses = read_status(settings, "feed")
        items = sorted(statuses.values(), key=lambda f: str(f.get("url", "")))
        return {
            "feeds": items,
            "count": len(items),
            "broken": sum(1 for f in items if f.get("error_streak")),
        }

    @app.get(
        "/articles/{article_id}",
        summary="One stored article.",
        responses={404: {"model": ErrorResponse}},
    )
    def article(article_id: str) -> Any:
        if not is_article_id(article_id):
            return error_response(404, "no article with this id")
        row = backend.searcher().get(article_id)
        if row is None:
            return error_response(404, "no article with this id")
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
        story_url=f"/stories/{hit.story_id or hit.id}",
    )
