"""Rate limits shared by API replicas (pure parts): the moving window's arithmetic and its
Retry-After on the ``limits`` in-memory storage, names in Redis, and the fail-open fallback."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from limits.errors import StorageError
from limits.storage import MemoryStorage
from prometheus_client import REGISTRY
from pydantic import SecretStr

from core.errors import ConfigurationError
from core.settings import Settings
from search_api import rate_limits
from search_api.rate_limits import (
    REDIS_KEY_PREFIX,
    SharedRateLimiter,
    caller_digest,
    rate_limiter,
    retry_after_s,
)
from search_api.security import RateLimiter

FALLBACKS = "newsstream_api_rate_limit_fallbacks_total"


class Clock:
    """Wall and monotonic time that move only when the test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    stand_in = SimpleNamespace(time=fake.time, monotonic=fake.monotonic)
    # The window's entries are stamped by the storage; the wait is computed by our module.
    monkeypatch.setattr("limits.storage.memory.time", stand_in)
    monkeypatch.setattr(rate_limits, "time", stand_in)
    return fake


class FlakyStorage(MemoryStorage):
    """The in-memory storage, failing like an unreachable Redis while ``down`` is set."""

    down = False

    def _fail_if_down(self) -> None:
        if self.down:
            raise StorageError(ConnectionError("Connection refused"))

    def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
        self._fail_if_down()
        return super().acquire_entry(*args, **kwargs)

    def get_moving_window(self, *args: Any, **kwargs: Any) -> tuple[float, int]:
        self._fail_if_down()
        return super().get_moving_window(*args, **kwargs)


def shared(per_minute: int, storage: MemoryStorage, local_per_minute: int = 0) -> SharedRateLimiter:
    return SharedRateLimiter(per_minute, storage, RateLimiter(local_per_minute), retry_s=5.0)


def fallbacks() -> float:
    return REGISTRY.get_sample_value(FALLBACKS) or 0.0


def test_the_window_allows_the_limit_in_any_60_seconds_and_says_when_the_next_passes(
    clock: Clock,
) -> None:
    limiter = shared(3, MemoryStorage())
    assert [limiter.check("key:a") for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 20
    assert limiter.check("key:a") == pytest.approx(40.0)  # the first request leaves at +60 s
    assert limiter.check("key:b") == 0.0  # callers do not share a window
    clock.now += 40.5
    assert limiter.check("key:a") == 0.0  # the three entered at 0 s: all gone at 60 s
    clock.now += 10
    assert limiter.check("key:a") == 0.0
    assert limiter.check("key:a") == 0.0
    assert limiter.check("key:a") == pytest.approx(50.0)  # the oldest entered 10 s ago


def test_a_moving_window_does_not_reset_at_the_minute(clock: Clock) -> None:
    limiter = shared(2, MemoryStorage())
    assert limiter.check("ip:1") == 0.0
    clock.now += 30
    assert limiter.check("ip:1") == 0.0
    clock.now += 31  # a fixed window would have started afresh; one entry is still inside
    assert limiter.check("ip:1") == 0.0
    assert limiter.check("ip:1") == pytest.approx(29.0)


def test_a_refused_request_never_waits_zero() -> None:
    assert retry_after_s(100.0, 60.0) == 40.0
    assert retry_after_s(100.0, 100.0) > 0  # the API answers Retry-After of at least 1 s
    assert retry_after_s(100.0, 130.0) > 0


def test_no_limit_is_never_counted(clock: Clock) -> None:
    limiter = shared(0, MemoryStorage())
    assert all(limiter.check("ip:1") == 0.0 for _ in range(100))


def test_redis_names_callers_by_a_hash_never_by_key_or_address() -> None:
    name = caller_digest("key:s3cret-api-key")
    assert len(name) == 32 and int(name, 16) >= 0
    assert "s3cret" not in name
    assert name == caller_digest("key:s3cret-api-key")
    assert name != caller_digest("key:other") != caller_digest("ip:127.0.0.1")
    assert REDIS_KEY_PREFIX.startswith("newsstream:")


def test_redis_away_fails_open_to_the_replicas_own_limit_and_says_so(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    storage = FlakyStorage()
    limiter = shared(2, storage, local_per_minute=3)
    assert limiter.check("key:a") == 0.0 and limiter.check("key:a") == 0.0
    assert limiter.check("key:a") > 0  # shared window full
    storage.down = True
    before = fallbacks()
    with caplog.at_level(logging.WARNING, logger="search_api.rate_limits"):
        # the replica's own bucket (3 a minute) answers: open, but still limited
        assert [limiter.check("key:a") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert limiter.check("key:a") > 0
        clock.now += 6  # Redis is tried again, and is still away: the same outage
        assert limiter.check("key:b") == 0.0
    assert not limiter.shared
    assert fallbacks() - before == 5
    warnings = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request


def test_redis_is_tried_again_after_the_retry_interval(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    storage = FlakyStorage()
    limiter = shared(1, storage, local_per_minute=100)
    storage.down = True
    assert limiter.check("key:a") == 0.0
    storage.down = False
    clock.now += 1
    assert limiter.check("key:a") == 0.0  # still local: Redis is not tried on every request
    assert not limiter.shared
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="search_api.rate_limits"):
        assert limiter.check("key:a") == 0.0  # counted in the shared window again
    assert limiter.shared
    assert limiter.check("key:a") > 0  # the shared limit of 1 holds again
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_the_limiter_is_shared_only_when_a_redis_url_is_set() -> None:
    assert isinstance(rate_limiter(Settings()), RateLimiter)
    url = SecretStr("redis://127.0.0.1:6379/0")
    assert isinstance(rate_limiter(Settings(api_rate_limit_redis_url=url)), SharedRateLimiter)
    no_limit = Settings(api_rate_limit_redis_url=url, api_rate_limit_per_minute=0)
    assert isinstance(rate_limiter(no_limit), RateLimiter)


def test_a_url_that_is_not_redis_fails_at_start_without_showing_the_password() -> None:
    bad = Settings(api_rate_limit_redis_url=SecretStr("http://user:hunter2@cache:6379"))
    with pytest.raises(ConfigurationError, match="NEWSSTREAM_API_RATE_LIMIT_REDIS_URL") as info:
        rate_limiter(bad)
    assert "hunter2" not in str(info.value) and "'http'" in str(info.value)
