"""The API's one error shape, for every status: ``{"error": {"code": str, "message": str}}``.

What goes in: any failure while answering a request: our own errors (:class:`InvalidRequest`
422, :class:`TransientError` 503 with ``Retry-After``), request validation (422), Starlette's
HTTP errors (404 for an unknown route, 405 with ``Allow`` for a wrong method, ...), a
:class:`ConfigurationError` met while answering (503 saying what is not configured, e.g. no
Kafka broker for an admin route) and any unexpected exception (500). What comes out: a JSON response of that shape with the status and
the headers the status needs. Guarantees: the ``code`` of a status is stable (see
:data:`CODES`), and no stack trace or exception text of an unexpected error is ever returned
(the trace goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from core.errors import ConfigurationError, InvalidRequest, TransientError

log = logging.getLogger(__name__)

#: Seconds a client should wait after a 503 before retrying.
RETRY_AFTER_S = 5

#: The ``code`` of each status the API answers with; other statuses use their reason phrase.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """The body of every error answer (for the OpenAPI document)."""

    error: ErrorBody


def error_code(status: int) -> str:
    """The stable ``code`` of ``status`` (``not_found``, ``rate_limited``, ...)."""
    if status in CODES:
        return CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def error_response(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    """An error answer of the one shape; ``code`` defaults to the status's code."""
    body = {"error": {"code": code or error_code(status), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error ``app`` answers, whatever raised it, take the one shape."""

    @app.exception_handler(InvalidRequest)
    async def _invalid(_request: Request, exc: InvalidRequest) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return error_response(422, f"{where}: {first.get('msg')}".strip(": "))

    @app.exception_handler(TransientError)
    async def _unavailable(_request: Request, exc: TransientError) -> JSONResponse:
        log.warning("dependency unavailable: %s", exc)
        return error_response(
            503,
            "the search index is temporarily unavailable; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(ConfigurationError)
    async def _not_configured(_request: Request, exc: ConfigurationError) -> JSONResponse:
        log.error("not configured: %s", exc)
        return error_response(503, f"the API is not configured for this: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette raises these for unknown routes (404), wrong methods (405, with Allow) and
        # missing static files; its own body would be {"detail": ...}.
        if exc.status_code == 404:
            message = f"nothing at {request.url.path}"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
            message = f"{request.method} is not allowed on {request.url.path}; allowed: " + (
                ", ".join(allowed)
            )
            return error_response(405, message, headers=headers)
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this, then re-raises: the server logs the
        # trace once. The client learns only that it failed.
        return error_response(500, "internal error; the server log has the details")


def _allowed_methods(request: Request) -> list[str]:
    # Starlette's Allow names only the first route of the path (GET /search, not POST).
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                allowed |= route.methods
    return sorted(allowed)
