"""The feed registry over HTTP (admin): ``GET/POST /admin/feeds``, ``PATCH/DELETE
/admin/feeds/{id}``.

What goes in: a feed's url, name, tags and retention window (``POST``), a retention window
(``PATCH``; ``null`` follows ``NEWSSTREAM_RETENTION_DAYS`` again), a feed id or URL in the path,
and an optional ``reason`` for the audit. What comes out: the feeds polled with their status
(``GET``), or the feed as the registry now holds it with the id of its audit record.

The registry changes are not made here: the API's composition root gives a :class:`FeedActions`
that makes them with the same functions as ``newsstream feeds add/update/remove`` (this service
does not import the producers'). Guarantees: an admin key when the API has keys (a read key
gets 403); input checked like the command line checks it (URL, retention bounds: 422 naming
what was expected); a feed the registry does not hold answers 404 (one from the feeds file
says so); every change is recorded in the audit (``feed.add``, ``feed.retention``,
``feed.remove``) before it is made; the broker not acknowledging the record (or the change)
answers 503, and repeating the request is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.errors import InvalidInput, TransientError
from search_api.audit import AuditLog
from search_api.errors import RETRY_AFTER_S, ErrorResponse, error_response

log = logging.getLogger(__name__)

#: Longest reason kept in the audit, and bounds on what a feed carries.
MAX_REASON_CHARS = 500
MAX_URL_CHARS = 2_000
MAX_NAME_CHARS = 200
MAX_TAGS = 50


class FeedActions(Protocol):
    """What the routes need of the registry; each change records ``audit`` first.

    Raise :class:`core.errors.InvalidInput` for invalid input, :class:`LookupError` for a
    feed the registry does not hold, :class:`core.errors.TransientError` when the audit record
    is not acknowledged."""

    def list_feeds(self) -> list[dict[str, Any]]:
        """Every feed polled, as :class:`FeedStatusView` fields."""

    def add(
        self,
        audit: AuditLog,
        by: str,
        url: str,
        name: str,
        tags: list[str],
        retention_days: int | None,
        reason: str | None,
    ) -> dict[str, Any]:
        """Add (or update) a feed; :class:`FeedChanged` fields."""

    def set_retention(
        self, audit: AuditLog, by: str, feed: str, retention_days: int | None, reason: str | None
    ) -> dict[str, Any]:
        """Set a registry feed's window; :class:`FeedChanged` fields."""

    def remove(self, audit: AuditLog, by: str, feed: str, reason: str | None) -> dict[str, Any]:
        """Remove a registry feed; :class:`FeedChanged` fields."""


class FeedView(BaseModel):
    """A feed of the registry."""

    id: str = Field(description="The feed's id (from its canonical URL).")
    url: str
    name: str
    tags: list[str]
    retention_days: int | None = Field(
        description="Days its articles are kept (0: forever); null follows the global window."
    )


class FeedStatusView(FeedView):
    """A feed polled, where it comes from, and its poll status."""

    origin: str = Field(description="`registry`, `file` (the feeds file) or `default`.")
    last_fetch_at: float | None
    last_result: str | None
    last_error: str | None
    items: int
    next_poll_at: float | None
    error_streak: int


class FeedList(BaseModel):
    """``GET /admin/feeds``."""

    feeds: list[FeedStatusView]


class FeedChanged(BaseModel):
    """What a change did: the feed now, whether it is new, its audit record."""

    feed: FeedView
    created: bool
    audit_id: str | None


class FeedIn(BaseModel):
    """``POST /admin/feeds``: a feed to add (an existing one gets this name and these tags)."""

    url: str = Field(max_length=MAX_URL_CHARS, description="The feed's http(s) URL.")
    name: str = Field("", max_length=MAX_NAME_CHARS)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    retention_days: int | None = Field(
        None, description="Its own window in days (0: keep forever); null: leave it as it is."
    )
    reason: str | None = Field(None, max_length=MAX_REASON_CHARS, description="For the audit.")


class RetentionIn(BaseModel):
    """``PATCH /admin/feeds/{id}``: the feed's retention window (required; null: global)."""

    retention_days: int | None = Field(
        description="Days (0: keep forever); null follows NEWSSTREAM_RETENTION_DAYS again."
    )
    reason: str | None = Field(None, max_length=MAX_REASON_CHARS, description="For the audit.")


def attach_feeds(
    app: FastAPI, actions: FeedActions, audit: AuditLog, caller: Callable[[Request], str]
) -> None:
    """Add the feed routes to ``app``; ``caller(request)`` names who asks, for the audit."""
    errors: dict[int | str, dict[str, Any]] = {
        403: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
    }

    @app.get(
        "/admin/feeds",
        response_model=FeedList,
        summary="Every feed polled, with its status (admin).",
        responses={403: {"model": ErrorResponse}},
    )
    def list_feeds() -> FeedList:
        return FeedList.model_validate({"feeds": actions.list_feeds()})

    @app.post(
        "/admin/feeds",
        response_model=FeedChanged,
        summary="Add a feed, or change its name, tags and window (admin; 201 when new).",
        responses=errors,
    )
    def add_feed(body: FeedIn, request: Request) -> JSONResponse:
        return _change(
            lambda: actions.add(
                audit,
                caller(request),
                body.url,
                body.name,
                body.tags,
                body.retention_days,
                body.reason,
            ),
            created_status=201,
        )

    @app.patch(
        "/admin/feeds/{feed}",
        response_model=FeedChanged,
        summary="Change a registry feed's retention window (admin).",
        responses=errors,
    )
    def set_retention(feed: str, body: RetentionIn, request: Request) -> JSONResponse:
        return _change(
            lambda: actions.set_retention(
                audit, caller(request), feed, body.retention_days, body.reason
            )
        )

    @app.delete(
        "/admin/feeds/{feed}",
        response_model=FeedChanged,
        summary="Remove a registry feed; its poll state is kept (admin).",
        responses=errors,
    )
    def remove_feed(
        feed: str,
        request: Request,
        reason: Annotated[
            str | None, Query(max_length=MAX_REASON_CHARS, description="Why, for the audit.")
        ] = None,
    ) -> JSONResponse:
        return _change(lambda: actions.remove(audit, caller(request), feed, reason))


def _change(run: Callable[[], dict[str, Any]], created_status: int = 200) -> JSONResponse:
    """Run one change and answer it: 200 (``created_status`` for a new feed), 422, 404, 503."""
    try:
        done = FeedChanged.model_validate(run())
    except InvalidInput as exc:
        return error_response(422, str(exc))
    except LookupError as exc:
        return error_response(404, str(exc))
    except TransientError as exc:
        log.warning("feed change not made: %s", exc)
        return error_response(
            503,
            "Kafka did not acknowledge the change; retry shortly (a retry is safe)",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    log.info("feed %s changed (audit record %s)", done.feed.id, done.audit_id)
    status = created_status if done.created else 200
    return JSONResponse(done.model_dump(mode="json"), status_code=status)
