"""Admin routes: ``GET /audit``, the record of admin actions that changed data, and, when the
API's composition root gives :class:`AdminActions`, the feed registry
(:mod:`search_api.feed_routes`) and the dead-letter queue (:mod:`search_api.dlq_routes`).

What goes in (``GET /audit``): ``limit`` (1..500, default 50), ``action`` (one of
:data:`search_api.audit.ACTIONS`) and ``before`` (the ``next_before`` of an earlier page). What
comes out: :class:`search_api.audit.AuditPage`, newest first. Guarantees: an admin key when the
API has keys (a read key gets 403: :data:`search_api.security.ADMIN_READ_PATHS`); an unknown
action answers 422 naming the known ones; the broker not answering answers 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from core.errors import TransientError
from search_api.audit import ACTIONS, MAX_PAGE, AuditLog, AuditPage
from search_api.dlq_routes import DlqActions, attach_dlq
from search_api.errors import RETRY_AFTER_S, ErrorResponse, error_response
from search_api.feed_routes import FeedActions, attach_feeds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdminActions:
    """The operator actions the admin routes run, made by the composition root (they live
    beside the command line's, which this service does not import)."""

    feeds: FeedActions
    dlq: DlqActions


def attach_admin(
    app: FastAPI,
    audit: AuditLog,
    actions: AdminActions | None = None,
    caller: Callable[[Request], str] | None = None,
) -> None:
    """Add the admin routes to ``app`` (on the app itself: see :mod:`search_api.app`): the
    audit, and the feed and DLQ routes when ``actions`` and ``caller`` are given."""
    if actions is not None and caller is not None:
        attach_feeds(app, actions.feeds, audit, caller)
        attach_dlq(app, actions.dlq, audit, caller)

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
