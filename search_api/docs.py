"""The API's own documentation pages, served offline: ``/docs`` (Swagger UI) and ``/redoc``.

What goes in: the FastAPI constructor's arguments. What comes out: the app, whose docs pages
load Swagger UI and ReDoc from this server (the files the ``fastapi-offline`` package ships,
under :data:`DOCS_STATIC_URL`) instead of a CDN. Guarantees: the docs pages carry a Content
Security Policy that lets them talk to this server only, so nothing they load reaches another
host (ReDoc's bundle hard-codes a logo on its CDN: the browser refuses it and ReDoc hides it).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi_offline import FastAPIOffline
from starlette.responses import Response

#: Where the Swagger UI and ReDoc files are served from.
DOCS_STATIC_URL = "/static-offline-docs"
DOCS_PAGES = frozenset({"/docs", "/redoc"})
#: Swagger UI starts from an inline script and both UIs inject inline styles; ReDoc's search
#: runs in a blob: worker. Everything else: this server only.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def offline_docs_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app (``kwargs`` as for FastAPI) whose ``/docs`` and ``/redoc`` work offline."""
    app = FastAPIOffline(
        static_url=DOCS_STATIC_URL,
        # Swagger UI would otherwise send the spec to its online validator for a badge.
        swagger_ui_parameters={"validatorUrl": None},
        **kwargs,
    )

    @app.middleware("http")
    async def docs_policy(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.url.path in DOCS_PAGES:
            response.headers["Content-Security-Policy"] = DOCS_CSP
        return response

    return app
