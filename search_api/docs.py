"""The API's own documentation pages, served offline: ``/docs`` (Swagger UI) and ``/redoc``.

What goes in: the FastAPI constructor's arguments. What comes out: the app, whose docs pages
load Swagger UI and ReDoc from this server (the files the ``fastapi-offline`` package ships,
under :data:`DOCS_STATIC_URL`) instead of a CDN. Guarantees: the docs pages carry a Content
Security Policy that lets them talk to this server only, so nothing they load reaches another
host (ReDoc's bundle hard-codes a logo on its CDN: the browser refuses it and ReDoc hides it).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

    app.add_middleware(DocsPolicy)
    return app


class DocsPolicy:
    """ASGI middleware: the docs pages' answers carry :data:`DOCS_CSP`.

    Plain ASGI rather than ``@app.middleware``: that wraps the request body's ``receive`` in a
    task group, which would turn the body cap's 413 into an exception group (a 400).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOCS_PAGES:
            await self.app(scope, receive, send)
            return

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Content-Security-Policy"] = DOCS_CSP
            await send(message)

        await self.app(scope, receive, with_policy)
