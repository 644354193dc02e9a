"""The FastAPI application: the routers composed, the guard in front of them, the error shape,
and the lifecycle of its Milvus connection.

Routes, one module per concern, each added by an ``attach_*`` function on the app itself:
search (:mod:`search_api.search_routes`), articles and their admin delete
(:mod:`search_api.article_routes`), stats, feeds and trends (:mod:`search_api.stats_routes`),
stories and their admin edits (:mod:`search_api.stories`), the audit of admin actions
(:mod:`search_api.admin_routes`), the dashboard (:mod:`search_api.dashboard`), health and
metrics (:mod:`search_api.health_routes`). What the admin routes write to Kafka goes through one
producer (:class:`search_api.acked_producer.AckedProducer`) that waits for each acknowledgement. Not ``include_router``: with this FastAPI an included router
stands in the app's route table as one opaque entry, so the 405 answers' ``Allow`` header
(which reads that table) would not see its routes.

Errors are JSON with one stable shape for every status: ``{"error": {"code": str, "message":
str}}`` (:mod:`search_api.errors`: 422 for invalid requests, 404 for unknown articles and
routes, 405 for wrong methods, 503 with ``Retry-After`` when Milvus is unavailable, 500 for the
unexpected). No stack trace is ever returned. ``/docs`` and ``/redoc`` load their scripts from
this server (the files of the ``fastapi-offline`` package), never from a CDN.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from core.errors import TransientError
from core.settings import Settings
from embedding.embedder import Embedder
from search_api.acked_producer import AckedProducer, RecordSink
from search_api.admin_routes import AdminActions, attach_admin
from search_api.article_routes import attach_articles
from search_api.audit import AuditLog
from search_api.backend import Backend
from search_api.body_limit import BodyLimit
from search_api.dashboard import attach_dashboard
from search_api.docs import offline_docs_app
from search_api.errors import ErrorResponse, error_response, install_error_handlers
from search_api.events import SearchEvents
from search_api.health_routes import attach_health
from search_api.rate_limits import rate_limiter
from search_api.reindex_routes import attach_reindex
from search_api.search_routes import attach_search
from search_api.security import (
    KeyRing,
    Role,
    caller_identity,
    is_open_path,
    needs_admin,
    presented_key,
    require_keys_beyond_loopback,
)
from search_api.stats_routes import attach_stats
from search_api.stories import attach_stories

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    embedder: Embedder | None = None,
    *,
    backend: Backend | None = None,
    sink: RecordSink | None = None,
    admin: AdminActions | None = None,
) -> FastAPI:
    """Build the API app for ``settings``. The embedder may be shared (e.g. in tests); a
    ``backend`` (the index) and a ``sink`` (what the admin routes send to Kafka) may be given
    in place of the ones made from the settings; ``admin`` (the feed registry and DLQ actions,
    made by the composition root: ``newsstream serve``) adds the ``/admin/feeds`` and
    ``/admin/dlq`` routes.

    Raises :class:`core.errors.ConfigurationError` when ``settings`` would expose the API
    beyond loopback without API keys.
    """
    require_keys_beyond_loopback(settings)
    backend = backend or Backend(settings, embedder)
    producer: AckedProducer | None = None  # the app closes only a producer it made itself
    if sink is None:
        sink = producer = AckedProducer(settings)
    audit = AuditLog(settings, sink)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        backend.load_model()
        try:
            backend.searcher()
        except TransientError as exc:
            log.warning("Milvus not ready at start (%s); /readyz will say so", exc)
        yield
        events.close()
        if producer is not None:
            producer.close()

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
    limiter = rate_limiter(settings)
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
            if role is not Role.ADMIN and needs_admin(request.method, path):
                return error_response(403, "this route needs an admin key")
        if not open_path:
            caller = (
                f"key:{key}"
                if key and keys.enabled
                else f"ip:{request.client.host if request.client else '?'}"
            )
            # In the thread pool: with Redis configured a check is a network round trip.
            wait = await run_in_threadpool(limiter.check, caller)
            if wait > 0:
                return error_response(
                    429,
                    "too many requests; slow down",
                    headers={"Retry-After": str(max(1, int(wait + 0.999)))},
                )
        return await call_next(request)

    attach_health(app, settings, backend)
    attach_search(app, settings, backend, events)
    attach_stats(app, settings)
    # Only an admin key passes the guard to an admin route when keys are configured; without
    # keys the API listens on loopback only (require_keys_beyond_loopback).

    def caller(request: Request) -> str:
        return caller_identity({k.lower(): v for k, v in request.headers.items()}, keys.enabled)

    attach_articles(app, backend, sink, audit, caller)
    attach_stories(app, settings, backend.stories, caller, sink, audit)
    attach_admin(app, audit, admin, caller)
    attach_reindex(app, settings, backend, audit, caller)
    return app
