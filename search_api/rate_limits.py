"""How often a caller may call the API: one limit per key (or client address), counted either in
this process or in Redis, where every API replica shares the count.

What goes in: a caller name (``key:<api key>`` or ``ip:<address>``, made by the API's guard) and
the settings ``api_rate_limit_per_minute`` and ``api_rate_limit_redis_url``. What comes out:
:meth:`CallerLimiter.check` answers 0 when the request may pass, else the seconds until one
would pass (the API turns that into 429 with ``Retry-After``).

- Without a Redis URL: :class:`search_api.security.RateLimiter`, a token bucket per caller in
  the process (burst of the limit, refilled at the limit per minute). Each replica has its own.
- With a Redis URL: :class:`SharedRateLimiter`, the ``limits`` library's moving window in Redis:
  at most ``api_rate_limit_per_minute`` requests of a caller in any 60 seconds, counted once for
  all replicas. ``Retry-After`` is the time until the oldest request of the window leaves it.
- Redis keys start with :data:`REDIS_KEY_PREFIX` and name a caller by :func:`caller_digest` (a
  SHA-256): neither an API key nor a client address is stored in Redis.
- Redis away (refused, timed out, any Redis error): the API fails open to the per-process
  bucket, so a search API stays usable while each replica enforces the limit on its own; a
  warning is logged once per outage, ``newsstream_api_rate_limit_fallbacks_total`` counts the
  checks answered locally, and Redis is tried again after :data:`REDIS_RETRY_S` seconds. A Redis
  failure never turns into a 500.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Protocol

from limits import RateLimitItemPerMinute
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.errors import StorageError
from limits.storage import MovingWindowSupport, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from core.errors import ConfigurationError
from core.metrics import API_RATE_LIMIT_FALLBACKS
from core.settings import Settings
from search_api.security import RateLimiter

log = logging.getLogger(__name__)

#: Every rate-limit key in Redis starts with this (one deployment may share a Redis).
REDIS_KEY_PREFIX = "newsstream:api-rate-limit"
#: Seconds the API counts locally after a Redis failure before it tries Redis again: a Redis
#: that is away costs one timeout per this interval, not one per request.
REDIS_RETRY_S = 5.0
#: Connect and read timeout of the Redis client (a limit check must stay cheap).
REDIS_TIMEOUT_S = 0.25
#: Smallest wait reported for a refused request (the window may end within the same instant).
MIN_WAIT_S = 0.001


class CallerLimiter(Protocol):
    """What the API's guard needs: 0 when ``caller`` may go on, else the seconds to wait."""

    def check(self, caller: str) -> float: ...


def caller_digest(caller: str) -> str:
    """The name of ``caller`` in Redis: 32 hex characters of a SHA-256, so neither an API key
    nor a client address is ever stored there; the same caller always gets the same name."""
    return hashlib.sha256(b"newsstream-rate-limit\0" + caller.encode()).hexdigest()[:32]


def retry_after_s(window_reset_at: float, now: float) -> float:
    """Seconds from ``now`` until the window's oldest request leaves it (wall-clock seconds),
    at least :data:`MIN_WAIT_S` so a refused request never says "retry in 0"."""
    return max(window_reset_at - now, MIN_WAIT_S)


class SharedRateLimiter:
    """Per-caller limits counted in a shared ``limits`` storage (Redis in production).

    ``storage`` must support the moving window (Redis and the in-memory storage do). ``local``
    answers while the storage fails (see the module docstring). Thread-safe: the API calls
    :meth:`check` from its thread pool.
    """

    def __init__(
        self,
        per_minute: int,
        storage: Storage,
        local: CallerLimiter,
        retry_s: float = REDIS_RETRY_S,
    ) -> None:
        if not isinstance(storage, MovingWindowSupport):
            raise ValueError(f"{type(storage).__name__} does not support a moving window")
        self._per_minute = per_minute
        self._item = RateLimitItemPerMinute(max(per_minute, 1), namespace="api")
        self._strategy = MovingWindowRateLimiter(storage)
        self._local = local
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._down_until: float | None = None  # monotonic time; None while the storage answers

    @property
    def shared(self) -> bool:
        """False while the storage is considered away and checks are answered locally."""
        return self._down_until is None

    def check(self, caller: str) -> float:
        """0 when ``caller`` may make one more request (and counts it), else the seconds until
        one would pass. Never raises for a storage failure: the local limiter answers then."""
        if self._per_minute <= 0:
            return 0.0
        down_until = self._down_until
        if down_until is not None and time.monotonic() < down_until:
            return self._fall_back(caller)
        name = caller_digest(caller)
        try:
            if self._strategy.hit(self._item, name):
                wait = 0.0
            else:
                stats = self._strategy.get_window_stats(self._item, name)
                wait = retry_after_s(stats.reset_time, time.time())
        except StorageError as exc:
            self._mark_down(exc.storage_error)
            return self._fall_back(caller)
        self._mark_up()
        return wait

    def _fall_back(self, caller: str) -> float:
        API_RATE_LIMIT_FALLBACKS.inc()
        return self._local.check(caller)

    def _mark_down(self, error: Exception) -> None:
        with self._lock:
            first = self._down_until is None
            self._down_until = time.monotonic() + self._retry_s
        if first:
            log.warning(
                "rate limits: Redis is unreachable (%s: %s); this API replica counts limits on "
                "its own until it answers again (retrying every %.0f s)",
                type(error).__name__,
                error,
                self._retry_s,
            )

    def _mark_up(self) -> None:
        if self._down_until is None:
            return
        with self._lock:
            was_down = self._down_until is not None
            self._down_until = None
        if was_down:
            log.warning("rate limits: Redis answers again; limits are shared by every replica")


def redis_storage(url: str) -> RedisStorage:
    """The ``limits`` Redis storage for ``url``, with short timeouts and no client retries (the
    limiter's own fallback handles failures). Connects lazily: a Redis that is away at start is
    an outage, not a configuration error.

    Raises :class:`ConfigurationError` when ``url`` is not a Redis URL.
    """
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    scheme = url.split("://", 1)[0] if "://" in url else ""
    try:
        return RedisStorage(
            url,
            key_prefix=REDIS_KEY_PREFIX,
            wrap_exceptions=True,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),  # type: ignore[arg-type]  # a redis.Redis option
        )
    except (LimitsConfigurationError, ValueError) as exc:
        # Only the scheme is quoted: the URL may hold a password.
        raise ConfigurationError(
            "NEWSSTREAM_API_RATE_LIMIT_REDIS_URL: expected a Redis URL "
            "(redis://host:port/db, rediss://... or unix:///path), found one with scheme "
            f"{scheme!r} ({type(exc).__name__})"
        ) from None


def rate_limiter(settings: Settings) -> CallerLimiter:
    """The API's limiter for ``settings``: shared through Redis when
    ``api_rate_limit_redis_url`` is set (and a limit is), else per process."""
    local = RateLimiter(settings.api_rate_limit_per_minute)
    url = settings.api_rate_limit_redis_url
    if url is None or settings.api_rate_limit_per_minute <= 0:
        return local
    storage = redis_storage(url.get_secret_value())
    return SharedRateLimiter(settings.api_rate_limit_per_minute, storage, local, REDIS_RETRY_S)
