"""The fetcher's bounds against hostile servers: total deadline, byte cap, decoding, validators.

Each hostile server is a raw socket server on 127.0.0.1 (allowed by port) so that it can do
what a real HTTP library would not: drip headers, stream for ever, lie about encodings.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from core.errors import FeedError
from producers.fetcher import Fetcher

pytestmark = pytest.mark.integration

Script = Callable[[socket.socket, bytes], None]


class RawServer:
    """Accepts connections and runs ``script(conn, request_bytes)`` on each, in a thread."""

    def __init__(self, script: Script) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        self._script = script
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.requests.append(request)
            with contextlib.suppress(OSError):
                self._script(conn, request)

    def fetcher(self, **kwargs: object) -> Fetcher:
        return Fetcher(allow_networks=[f"127.0.0.1:{self.port}"], **kwargs)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed.xml"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Script], RawServer]]:
    servers: list[RawServer] = []

    def start(script: Script) -> RawServer:
        servers.append(RawServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _respond(body: bytes, *headers: str, status: str = "200 OK") -> Script:
    def script(conn: socket.socket, _request: bytes) -> None:
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers, "", ""]
        conn.sendall("\r\n".join(head).encode("latin-1") + body)

    return script


FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"


def _fetch_error(server: RawServer, **kwargs: object) -> FeedError:
    with pytest.raises(FeedError) as info:
        server.fetcher(**kwargs).fetch(server.url)
    return info.value


class Drip:
    """A server script that sends ``head``, then ``piece`` every 0.1 s, ``times`` times (60 s in
    all); ``sent`` counts the pieces, so a test can tell the deadline (2 s: about 20 pieces)
    from a per-read timeout or the end of the response (all of them)."""

    def __init__(self, head: bytes, piece: bytes, times: int = 600) -> None:
        self.head = head
        self.piece = piece
        self.times = times
        self.sent = 0

    def __call__(self, conn: socket.socket, _request: bytes) -> None:
        conn.sendall(self.head)
        for _ in range(self.times):
            conn.sendall(self.piece)
            self.sent += 1
            time.sleep(0.1)


def test_slow_drip_body_cannot_stretch_the_deadline(serve: Callable[[Script], RawServer]) -> None:
    drip = Drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"<")
    error = _fetch_error(serve(drip), deadline_s=2.0)
    assert error.kind == "timeout"
    assert drip.sent < drip.times / 2, f"the fetch waited for {drip.sent} pieces"


def test_slow_drip_headers_cannot_stretch_the_deadline(
    serve: Callable[[Script], RawServer],
) -> None:
    drip = Drip(b"HTTP/1.1 200 OK\r\n", b"X-Slow: a\r\n")
    error = _fetch_error(serve(drip), deadline_s=2.0)
    assert error.kind == "timeout"
    assert drip.sent < drip.times / 2, f"the fetch waited for {drip.sent} pieces"


def test_endless_chunked_response_stops_at_the_cap(serve: Callable[[Script], RawServer]) -> None:
    def endless(conn: socket.socket, _r: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        while True:
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    error = _fetch_error(serve(endless), max_bytes=2_000_000, deadline_s=60)
    assert error.kind == "too_large"


def test_gzip_bomb_stops_at_the_cap(serve: Callable[[Script], RawServer]) -> None:
    bomb = gzip.compress(b"\0" * 200_000_000, compresslevel=9)  # ~200 KB on the wire
    server = serve(_respond(bomb, "Content-Encoding: gzip"))
    error = _fetch_error(server, max_bytes=1_000_000)
    assert error.kind == "too_large"


def test_chained_encodings_decode_and_stop_at_the_cap(
    serve: Callable[[Script], RawServer],
) -> None:
    twice = gzip.compress(zlib.compress(FEED))
    ok = serve(_respond(twice, "Content-Encoding: deflate, gzip"))
    assert ok.fetcher().fetch(ok.url).body == FEED
    bomb = gzip.compress(gzip.compress(b"\0" * 100_000_000))
    error = _fetch_error(serve(_respond(bomb, "Content-Encoding: gzip, gzip")), max_bytes=10**6)
    assert error.kind == "too_large"
    error = _fetch_error(serve(_respond(FEED, "Content-Encoding: gzip, gzip, gzip")))
    assert error.kind == "too_large"
    error = _fetch_error(serve(_respond(FEED, "Content-Encoding: br")))
    assert error.kind == "http_error"


def test_fifty_megabyte_feed_is_refused(serve: Callable[[Script], RawServer]) -> None:
    item = b"<item><title>x</title><description>" + b"y" * 1000 + b"</description></item>"
    body = b"<rss version='2.0'><channel>" + item * (50_000_000 // len(item)) + b"</channel></rss>"
    declared = _fetch_error(serve(_respond(body)))
    assert declared.kind == "too_large"

    def undeclared(conn: socket.socket, _r: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        conn.sendall(body)

    streamed = _fetch_error(serve(undeclared))
    assert streamed.kind == "too_large"


def test_validators_are_echoed_byte_for_byte(serve: Callable[[Script], RawServer]) -> None:
    etag = 'W/"caf\xe9 \\"1\\""'  # Latin-1 byte and escaped quotes: as odd as servers get
    modified = "Tue, 17 Feb 2026 10:00:00 GMT"
    server = serve(
        _respond(FEED, f"ETag: {etag}", f"Last-Modified: {modified}", "Connection: close")
    )
    first = server.fetcher().fetch(server.url)
    assert first.headers["etag"] == etag
    server.fetcher().fetch(
        server.url, etag=first.headers["etag"], last_modified=first.headers["last-modified"]
    )
    second = server.requests[-1]
    assert b"\r\nIf-None-Match: " + etag.encode("latin-1") + b"\r\n" in second
    assert b"\r\nIf-Modified-Since: " + modified.encode() + b"\r\n" in second


def test_rate_limit_carries_retry_after(serve: Callable[[Script], RawServer]) -> None:
    error = _fetch_error(serve(_respond(b"", "Retry-After: 120", status="429 Too Many")))
    assert error.kind == "rate_limited"
    assert getattr(error, "retry_after_s", None) == 120.0


def test_empty_200_is_returned_empty(serve: Callable[[Script], RawServer]) -> None:
    server = serve(_respond(b""))
    assert server.fetcher().fetch(server.url).body == b""
