"""Search routes: ``GET /search``, ``POST /search`` and ``GET /articles/{id}/similar``.

What goes in: a query with its filters, page size, mode, story collapsing, recency boost and
cursor (the query string of ``GET``, the JSON body of ``POST``: the same fields), or a stored
article's id. What comes out: a :class:`search_api.results.SearchResponse`. Guarantees: the
query length, ``k`` and the cursor are checked before Milvus is asked (422 otherwise); the mode
that actually ran is the one reported; a page is full (``k`` results) exactly when it carries a
``next_cursor``; each answered search is counted and timed in the search metrics and emitted as
a search event (a 503 is counted, not emitted).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.errors import InvalidRequest, TransientError
from core.ids import is_article_id
from core.metrics import SEARCH_REQUESTS, SEARCH_SECONDS, SearchMode
from core.settings import Settings
from search_api.backend import Backend
from search_api.errors import ErrorResponse, error_response
from search_api.events import SearchEvents
from search_api.filters import SearchFilters
from search_api.ranking import apply_recency, collapse_stories
from search_api.results import SearchResponse

#: Deepest result a cursor may point at.
MAX_CURSOR_OFFSET = 10_000


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
    """The opaque cursor of the page that starts ``offset`` results deep."""
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The offset of a cursor :func:`encode_cursor` gave out; :class:`InvalidRequest` for any
    other text or an offset beyond :data:`MAX_CURSOR_OFFSET`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = int(json.loads(base64.urlsafe_b64decode(padded.encode()))["o"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InvalidRequest("cursor is not one this API gave out") from exc
    if not 0 <= offset <= MAX_CURSOR_OFFSET:
        raise InvalidRequest("cursor is out of range")
    return offset


def run_search(
    request: SearchRequest, settings: Settings, backend: Backend, events: SearchEvents
) -> SearchResponse:
    """Answer one search: check it, retrieve, shape (recency, collapse), page, record."""
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
    return SearchResponse(query=query, mode=effective, results=hits, next_cursor=next_cursor)


def attach_search(app: FastAPI, settings: Settings, backend: Backend, events: SearchEvents) -> None:
    """Add the search routes to ``app`` (on the app itself: see :mod:`search_api.app`)."""

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
        request = SearchRequest(
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
        return run_search(request, settings, backend, events)

    @app.post("/search", response_model=SearchResponse, summary="Search with a JSON body.")
    def search_post(request: SearchRequest) -> SearchResponse:
        return run_search(request, settings, backend, events)

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
        return SearchResponse(query=article_id, mode=SearchMode.SEMANTIC, results=hits)
