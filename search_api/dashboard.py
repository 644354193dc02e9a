"""The live dashboard: ``GET /dashboard`` (the page) and ``GET /dashboard/data`` (its JSON).

What goes in: the status topic (worker counters, feed status, search trends), the workers'
group lag, a Milvus query of recent rows and this process's search-latency histogram. What
comes out: one JSON document with a section per source, each saying whether it is available.

Guarantees: every source is fetched on its own daemon thread with short timeouts, at most one
fetch per source at a time and at most once per its time-to-live, so many open tabs cost the
broker no more than one; a request waits at most :data:`REQUEST_WAIT_S` and then answers with
what it has (the last good value, marked stale). Kafka or Milvus being down never fails the
page: the section says ``ok: false`` and why. The page (``static/dashboard.*``) builds its DOM
with ``textContent`` only; no data is ever parsed as HTML.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pymilvus import MilvusClient, MilvusException

from core.errors import ConfigurationError, TransientError
from core.kafka import group_lag
from core.metrics import SEARCH_SECONDS
from core.settings import Settings
from core.status import read_status
from search_api.dashboard_view import (
    Sample,
    count_sources,
    feed_health,
    latency_summary,
    rate_series,
    sample_from_workers,
    trends_view,
    tts_summary,
    worker_totals,
)
from search_api.errors import error_response
from store.client import milvus_client

log = logging.getLogger(__name__)

#: Longest a /dashboard/data request waits for fresh sources before answering.
REQUEST_WAIT_S = 3.0
#: Whole-response cache: tabs polling together share one answer.
RESPONSE_TTL_S = 1.5
KAFKA_TIMEOUT_S = 2.0
#: Longest pause between attempts at a source that keeps failing.
MAX_RETRY_S = 30.0
MILVUS_TIMEOUT_S = 3.0
#: Seconds between ingest samples taken in the background while the app runs.
SAMPLE_EVERY_S = 3.0
#: Ingest samples kept (one per new worker report, about every 5 s: ~50 min).
MAX_SAMPLES = 600
#: Top sources are counted over rows ingested in this window, at most this many rows.
SOURCES_WINDOW_S = 24 * 3600
SOURCES_MAX_ROWS = 5000
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
#: The page loads only its own script and style and talks only to this API.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def top_sources(
    client: MilvusClient,
    settings: Settings,
    *,
    now: float | None = None,
    window_s: float = SOURCES_WINDOW_S,
    max_rows: int = SOURCES_MAX_ROWS,
    top: int = 10,
) -> list[list[Any]]:
    """``[[source, rows], ...]`` over rows ingested in the last ``window_s`` seconds.

    Milvus cannot sort a query, so "recent" is a filter on ``ingested_at`` capped at
    ``max_rows`` rows. The filter holds only an integer this code computed.
    """
    since = int((time.time() if now is None else now) - window_s)
    rows = client.query(
        settings.milvus_collection,
        filter=f"ingested_at >= {since}",
        output_fields=["source"],
        limit=max_rows,
        timeout=MILVUS_TIMEOUT_S,
    )
    return count_sources(rows, top=top)


def index_row_count(client: MilvusClient, settings: Settings) -> int:
    """Rows searchable in the collection now: every acknowledged upsert, each id once.

    A ``count(*)`` query at Strong consistency, not the collection statistics: on a Milvus
    server those count only flushed segments (a fresh index showed 0 rows while hundreds were
    searchable), and they count a replaced row until compaction.
    """
    rows = client.query(
        settings.milvus_collection,
        filter="",
        output_fields=["count(*)"],
        consistency_level="Strong",
        timeout=MILVUS_TIMEOUT_S,
    )
    return int(rows[0]["count(*)"])


@dataclass
class _State:
    ok: bool
    data: Any
    error: str | None
    updated_at: float | None  # epoch s of the last good value
    fetched: float  # monotonic time of the last attempt


class _Source:
    """One data source, refreshed on a daemon thread at most every ``ttl_s`` seconds."""

    def __init__(self, name: str, fetch: Callable[[], Any], ttl_s: float) -> None:
        self.name = name
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._cond = threading.Condition()
        self._state: _State | None = None
        self._running = False
        self._failures = 0

    def refresh(self) -> None:
        """Start a fetch unless one is running or the last one is fresh enough."""
        with self._cond:
            if self._running or self._fresh():
                return
            self._running = True
        threading.Thread(target=self._run, name=f"dashboard-{self.name}", daemon=True).start()

    def view(self, deadline: float) -> dict[str, Any]:
        """The current state, after waiting until ``deadline`` (monotonic) for a running fetch."""
        with self._cond:
            self._cond.wait_for(lambda: not self._running, max(0.0, deadline - time.monotonic()))
            state = self._state
            if state is None:
                return {"ok": False, "error": "loading", "data": None, "updated_at": None}
            return {
                "ok": state.ok,
                "error": state.error,
                "data": state.data,
                "updated_at": state.updated_at,
                "stale": not state.ok and state.data is not None,
            }

    def _fresh(self) -> bool:
        # After failures, wait longer between attempts (up to MAX_RETRY_S): an outage must
        # not turn every open tab into a stream of connection attempts.
        ttl = min(MAX_RETRY_S, self._ttl_s * 2**self._failures) if self._failures else self._ttl_s
        return self._state is not None and time.monotonic() - self._state.fetched < ttl

    def _run(self) -> None:
        ok, data, error = True, None, None
        try:
            data = self._fetch()
        except (TransientError, ConfigurationError) as exc:
            ok, error = False, str(exc)
        except Exception as exc:
            # A panel isolates its own failure: it is logged with its trace and shown on the
            # page, and the other panels keep working.
            log.exception("dashboard source %s failed", self.name)
            ok, error = False, f"{type(exc).__name__}: {exc}"
        with self._cond:
            previous = self._state
            self._failures = 0 if ok else min(self._failures + 1, 8)
            if ok:
                self._state = _State(True, data, None, time.time(), time.monotonic())
            else:
                self._state = _State(
                    False,
                    previous.data if previous else None,
                    (error or "unavailable")[:300],
                    previous.updated_at if previous else None,
                    time.monotonic(),
                )
            self._running = False
            self._cond.notify_all()


class Dashboard:
    """Gathers the dashboard's sources for one API process and keeps the ingest samples."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._samples: deque[Sample] = deque(maxlen=MAX_SAMPLES)
        self._milvus: MilvusClient | None = None
        self._milvus_lock = threading.Lock()
        self.sources = {
            "workers": _Source("workers", self._fetch_workers, 2.0),
            "lag": _Source("lag", self._fetch_lag, 2.0),
            "feeds": _Source("feeds", lambda: self._status("feed"), 10.0),
            "trends": _Source("trends", lambda: self._status("trends"), 10.0),
            "milvus": _Source("milvus", self._fetch_milvus, 15.0),
        }
        self._response_lock = threading.Lock()
        self._response: tuple[float, dict[str, Any]] | None = None
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start_sampling(self) -> None:
        """Sample the worker totals every :data:`SAMPLE_EVERY_S` until :meth:`stop_sampling`.

        Without it the ingest chart only starts when someone opens the page; with it the
        chart shows the last MAX_SAMPLES reports of this API's life.
        """
        if self._sampler is not None or not self.settings.kafka_bootstrap:
            return
        self._stop.clear()
        self._sampler = threading.Thread(
            target=self._sample_loop, name="dashboard-sampler", daemon=True
        )
        self._sampler.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(KAFKA_TIMEOUT_S)
            self._sampler = None

    def _sample_loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.sources["workers"].refresh()

    def data(self) -> dict[str, Any]:
        """The JSON of ``/dashboard/data`` (cached for :data:`RESPONSE_TTL_S`)."""
        with self._response_lock:
            if self._response and time.monotonic() - self._response[0] < RESPONSE_TTL_S:
                return self._response[1]
            for source in self.sources.values():
                source.refresh()
            deadline = time.monotonic() + REQUEST_WAIT_S
            views = {name: s.view(deadline) for name, s in self.sources.items()}
            body = self._assemble(views)
            self._response = (time.monotonic(), body)
            return body

    def _assemble(self, views: dict[str, dict[str, Any]]) -> dict[str, Any]:
        now = time.time()
        workers: dict[str, dict[str, Any]] = views["workers"]["data"] or {}
        lag: dict[int, int] | None = views["lag"]["data"]
        milvus: dict[str, Any] = views["milvus"]["data"] or {}
        feeds = views["feeds"]["data"]
        trends = views["trends"]["data"]
        series = rate_series(list(self._samples))
        return {
            "generated_at": now,
            "sections": {
                name: {k: v for k, v in view.items() if k != "data"} for name, view in views.items()
            },
            "totals": worker_totals(workers) if workers else None,
            "workers": [
                {"id": wid, "at": s.get("at"), **{k: s.get(k) for k in ("consumed", "indexed")}}
                for wid, s in sorted(workers.items())
            ],
            "ingest": {
                "series": series,
                "now_per_s": series[-1][1] if series else None,
            },
            "lag": (
                {
                    "partitions": [[p, n] for p, n in sorted(lag.items())],
                    "total": sum(lag.values()),
                }
                if lag is not None
                else None
            ),
            "tts": tts_summary(workers),
            "search_latency": _search_latency(),
            "top_sources": milvus.get("top_sources"),
            "index_rows": milvus.get("rows"),
            "feeds": feed_health(feeds, now) if feeds is not None else None,
            "trends": trends_view(trends) if trends is not None else None,
        }

    def _require_kafka(self) -> None:
        if not self.settings.kafka_bootstrap:
            raise TransientError("Kafka is not configured (NEWSSTREAM_KAFKA_BOOTSTRAP)")

    def _status(self, kind: str) -> dict[str, dict[str, Any]]:
        self._require_kafka()
        return read_status(self.settings, kind, timeout_s=KAFKA_TIMEOUT_S)

    def _fetch_workers(self) -> dict[str, dict[str, Any]]:
        workers = self._status("worker")
        sample = sample_from_workers(workers)
        if sample is not None and (not self._samples or sample.t > self._samples[-1].t):
            self._samples.append(sample)
        return workers

    def _fetch_lag(self) -> dict[int, int]:
        self._require_kafka()
        return group_lag(self.settings, timeout_s=KAFKA_TIMEOUT_S)

    def _fetch_milvus(self) -> dict[str, Any]:
        with self._milvus_lock:
            if self._milvus is None:
                quick = self.settings.model_copy(update={"milvus_timeout_s": MILVUS_TIMEOUT_S})
                self._milvus = milvus_client(quick)
            client = self._milvus
        try:
            return {
                "top_sources": top_sources(client, self.settings),
                "rows": index_row_count(client, self.settings),
            }
        except MilvusException as exc:
            with self._milvus_lock:  # reconnect on the next refresh
                self._milvus = None
            raise TransientError(f"Milvus unavailable: {exc}") from exc


def _search_latency() -> dict[str, Any]:
    buckets = [
        (sample.labels, sample.value)
        for family in SEARCH_SECONDS.collect()
        for sample in family.samples
        if sample.name.endswith("_bucket")
    ]
    return latency_summary(buckets)


def _static(name: str) -> str:
    return (resources.files("search_api") / "static" / name).read_text(encoding="utf-8")


def attach_dashboard(app: FastAPI, settings: Settings) -> None:
    """Add ``GET /dashboard``, its assets and ``GET /dashboard/data`` to ``app``."""
    dashboard = Dashboard(settings)
    app.state.dashboard = dashboard
    inner_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[Any]:
        # Wraps the app's own lifespan so create_app needs no more than this one call.
        dashboard.start_sampling()
        try:
            async with inner_lifespan(running) as state:
                yield state
        finally:
            dashboard.stop_sampling()

    app.router.lifespan_context = lifespan
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard_page() -> HTMLResponse:
        return HTMLResponse(_static("dashboard.html"), headers=headers)

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    async def dashboard_asset(name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            return error_response(404, "no such file")
        return Response(_static(name), media_type=media_type, headers=headers)

    @app.get("/dashboard/data", summary="Everything the dashboard page shows, by section.")
    def dashboard_data() -> JSONResponse:
        return JSONResponse(dashboard.data(), headers={"Cache-Control": "no-store"})
