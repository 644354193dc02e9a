"""The fetcher's SSRF guard: address rules, the connect-time check, and redirect hops."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import FeedError
from producers.fetcher import Fetcher, address_is_public, check_address, parse_networks

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


BLOCKED = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",
    "127.8.8.8",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "100.100.100.200",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "2001:db8::1",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not address_is_public(ip)
    with pytest.raises(FeedError) as info:
        check_address(ip)
    assert info.value.kind == "blocked"


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    check_address(ipaddress.ip_address(address))


def test_allowlist_admits_its_network_and_port_only() -> None:
    allow = parse_networks(["127.0.0.1:8080", "10.1.0.0/16", "[::1]:9000"])
    check_address(ipaddress.ip_address("127.0.0.1"), allow, 8080)
    check_address(ipaddress.ip_address("::ffff:127.0.0.1"), allow, 8080)
    check_address(ipaddress.ip_address("10.1.2.3"), allow, 443)
    check_address(ipaddress.ip_address("::1"), allow, 9000)
    for address, port in [("127.0.0.1", 8081), ("10.2.0.1", 443), ("::1", 9001)]:
        with pytest.raises(FeedError):
            check_address(ipaddress.ip_address(address), allow, port)
    with pytest.raises(ValueError):
        parse_networks(["127.0.0.1:http"])


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


@pytest.mark.parametrize(
    "scheme_url", ["file:///etc/passwd", "ftp://example.com/feed", "gopher://x"]
)
def test_only_http_and_https(scheme_url: str) -> None:
    with pytest.raises(FeedError) as info:
        Fetcher().fetch(scheme_url)
    assert info.value.kind == "blocked"


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
