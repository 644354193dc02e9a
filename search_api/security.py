"""Who may call the API and how often: API keys and per-caller rate limits.

- Keys: with ``api_read_keys`` or ``api_admin_keys`` configured, every route except ``/``,
  ``/healthz``, ``/readyz``, ``/metrics``, the docs and the dashboard page needs a key in
  ``X-API-Key`` (or ``Authorization: Bearer``); read keys may search and read, admin keys may do
  everything. Keys are compared in constant time. Without keys the API is open, and binds to
  127.0.0.1 by default.
- Rate limits: a token bucket per key, or per client address without one
  (``api_rate_limit_per_minute``, burst of the same size); over the limit the answer is 429 with
  ``Retry-After``. Buckets live in the process (one API replica = one budget); the table is
  bounded and idle callers are forgotten.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from core.settings import Settings

OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc"})
MAX_BUCKETS = 10_000


class Role(Enum):
    """What a caller may do."""

    NONE = 0
    READ = 1
    ADMIN = 2


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
