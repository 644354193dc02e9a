"""The fetcher's SSRF guard on real connections: the connect-time check and redirect hops."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import FeedError
from producers.fetcher import Fetcher

pytestmark = pytest.mark.integration

Handler = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A threaded HTTP server on 127.0.0.1 whose GET answer is ``handler``; counts requests."""

    def __init__(self, handler: Handler) -> None:
        owner = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.hits += 1
                handler(self)

            def log_message(self, *args: object) -> None:
                return

        self.hits = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str = "/feed.xml") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _answer(status: int, body: bytes = b"", **headers: str) -> Handler:
    def handle(req: BaseHTTPRequestHandler) -> None:
        req.send_response(status)
        for name, value in headers.items():
            req.send_header(name.replace("_", "-"), value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    return handle


@pytest.fixture
def feed_server() -> Iterator[Server]:
    server = Server(_answer(200, b"<rss version='2.0'><channel><title>t</title></channel></rss>"))
    yield server
    server.close()


def test_loopback_fetch_is_refused_at_connect_without_allowlist(feed_server: Server) -> None:
    fetcher = Fetcher(deadline_s=5)
    for url in (
        feed_server.url(),
        f"http://[::ffff:127.0.0.1]:{feed_server.port}/feed.xml",
        f"http://2130706433:{feed_server.port}/feed.xml",  # 127.0.0.1 as a decimal number
        f"http://localhost:{feed_server.port}/feed.xml",
    ):
        with pytest.raises(FeedError) as info:
            fetcher.fetch(url)
        assert info.value.kind == "blocked", url
    assert feed_server.hits == 0


def test_allowlisted_loopback_is_fetched(feed_server: Server) -> None:
    response = Fetcher(allow_networks=[f"127.0.0.1:{feed_server.port}"]).fetch(feed_server.url())
    assert response.status == 200 and b"<rss" in response.body


def test_redirect_to_loopback_and_metadata_refused_without_allowlist(feed_server: Server) -> None:
    """The first hop is allowed by port; the redirect target is checked again at connect."""
    for target in (
        feed_server.url(),  # 127.0.0.1 on a port the allowlist does not name
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "file:///etc/passwd",
    ):
        redirector = Server(_answer(302, Location=target))
        try:
            fetcher = Fetcher(deadline_s=5, allow_networks=[f"127.0.0.1:{redirector.port}"])
            with pytest.raises(FeedError) as info:
                fetcher.fetch(redirector.url())
            assert info.value.kind == "blocked", target
            assert redirector.hits == 1
        finally:
            redirector.close()
    assert feed_server.hits == 0
    # The same redirect is followed when the allowlist covers the target: the refusal above
    # is the guard's doing, not a broken redirect.
    redirector = Server(_answer(302, Location=feed_server.url()))
    try:
        response = Fetcher(allow_networks=["127.0.0.1/32"]).fetch(redirector.url())
        assert response.status == 200 and feed_server.hits == 1
    finally:
        redirector.close()


def test_redirect_loop_stops_after_five_hops() -> None:
    server = Server(_answer(301, Location="/again"))
    try:
        with pytest.raises(FeedError) as info:
            Fetcher(allow_networks=["127.0.0.1/32"]).fetch(server.url())
        assert info.value.kind == "http_error"
        assert server.hits == 6
    finally:
        server.close()
