"""Reindex over HTTP: ``POST /admin/reindex`` starts one, ``GET /admin/reindex/{id}`` shows it.

What goes in: ``POST`` with an optional JSON body ``{"model", "backend", "reason"}`` (the model
and embedding backend of the new collection; the API's own when left out). What comes out:
202 with ``{"id": ...}`` (a job id), then ``GET`` gives its progress (:class:`ReindexProgress`'s
JSON form: phase, rows done of total, embedded and cached counts, rate, ETA, error); 404 for an
unknown id, 409 while another reindex of this API runs.

Where it runs: on a thread of this API process (the API already holds the embedding model and a
Milvus connection; a reindex to another model loads that model in the thread). Its embedding
competes with searches for the CPU: on a small machine prefer ``newsstream reindex`` on the
host, which does the same and shows a progress bar. Jobs are kept in memory: a restarted API
forgets them (the collections say where a reindex got to: ``newsstream reindex --status``; a
reindex run again resumes its build). Both paths record the action in the audit (``reindex``)
before anything changes; only an admin key may call these routes
(:mod:`search_api.security`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.errors import TransientError
from core.settings import Settings
from search_api.audit import AuditLog
from search_api.backend import Backend
from search_api.errors import RETRY_AFTER_S, ErrorResponse, error_response
from store.client import milvus_client
from store.embed_cache import EmbeddingCache
from store.reindex import Reindexer, ReindexProgress, embedding_cache_path

log = logging.getLogger(__name__)


class ReindexRequest(BaseModel):
    """What a reindex builds with (the API's model and backend when left out)."""

    model: str | None = Field(None, max_length=255, description="Embedding model name or path.")
    backend: Literal["torch", "onnx-int8", "openvino-int8"] | None = Field(
        None, description="Embedding backend."
    )
    reason: str | None = Field(None, max_length=500, description="Why, for the audit.")


class ReindexStarted(BaseModel):
    id: str = Field(description="The job id: GET /admin/reindex/{id} shows its progress.")


class ReindexJobs:
    """Reindex jobs of this API process, one running at a time, kept in memory."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self._settings = settings
        self._backend = backend
        self._jobs: dict[str, ReindexProgress] = {}
        self._running: str | None = None
        self._lock = threading.Lock()

    def start(self, request: ReindexRequest) -> str | None:
        """Start a job on a thread; its id, or None while another one runs."""
        with self._lock:
            if self._running is not None:
                return None
            job = uuid.uuid4().hex
            self._jobs[job] = ReindexProgress()
            self._running = job
        threading.Thread(
            target=self._run, args=(job, request), name=f"reindex-{job[:8]}", daemon=True
        ).start()
        return job

    def get(self, job: str) -> ReindexProgress | None:
        with self._lock:
            return self._jobs.get(job)

    def _update(self, job: str, progress: ReindexProgress) -> None:
        with self._lock:
            self._jobs[job] = progress

    def _run(self, job: str, request: ReindexRequest) -> None:
        overrides: dict[str, Any] = {}
        if request.model:
            overrides["embedding_model"] = request.model
        if request.backend:
            overrides["embedding_backend"] = request.backend
        settings = self._settings.model_copy(update=overrides)
        cache: EmbeddingCache | None = None
        try:
            client = milvus_client(settings)
            if overrides:
                from embedding.embedder import Embedder

                embedder = Embedder(settings)
            else:
                embedder = self._backend.embedder()
            cache = EmbeddingCache(embedding_cache_path(settings))
            runner = Reindexer(
                settings,
                client,
                embedder,
                cache,
                on_progress=lambda p: self._update(job, p),
            )
            self._update(job, runner.run())
        except Exception as exc:  # the job's state says why; the API keeps serving
            log.exception("reindex job %s failed", job)
            failed = self.get(job) or ReindexProgress()
            if failed.phase != "failed":
                self._update(job, ReindexProgress(phase="failed", error=str(exc)))
        finally:
            if cache is not None:
                cache.close()
            with self._lock:
                self._running = None


def attach_reindex(
    app: FastAPI,
    settings: Settings,
    backend: Backend,
    audit: AuditLog,
    caller: Callable[[Request], str],
) -> ReindexJobs:
    """Add ``POST /admin/reindex`` and ``GET /admin/reindex/{id}`` to ``app``; returns the
    jobs (tests read them)."""
    jobs = ReindexJobs(settings, backend)

    @app.post(
        "/admin/reindex",
        status_code=202,
        response_model=ReindexStarted,
        summary="Rebuild the collection from its stored rows and swap it in (admin).",
        responses={403: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
    )
    def start_reindex(
        request: Request, body: Annotated[ReindexRequest | None, Body()] = None
    ) -> Any:
        wanted = body or ReindexRequest()
        try:
            audit.record(
                "reindex",
                settings.milvus_collection,
                caller(request),
                wanted.reason,
                {"step": "build", "model": wanted.model or "", "backend": wanted.backend or ""},
            )
        except TransientError as exc:
            return error_response(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_S)})
        job = jobs.start(wanted)
        if job is None:
            return error_response(409, "a reindex is already running in this API")
        return JSONResponse({"id": job}, status_code=202)

    @app.get(
        "/admin/reindex/{job}",
        summary="A reindex job's progress (admin).",
        responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
    )
    def reindex_progress(job: str) -> Any:
        progress = jobs.get(job)
        if progress is None:
            return error_response(404, f"no reindex job {job!r} in this API")
        return {"id": job, **progress.to_json()}

    return jobs
