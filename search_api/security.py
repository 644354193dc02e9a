"""Who may call the API and how often: API keys and per-caller rate limits.

- Keys: with ``api_read_keys`` or ``api_admin_keys`` configured, every route except ``/``,
  ``/healthz``, ``/readyz``, ``/metrics``, the docs (``/docs``, ``/redoc``, ``/openapi.json``
  and their files) and the dashboard page and its files needs a key in ``X-API-Key`` (or
  ``Authorization: Bearer``). A read key may call every GET route and ``POST /search``; an admin
  key may call everything a read key may and, besides, any other method (the story edit
  ``POST /stories/{id}/split``, ``DELETE /articles/{id}``) and the admin reads
  (:data:`ADMIN_READ_PATHS`: the audit, the feed registry, the DLQ; and the reindex jobs).
  Keys are compared in constant time.
- Who: the audit names a caller by :func:`key_fingerprint` (12 hex characters of a SHA-256 of
  the key; never the key), or ``loopback`` when the API has no keys (it then listens on
  loopback only).
- Exposure: without keys the API is open, so it may listen only on loopback (127.0.0.0/8,
  ``::1``, ``localhost``); :func:`require_keys_beyond_loopback` refuses any other bind address.
- Rate limits: a token bucket per key, or per client address without one
  (``api_rate_limit_per_minute``, burst of the same size); over the limit the answer is 429 with
  ``Retry-After``. :class:`RateLimiter` keeps the buckets in the process (one API replica = one
  budget; the table is bounded and idle callers are forgotten); :mod:`search_api.rate_limits`
  chooses it or the limits shared by every replica through Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from core.errors import ConfigurationError
from core.settings import Settings
from search_api.docs import DOCS_STATIC_URL

OPEN_PATHS = frozenset(
    {
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/docs/oauth2-redirect",
        "/openapi.json",
        "/redoc",
        "/dashboard",
    }
)
OPEN_PREFIXES = ("/dashboard/static/", f"{DOCS_STATIC_URL}/")
#: GET routes that need an admin key (every other GET needs a read key).
ADMIN_READ_PATHS = frozenset({"/audit", "/admin/feeds", "/admin/dlq"})
MAX_BUCKETS = 10_000


class Role(Enum):
    """What a caller may do."""

    NONE = 0
    READ = 1
    ADMIN = 2


def is_open_path(path: str) -> bool:
    """True for the routes anyone may call, keys or not (health, metrics, docs, the page)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def needs_admin(method: str, path: str) -> bool:
    """True when a request needs an admin key: any method that may change data (``POST
    /search`` reads, so it does not) and the admin reads of :data:`ADMIN_READ_PATHS`."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return path in ADMIN_READ_PATHS or path.startswith("/admin/reindex")
    return path != "/search"


def key_fingerprint(key: str) -> str:
    """A short, stable name for an API key in records and logs: ``key:`` and 12 hex characters
    of its SHA-256. Naming the key this way does not reveal it (a long random key cannot be
    guessed back from 48 bits of its hash)."""
    digest = hashlib.sha256(b"newsstream-api-key\0" + key.encode()).hexdigest()
    return f"key:{digest[:12]}"


def caller_identity(headers: dict[str, str], keys_enabled: bool) -> str:
    """Who made a request, for the audit: the fingerprint of its key when the API has keys,
    else ``loopback`` (a key-less API listens on loopback only). ``headers`` lower-case."""
    key = presented_key(headers)
    if keys_enabled and key:
        return key_fingerprint(key)
    return "loopback"


def is_loopback_host(host: str) -> bool:
    """True when binding to ``host`` keeps the API on this machine (127.0.0.0/8, ::1, localhost).

    ``0.0.0.0``, ``::``, an empty host (every interface) and any other address or name are not.
    """
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def require_keys_beyond_loopback(settings: Settings) -> None:
    """Raise :class:`ConfigurationError` when the API would listen beyond loopback without keys.

    An open API on a reachable address lets anyone search and read the index; the fix is a key
    list or a loopback bind address, and the message says both.
    """
    if is_loopback_host(settings.api_host) or settings.api_read_keys or settings.api_admin_keys:
        return
    raise ConfigurationError(
        f"the API would listen on {settings.api_host!r} (NEWSSTREAM_API_HOST), beyond loopback, "
        "with no API keys configured: anyone who reaches it could search and read the index. "
        "Expected API keys for any address other than 127.0.0.0/8, ::1 or localhost: set "
        "NEWSSTREAM_API_READ_KEYS (and/or NEWSSTREAM_API_ADMIN_KEYS) to a JSON list, e.g. "
        "NEWSSTREAM_API_READ_KEYS='[\"a-long-random-key\"]', or bind to 127.0.0.1."
    )


@dataclass
class _Bucket:
    tokens: float
    updated: float


class KeyRing:
    """The configured keys; ``role(presented)`` says what a presented key allows."""

    def __init__(self, settings: Settings) -> None:
        self._read = [k.get_secret_value().encode() for k in settings.api_read_keys]
        self._admin = [k.get_secret_value().encode() for k in settings.api_admin_keys]

    @property
    def enabled(self) -> bool:
        return bool(self._read or self._admin)

    def role(self, presented: str | None) -> Role:
        if not self.enabled:
            return Role.ADMIN
        if not presented:
            return Role.NONE
        candidate = presented.encode()
        # Check every key (no early exit) so timing does not reveal which list matched.
        admin = any([hmac.compare_digest(candidate, key) for key in self._admin])
        read = any([hmac.compare_digest(candidate, key) for key in self._read])
        if admin:
            return Role.ADMIN
        return Role.READ if read else Role.NONE


class RateLimiter:
    """Token buckets per caller; :meth:`check` returns 0 or the seconds to wait."""

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, caller: str, now: float | None = None) -> float:
        if self._rate <= 0:
            return 0.0
        current = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.pop(caller, None) or _Bucket(self._burst, current)
            bucket.tokens = min(
                self._burst, bucket.tokens + (current - bucket.updated) * self._rate
            )
            bucket.updated = current
            self._buckets[caller] = bucket
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self._rate


def presented_key(headers: dict[str, str]) -> str | None:
    """The API key of a request: ``X-API-Key``, or a bearer token."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None
