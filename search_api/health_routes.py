"""Service routes: the index page ``/``, ``/healthz``, ``/readyz`` and ``/metrics``.

What goes in: nothing but the request. What comes out: ``/`` a small HTML page linking the
dashboard, the API docs and the metrics; ``/healthz`` ``{"status": "ok"}`` while the process
answers; ``/readyz`` 200 ``{"status": "ready", "checks": {"kafka": true, "milvus": true}}`` when
the broker answers and the collection is loaded, else 503 with ``"not_ready"`` and the failing
check; ``/metrics`` this process's Prometheus metrics. Guarantees: these routes are open (no API
key, no rate limit: :func:`search_api.security.is_open_path`) and never fail because a
dependency is away. ``/docs`` and ``/redoc`` come with the app itself (:mod:`search_api.docs`).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.errors import TransientError
from core.kafka import kafka_reachable
from core.settings import Settings
from search_api.backend import Backend


def attach_health(app: FastAPI, settings: Settings, backend: Backend) -> None:
    """Add the service routes to ``app`` (on the app itself: see :mod:`search_api.app`)."""

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
