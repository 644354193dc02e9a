"""The dead-letter queue over HTTP (admin): ``GET /admin/dlq`` and ``POST /admin/dlq/replay``.

What goes in: ``limit`` (1..1000, default 50) for the listing; for a replay, like ``newsstream
dlq replay``: ``stage`` (only messages that failed at this worker stage, :class:`core.metrics.
Stage`), ``dry_run`` (count, send nothing) and an optional ``reason`` for the audit. What comes
out: the same JSON as ``newsstream dlq list --json`` (``total`` and the first ``limit``
``messages``) and ``newsstream dlq replay --json`` (read, already_replayed, other_stage,
replayed, dry_run, by_stage) plus ``audit_id``.

The work is not done here: the API's composition root gives a :class:`DlqActions` that calls
the functions behind the command line (:mod:`newsstream.ops.dlq`). Guarantees: an admin key when
the API has keys (a read key gets 403); an unknown stage answers 422 naming the known ones; a
replay that re-sends messages is recorded in the audit (``dlq.replay``, the caller's key
fingerprint) before anything is sent; a replay re-sends a message once (a second replay finds
it replayed); the broker not answering answers 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.errors import TransientError
from core.metrics import Stage
from search_api.audit import AuditLog
from search_api.errors import RETRY_AFTER_S, ErrorResponse, error_response

log = logging.getLogger(__name__)

MAX_LIST = 1_000
MAX_REASON_CHARS = 500


class DlqActions(Protocol):
    """What the routes need of the DLQ tools (both raise TransientError on an outage)."""

    def listing(self, limit: int) -> dict[str, Any]:
        """:class:`DlqListing` fields: the total and the first ``limit`` messages."""

    def replay(
        self, audit: AuditLog, by: str, stage: str | None, dry_run: bool, reason: str | None
    ) -> dict[str, Any]:
        """:class:`ReplayDone` fields; records ``audit`` before re-sending anything."""


class DlqMessage(BaseModel):
    """One DLQ message with its story (the value shown as text, cut)."""

    partition: int
    offset: int
    key: str | None
    stage: str = Field(description="The worker stage it failed at.")
    error_class: str
    error_message: str
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    value_bytes: int
    value_preview: str


class DlqListing(BaseModel):
    """``GET /admin/dlq``."""

    total: int = Field(description="Messages in the DLQ.")
    messages: list[DlqMessage]


class ReplayIn(BaseModel):
    """``POST /admin/dlq/replay``: the options of ``newsstream dlq replay``."""

    stage: str | None = Field(None, description="Only messages that failed at this stage.")
    dry_run: bool = Field(False, description="Count what would be sent; send nothing.")
    reason: str | None = Field(None, max_length=MAX_REASON_CHARS, description="For the audit.")


class ReplayDone(BaseModel):
    """What a replay found and did."""

    read: int
    already_replayed: int
    other_stage: int
    replayed: int = Field(description="Re-sent (or, with dry_run, would be).")
    dry_run: bool
    by_stage: dict[str, int]
    audit_id: str | None = Field(description="The audit record; null when nothing was sent.")


def attach_dlq(
    app: FastAPI, actions: DlqActions, audit: AuditLog, caller: Callable[[Request], str]
) -> None:
    """Add the DLQ routes to ``app``; ``caller(request)`` names who asks, for the audit."""

    @app.get(
        "/admin/dlq",
        response_model=DlqListing,
        summary="Dead letters with their stage, error and original position (admin).",
        responses={403: {"model": ErrorResponse}},
    )
    def dlq_list(
        limit: Annotated[int, Query(ge=1, le=MAX_LIST, description="Messages at most.")] = 50,
    ) -> DlqListing | JSONResponse:
        try:
            return DlqListing.model_validate(actions.listing(limit))
        except TransientError as exc:
            return _unavailable("DLQ not read", exc)

    @app.post(
        "/admin/dlq/replay",
        response_model=ReplayDone,
        summary="Re-queue dead letters not replayed before to the articles topic (admin).",
        responses={403: {"model": ErrorResponse}},
    )
    def dlq_replay(body: ReplayIn, request: Request) -> ReplayDone | JSONResponse:
        stages = [stage.value for stage in Stage]
        if body.stage is not None and body.stage not in stages:
            return error_response(422, f"stage: unknown stage; expected one of {', '.join(stages)}")
        try:
            done = ReplayDone.model_validate(
                actions.replay(audit, caller(request), body.stage, body.dry_run, body.reason)
            )
        except TransientError as exc:
            return _unavailable("DLQ replay stopped", exc)
        log.info("DLQ replay: %d re-sent (audit record %s)", done.replayed, done.audit_id)
        return done


def _unavailable(what: str, exc: TransientError) -> JSONResponse:
    log.warning("%s: %s", what, exc)
    return error_response(
        503,
        "Kafka did not answer; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
