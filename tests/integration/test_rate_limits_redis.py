"""API rate limits shared through a real Redis: two API apps (two replicas in one process, as
far as the limit is concerned) count one budget per caller, Redis holds no API key, and a Redis
stopped mid-run makes each replica fall back to its own limit (never a 500).

The requests go to a route that needs neither Milvus nor Kafka (an unknown path: 404 when the
request passes, 429 when it is limited), so the only server these tests use is Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from newsstream.stack.launchers import free_port
from search_api import rate_limits
from search_api.app import create_app
from search_api.rate_limits import REDIS_KEY_PREFIX

from conftest import LocalServer

LIMIT = 5
PROBE = "/no/such/route"  # passes the guard (limits apply) and touches no index


def _settings(redis_url: str | None, key: str) -> Settings:
    return Settings(
        api_search_events=False,
        api_read_keys=[SecretStr(key)],
        api_rate_limit_per_minute=LIMIT,
        api_rate_limit_redis_url=SecretStr(redis_url) if redis_url else None,
    )


def _replicas(redis_url: str | None, key: str, count: int = 2) -> list[TestClient]:
    """``count`` API apps built from the same settings, as replicas behind a load balancer."""
    return [
        TestClient(create_app(_settings(redis_url, key)), headers={"X-API-Key": key})
        for _ in range(count)
    ]


def _statuses(replicas: list[TestClient], requests: int) -> list[int]:
    """Send ``requests`` requests round-robin over the replicas; their status codes."""
    return [replicas[i % len(replicas)].get(PROBE).status_code for i in range(requests)]


@pytest.fixture
def api_key() -> str:
    return "rl-" + uuid.uuid4().hex


@pytest.fixture
def redis_url(redis_server: LocalServer) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"


def test_two_replicas_sharing_redis_allow_the_limit_once_in_total(
    redis_url: str, api_key: str
) -> None:
    replicas = _replicas(redis_url, api_key)
    statuses = _statuses(replicas, 4 * LIMIT)
    assert statuses.count(404) == LIMIT, statuses  # not LIMIT per replica
    assert statuses[:LIMIT] == [404] * LIMIT and set(statuses[LIMIT:]) == {429}
    for replica in replicas:
        refused = replica.get(PROBE)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        # the first request leaves the 60 s window within a minute
        assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_callers_have_their_own_budget_across_replicas(redis_url: str, api_key: str) -> None:
    replicas = _replicas(redis_url, api_key)
    assert _statuses(replicas, LIMIT + 1).count(404) == LIMIT
    other = "rl-" + uuid.uuid4().hex
    assert _statuses(_replicas(redis_url, other), LIMIT).count(404) == LIMIT


def test_redis_holds_namespaced_counts_and_never_the_api_key(redis_url: str, api_key: str) -> None:
    _statuses(_replicas(redis_url, api_key), 2)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        ours = [name for name in client.keys(f"{REDIS_KEY_PREFIX}:*") if client.llen(name) == 2]
        assert ours, "the two requests were not counted under the prefix"
        everything = client.keys("*")
        assert all(api_key not in name for name in everything)
        assert all(api_key not in value for name in ours for value in client.lrange(name, 0, -1))
    finally:
        client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalServer]:
    """A redis-server of this test alone, so stopping it leaves the session's Redis alone."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    port = free_port()
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(tmp_path)]
    server = LocalServer(argv, port, tmp_path / "redis.log")
    server.start(20)
    yield server
    server.stop()


def _fallbacks(replica: TestClient) -> float:
    for line in replica.get("/metrics").text.splitlines():
        if line.startswith("newsstream_api_rate_limit_fallbacks_total "):
            return float(line.split()[1])
    raise AssertionError("newsstream_api_rate_limit_fallbacks_total is not on /metrics")


def test_redis_stopped_mid_run_each_replica_falls_back_to_its_own_limit(
    own_redis: LocalServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limits, "REDIS_RETRY_S", 0.2)  # try Redis again soon after it is back
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    replicas = _replicas(url, api_key)
    assert _statuses(replicas, LIMIT + 1).count(404) == LIMIT  # shared while Redis is up
    before = _fallbacks(replicas[0])

    own_redis.stop()
    # Fail open: each replica now counts on its own, so each allows the limit (no 500, no 503).
    statuses = _statuses(replicas, 2 * (LIMIT + 1))
    assert sorted(statuses) == [404] * (2 * LIMIT) + [429] * 2, statuses
    assert _fallbacks(replicas[0]) - before == 2 * (LIMIT + 1)
    limited = replicas[0].get(PROBE)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1

    own_redis.start(20)  # an empty Redis (no persistence): the window starts afresh
    shared_again = False
    for _ in range(200):  # bounded: the replicas try Redis again every 0.2 s
        replicas[0].get(PROBE)
        client = redis.Redis.from_url(url)
        try:
            shared_again = bool(client.keys(f"{REDIS_KEY_PREFIX}:*"))
        finally:
            client.close()
        if shared_again:
            break
        time.sleep(0.05)
    assert shared_again, "the replica never counted in Redis again after it came back"


def test_a_paused_redis_is_an_outage_not_a_hung_request(
    own_redis: LocalServer, api_key: str
) -> None:
    assert own_redis.process is not None
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    replica = _replicas(url, api_key, count=1)[0]
    assert replica.get(PROBE).status_code == 404  # counted in Redis
    os.kill(own_redis.process.pid, signal.SIGSTOP)  # accepts connections, never answers
    try:
        # the client's read timeout turns the silence into the fallback: the replica's own
        # bucket (LIMIT a minute, full) answers, then limits
        statuses = _statuses([replica], LIMIT + 1)
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert statuses == [404] * LIMIT + [429], statuses
