"""A cap on request bodies that holds whether or not the client declares a length.

What goes in: an ASGI app and the largest accepted body in bytes. What comes out: the same app,
whose requests fail with 413 (in the API's one error shape) as soon as the body read so far is
over the cap. Guarantees: a chunked body (no ``Content-Length``) is never buffered past the
cap. (A declared ``Content-Length`` over the cap is refused earlier, by the API's guard,
before anything is read.)
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: 413 once more than ``max_bytes`` of a request body arrived."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes its own HTTPException through body parsing (any other
                    # error there becomes a 400); the app's handler gives it the error shape.
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)
