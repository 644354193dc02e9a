"""The safe feed fetcher: one HTTP GET that a hostile server cannot abuse.

What goes in: a URL and the feed's last ETag / Last-Modified. What comes out: a
:class:`FetchResponse` (status 200 with the body, or 304), or a :class:`core.errors.FeedError`
whose ``kind`` is a :class:`core.metrics.FetchResult` value. Nothing else escapes.

Guarantees:
- SSRF guard at connect time: every TCP connection (the first request and every redirect hop,
  at most ``MAX_REDIRECTS``) goes to an address that was resolved and checked in the same call:
  no private, loopback, link-local, multicast, reserved, unspecified or cloud-metadata address
  (IPv4 and IPv6, mapped and NAT64 forms unwrapped) unless the allowlist names it. An allowlist
  entry is a network (``127.0.0.1/32``, ``10.0.0.0/8``) or a network and one port
  (``127.0.0.1:8080``, ``[::1]:8080``), so a test can allow one local server and still see a
  redirect to another local port refused. Only http and https.
- A total deadline: every socket read and write is cut at ``deadline_s`` after the fetch began,
  so a slow drip (of headers or of body) cannot stretch a fetch past it.
- A cap on decompressed bytes, applied while decoding (gzip bombs and chained encodings stop at
  the cap without inflating further).
- ETag and Last-Modified are echoed exactly as received.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from core.errors import FeedError
from core.metrics import FetchResult

MAX_REDIRECTS = 5
MAX_ENCODINGS = 2
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, "
    "text/xml;q=0.9, */*;q=0.1"
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AllowEntry:
    """One allowlist entry: a network, and optionally the only port allowed in it."""

    network: Network
    port: int | None = None

    def admits(self, address: Address, port: int | None) -> bool:
        if self.port is not None and port != self.port:
            return False
        return _unwrap(address) in self.network or address in self.network


@dataclass(frozen=True)
class FetchResponse:
    """A successful fetch: 200 with a body, or 304 (``body`` empty)."""

    status: int
    url: str
    body: bytes
    headers: dict[str, str]
    elapsed_s: float

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def parse_networks(entries: Iterable[str]) -> tuple[AllowEntry, ...]:
    """Parse allowlist entries: ``127.0.0.1/32``, ``10.0.0.0/8``, ``127.0.0.1:8080``,
    ``[::1]:8080`` or ``[fd00::/8]:443``. Raises ``ValueError`` naming a malformed entry."""
    parsed: list[AllowEntry] = []
    for raw in entries:
        text = raw.strip()
        if not text:
            continue
        port: int | None = None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ValueError(f"allowlist entry {raw!r}: expected [address]:port")
                port = int(rest[1:])
            text = host
        elif text.count(":") == 1:
            text, _, port_text = text.partition(":")
            if not port_text.isdigit():
                raise ValueError(f"allowlist entry {raw!r}: expected address:port")
            port = int(port_text)
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"allowlist entry {raw!r}: port out of range")
        parsed.append(AllowEntry(ipaddress.ip_network(text, strict=False), port))
    return tuple(parsed)


def _unwrap(address: Address) -> Address:
    """The IPv4 address hidden in an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
        if address in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def address_is_public(address: Address) -> bool:
    """True when ``address`` is a globally routable unicast address (metadata IPs excluded)."""
    inner = _unwrap(address)
    for candidate in {address, inner}:
        if (
            candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
            or not candidate.is_global
        ):
            return False
    # Cloud metadata endpoints (169.254.169.254 is link-local already; these are not).
    return str(inner) not in {"100.100.100.200", "fd00:ec2::254"}


def check_address(
    address: Address, allow: Sequence[AllowEntry] = (), port: int | None = None
) -> None:
    """Raise ``FeedError(blocked)`` unless ``address`` is public or allowed (on ``port``)."""
    if any(entry.admits(address, port) for entry in allow):
        return
    if not address_is_public(address):
        raise FeedError(FetchResult.BLOCKED, f"address {address} is not public")


class _Deadline(threading.local):
    """The monotonic deadline of the fetch running in this thread (None outside a fetch)."""

    at: float | None = None


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write ends by the current fetch's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def _timeout(self, timeout: float | None, error: type[Exception]) -> float | None:
        at = self._deadline.at
        if at is None:
            return timeout
        remaining = at - time.monotonic()
        if remaining <= 0:
            raise error("total deadline of the fetch passed")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, self._timeout(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks and connects in one step, so a DNS answer cannot change in between."""

    def __init__(self, allow: Sequence[AllowEntry], deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow = allow
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if host.lower().rstrip(".") in _METADATA_HOSTS:
            raise FeedError(FetchResult.BLOCKED, f"host {host} is a metadata service")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FeedError(FetchResult.NETWORK_ERROR, f"cannot resolve {host}: {exc}") from None
        last_error: Exception | None = None
        for _family, _type, _proto, _name, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            check_address(address, self._allow, port)
            try:
                stream = self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
                return _DeadlineStream(stream, self._deadline)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise FeedError(FetchResult.NETWORK_ERROR, f"cannot connect to {host}: {last_error}")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the guarded network backend (httpx has no public hook for it)."""

    def __init__(self, allow: Sequence[AllowEntry], deadline: _Deadline, pool_size: int) -> None:
        super().__init__(retries=0)
        self._pool = httpcore.ConnectionPool(
            max_connections=pool_size,
            max_keepalive_connections=pool_size,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(allow, deadline),
        )


class _BoundedDecoder:
    """Decodes a chain of content encodings without ever producing more than ``cap`` bytes."""

    def __init__(self, encodings: list[str], cap: int) -> None:
        self._cap = cap
        self._size = 0
        self._stages: list[Any] = []
        # Content-Encoding lists encodings in the order applied: decode in reverse.
        for enc in reversed(encodings):
            if enc in ("gzip", "x-gzip"):
                self._stages.append(zlib.decompressobj(16 + zlib.MAX_WBITS))
            elif enc == "deflate":
                self._stages.append(_DeflateDecoder())
            elif enc in ("identity", ""):
                continue
            else:
                raise FeedError(FetchResult.HTTP_ERROR, f"unsupported content-encoding {enc!r}")

    def feed(self, data: bytes) -> bytes:
        for stage in self._stages:
            try:
                data = stage.decompress(data, self._cap - self._size + 1)
            except zlib.error as exc:
                raise FeedError(
                    FetchResult.PARSE_ERROR, f"corrupt compressed body: {exc}"
                ) from None
            if stage.unconsumed_tail:
                raise FeedError(FetchResult.TOO_LARGE, f"body inflates past {self._cap} bytes")
        self._size += len(data)
        if self._size > self._cap:
            raise FeedError(FetchResult.TOO_LARGE, f"body larger than {self._cap} bytes")
        return data


class _DeflateDecoder:
    """'deflate' as sent in the wild: zlib-wrapped, or raw deflate by broken servers."""

    def __init__(self) -> None:
        self._obj: Any = None
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._obj is None:
            raw = len(data) < 2 or (data[0] & 0x0F) != 8 or ((data[0] << 8) | data[1]) % 31 != 0
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        out: bytes = self._obj.decompress(data, max_length)
        self.unconsumed_tail = self._obj.unconsumed_tail
        return out


class Fetcher:
    """Fetches feeds safely; one instance is shared by the scheduler's threads."""

    def __init__(
        self,
        *,
        deadline_s: float = 30.0,
        max_bytes: int = 10_000_000,
        allow_networks: Sequence[str] = (),
        user_agent: str = "newsstream",
        pool_size: int = 16,
    ) -> None:
        self._deadline_s = deadline_s
        self._max_bytes = max_bytes
        self._allow = parse_networks(allow_networks)
        self._deadline = _Deadline()
        self._client = httpx.Client(
            transport=_GuardedTransport(self._allow, self._deadline, pool_size),
            follow_redirects=False,
            trust_env=False,
            headers={
                "User-Agent": user_agent,
                "Accept": _ACCEPT,
                "Accept-Encoding": "gzip, deflate",
            },
        )

    def close(self) -> None:
        self._client.close()

    def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResponse:
        """GET ``url`` (conditional when validators are given) within the deadline and caps."""
        started = time.monotonic()
        deadline = started + self._deadline_s
        self._deadline.at = deadline
        try:
            return self._fetch(url, etag, last_modified, started, deadline)
        finally:
            self._deadline.at = None

    def _fetch(
        self,
        url: str,
        etag: str | None,
        last_modified: str | None,
        started: float,
        deadline: float,
    ) -> FetchResponse:
        # Validators are echoed byte for byte: they were decoded as Latin-1 (one char per byte),
        # so encoding them back as Latin-1 restores the server's exact bytes.
        headers: list[tuple[bytes, bytes]] = []
        for name, value in ((b"If-None-Match", etag), (b"If-Modified-Since", last_modified)):
            if value:
                try:
                    headers.append((name, value.encode("latin-1")))
                except UnicodeEncodeError:
                    continue  # not something a server sent us: send no validator
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                scheme = urlsplit(current).scheme.lower()
            except ValueError as exc:  # e.g. an unclosed IPv6 bracket
                raise FeedError(FetchResult.HTTP_ERROR, f"invalid URL {current!r}: {exc}") from None
            if scheme not in ("http", "https"):
                raise FeedError(FetchResult.BLOCKED, f"scheme {scheme!r} is not http(s)")
            try:
                result = self._one_request(current, headers, deadline)
            except httpx.TimeoutException:
                raise FeedError(
                    FetchResult.TIMEOUT, f"no answer within {self._deadline_s} s"
                ) from None
            except httpx.HTTPError as exc:
                cause = exc.__context__
                if isinstance(cause, FeedError):
                    raise cause from None
                raise FeedError(FetchResult.NETWORK_ERROR, f"{type(exc).__name__}: {exc}") from None
            except httpx.InvalidURL as exc:  # not an HTTPError in httpx's hierarchy
                raise FeedError(FetchResult.HTTP_ERROR, f"invalid URL {current!r}: {exc}") from None
            if isinstance(result, str):  # a redirect target
                try:
                    current = urljoin(current, result)
                except ValueError as exc:
                    raise FeedError(
                        FetchResult.HTTP_ERROR, f"invalid redirect {result!r}: {exc}"
                    ) from None
                continue
            status, body, response_headers = result
            return FetchResponse(
                status, current, body, response_headers, time.monotonic() - started
            )
        raise FeedError(FetchResult.HTTP_ERROR, f"more than {MAX_REDIRECTS} redirects")

    def _one_request(
        self, url: str, headers: list[tuple[bytes, bytes]], deadline: float
    ) -> str | tuple[int, bytes, dict[str, str]]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FeedError(FetchResult.TIMEOUT, f"deadline of {self._deadline_s} s passed")
        # Reads and writes are also cut at the deadline by _DeadlineStream, whatever the server
        # trickles; these timeouts only bound a single wait.
        timeout = httpx.Timeout(
            connect=min(remaining, 10.0), read=remaining, write=remaining, pool=remaining
        )
        with self._client.stream("GET", url, headers=headers, timeout=timeout) as response:
            status = response.status_code
            response_headers = _decode_headers(response.headers.raw)
            if status in (301, 302, 303, 307, 308):
                location: str | None = response.headers.get("location")
                if not location:
                    raise FeedError(FetchResult.HTTP_ERROR, f"redirect {status} without Location")
                return location
            if status == 304:
                return status, b"", response_headers
            if status in (429, 503):
                raise _rate_limited(status, response_headers)
            if status != 200:
                raise FeedError(FetchResult.HTTP_ERROR, f"HTTP {status}")
            declared = response.headers.get("content-length", "")
            encodings = [
                e.strip().lower()
                for e in response.headers.get("content-encoding", "").split(",")
                if e.strip()
            ]
            if len(encodings) > MAX_ENCODINGS:
                raise FeedError(FetchResult.TOO_LARGE, f"{len(encodings)} chained encodings")
            if not encodings and declared.isdigit() and int(declared) > self._max_bytes:
                raise FeedError(FetchResult.TOO_LARGE, f"Content-Length {declared} over the cap")
            decoder = _BoundedDecoder(encodings, self._max_bytes)
            chunks: list[bytes] = []
            for raw in response.iter_raw(chunk_size=65_536):
                if time.monotonic() > deadline:
                    raise FeedError(FetchResult.TIMEOUT, f"deadline of {self._deadline_s} s passed")
                chunks.append(decoder.feed(raw))
            body = b"".join(chunks)
        return status, body, response_headers


def _decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Response headers with lower-case names, values decoded one char per byte (Latin-1),
    repeated headers joined with ``, ``."""
    decoded: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        decoded[key] = f"{decoded[key]}, {text}" if key in decoded else text
    return decoded


class RateLimited(FeedError):
    """429 or 503; ``retry_after_s`` is the server's Retry-After when it gave one."""

    def __init__(self, status: int, retry_after_s: float | None) -> None:
        super().__init__(FetchResult.RATE_LIMITED, f"HTTP {status}")
        self.retry_after_s = retry_after_s


def _rate_limited(status: int, headers: dict[str, str]) -> RateLimited:
    value = headers.get("retry-after", "").strip()
    seconds: float | None = None
    if value.isdigit():
        seconds = float(value)
    elif value:
        from email.utils import parsedate_to_datetime

        try:
            seconds = max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            seconds = None
    return RateLimited(status, seconds)
