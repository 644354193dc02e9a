"""Admin reads: ``GET /audit``, the record of admin actions that changed data.

What goes in: ``limit`` (1..500, default 50), ``action`` (one of
:data:`search_api.audit.ACTIONS`) and ``before`` (the ``next_before`` of an earlier page). What
comes out: :class:`search_api.audit.AuditPage`, newest first. Guarantees: an admin key when the
API has keys (a read key gets 403: :data:`search_api.security.ADMIN_READ_PATHS`); an unknown
action answers 422 naming the known ones; the broker not answering answers 503.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from core.errors import TransientError
from search_api.audit import ACTIONS, MAX_PAGE, AuditLog, AuditPage
from search_api.errors import RETRY_AFTER_S, ErrorResponse, error_response

log = logging.getLogger(__name__)


def attach_admin(app: FastAPI, audit: AuditLog) -> None:
    """Add the admin reads to ``app`` (on the app itself: see :mod:`search_api.app`)."""

    @app.get(
        "/audit",
        response_model=AuditPage,
        summary="Admin actions that changed data, newest first (admin).",
        responses={403: {"model": ErrorResponse}},
    )
    def audit_page(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Records at most.")] = 50,
        action: Annotated[str | None, Query(description="Only this action.")] = None,
        before: Annotated[
            int | None, Query(ge=0, description="Older than this (a `next_before`).")
        ] = None,
    ) -> AuditPage | JSONResponse:
        if action is not None and action not in ACTIONS:
            return error_response(
                422, f"action: unknown action; expected one of {', '.join(sorted(ACTIONS))}"
            )
        try:
            return audit.read(limit, action, before)
        except TransientError as exc:
            log.warning("audit unreadable: %s", exc)
            return error_response(
                503,
                "the audit topic did not answer; retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
