"""The scheduling policy: adaptive intervals, publisher hints, clamps, backoff, host limits."""

from __future__ import annotations

import random
import threading
import time

import pytest

from producers.schedule import HostLimiter, SchedulePolicy, cache_hint_s, host_of, pace_s

NOW = 1_771_400_000.0


def policy(**kwargs: float) -> SchedulePolicy:
    return SchedulePolicy(rng=random.Random(7), **kwargs)


def test_interval_follows_the_feeds_own_pace() -> None:
    hourly = [int(NOW - 600 - i * 3600) for i in range(10)]
    assert pace_s(hourly, NOW) == pytest.approx(3600)
    assert policy().after_success(entry_times=hourly, ttl_minutes=None, headers={}, now=NOW) == (
        pytest.approx(1800)
    )
    busy = [int(NOW - i * 30) for i in range(20)]
    assert policy().after_success(entry_times=busy, ttl_minutes=None, headers={}, now=NOW) == 120
    quiet = [int(NOW - 30 * 86400 - i * 60) for i in range(5)]  # fast once, silent for a month
    assert policy().after_success(entry_times=quiet, ttl_minutes=None, headers={}, now=NOW) == (
        6 * 3600
    )


def test_no_dates_means_the_default_and_garbage_dates_are_ignored() -> None:
    p = policy(default_s=300)
    assert p.after_success(entry_times=[None, None], ttl_minutes=None, headers={}, now=NOW) == 300
    future = [int(NOW + 10 * 365 * 86400), int(NOW + 20 * 365 * 86400)]
    assert p.after_success(entry_times=future, ttl_minutes=None, headers={}, now=NOW) == 300


def test_publisher_hints_lengthen_never_shorten() -> None:
    busy = [int(NOW - i * 30) for i in range(20)]
    p = policy()
    assert p.after_success(entry_times=busy, ttl_minutes=60, headers={}, now=NOW) == 3600
    headers = {"cache-control": "public, max-age=900"}
    assert p.after_success(entry_times=busy, ttl_minutes=None, headers=headers, now=NOW) == 900
    expires = {"expires": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(NOW + 1200))}
    assert p.after_success(entry_times=busy, ttl_minutes=None, headers=expires, now=NOW) == (
        pytest.approx(1200)
    )
    assert p.after_success(entry_times=busy, ttl_minutes=100_000, headers={}, now=NOW) == 6 * 3600
    assert cache_hint_s({"expires": "0"}, NOW) is None
    assert cache_hint_s({"cache-control": "no-cache"}, NOW) is None


def test_clamps_are_settable() -> None:
    p = policy(min_s=60, max_s=600, default_s=5)
    assert p.after_success(entry_times=[], ttl_minutes=None, headers={}, now=NOW) == 60
    assert p.after_not_modified(previous_s=10_000, headers={}, now=NOW) == 600
    with pytest.raises(ValueError):
        SchedulePolicy(min_s=600, max_s=60)


def test_not_modified_keeps_the_previous_interval() -> None:
    assert policy().after_not_modified(previous_s=1800, headers={}, now=NOW) == 1800


def test_errors_back_off_exponentially_with_jitter_capped_at_a_day() -> None:
    p = policy(min_s=120)
    delays = [p.after_error(streak) for streak in range(1, 20)]
    assert 60 <= delays[0] <= 120
    assert 120 <= delays[1] <= 240 and 240 <= delays[2] <= 480
    assert max(delays) <= 86_400 and delays[-1] >= 43_200
    assert len({round(p.after_error(5)) for _ in range(20)}) > 1  # jittered
    assert p.after_error(1, retry_after_s=3600) == 3600
    assert p.after_error(1, retry_after_s=10**9) == 86_400


def test_host_limiter_bounds_concurrency_per_host() -> None:
    limiter = HostLimiter(2)
    active: dict[str, int] = {}
    peak: dict[str, int] = {}
    lock = threading.Lock()

    def fetch(host: str) -> None:
        with limiter.slot(host):
            with lock:
                active[host] = active.get(host, 0) + 1
                peak[host] = max(peak.get(host, 0), active[host])
            time.sleep(0.05)
            with lock:
                active[host] -= 1

    threads = [threading.Thread(target=fetch, args=(h,)) for h in ["a", "b"] * 6]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == {"a": 2, "b": 2}
    assert host_of("http://Example.com:8080/x") == "example.com:8080"
