"""Recency boost, story collapsing, API keys and rate limits (pure parts)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from core.errors import ConfigurationError
from core.settings import Settings
from search_api.ranking import apply_recency, collapse_stories
from search_api.results import SearchResult as Hit
from search_api.security import (
    KeyRing,
    RateLimiter,
    Role,
    is_loopback_host,
    is_open_path,
    presented_key,
    require_keys_beyond_loopback,
)


def hit(
    ident: str, score: float, published: int | None = None, story: str = "", url: str = ""
) -> Hit:
    return Hit(
        id=ident,
        title=ident,
        snippet="",
        url=url or f"https://{ident}.example/",
        source=f"{ident}.example",
        published_at=published,
        score=score,
        story_id=story or ident,
    )


def test_recency_prefers_fresh_news_among_close_scores() -> None:
    now = 1_000_000.0
    old = hit("old", 0.80, published=int(now - 7 * 86400))
    fresh = hit("fresh", 0.75, published=int(now - 3600))
    ranked = apply_recency([old, fresh], half_life_s=86400, now=now)
    assert [h.id for h in ranked] == ["fresh", "old"]
    # A much better old match still wins: the boost re-orders, it does not erase relevance.
    strong_old = hit("strong", 0.95, published=int(now - 86400))
    weak_fresh = hit("weak", 0.40, published=int(now))
    assert apply_recency([weak_fresh, strong_old], 86400, now)[0].id == "strong"


def test_collapse_keeps_the_best_of_a_story_and_lists_the_others() -> None:
    hits = [
        hit("a", 0.9, story="s1"),
        hit("b", 0.8, story="s2"),
        hit("c", 0.7, story="s1", url="https://c.example/x"),
    ]
    collapsed = collapse_stories(hits)
    assert [h.id for h in collapsed] == ["a", "b"]
    assert collapsed[0].also_reported_by == [{"source": "c.example", "url": "https://c.example/x"}]


def test_keys_give_roles_and_nothing_without_a_key() -> None:
    ring = KeyRing(Settings(api_read_keys=[SecretStr("r1")], api_admin_keys=[SecretStr("a1")]))
    assert ring.enabled
    assert ring.role("r1") is Role.READ
    assert ring.role("a1") is Role.ADMIN
    assert ring.role("nope") is Role.NONE
    assert ring.role(None) is Role.NONE
    assert KeyRing(Settings()).role(None) is Role.ADMIN  # no keys configured: open
    assert presented_key({"authorization": "Bearer tok"}) == "tok"
    assert presented_key({"x-api-key": " k "}) == "k"


def test_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(per_minute=60)  # one per second, burst 60
    now = 100.0
    assert all(limiter.check("ip:1", now) == 0 for _ in range(60))
    wait = limiter.check("ip:1", now)
    assert 0.9 < wait <= 1.0
    assert limiter.check("ip:2", now) == 0  # callers do not share a budget
    assert limiter.check("ip:1", now + 1.01) == 0


def test_a_key_in_both_lists_is_admin_and_admin_outranks_read() -> None:
    ring = KeyRing(Settings(api_read_keys=[SecretStr("k")], api_admin_keys=[SecretStr("k")]))
    assert ring.role("k") is Role.ADMIN
    assert Role.ADMIN.value > Role.READ.value > Role.NONE.value
    only_admin = KeyRing(Settings(api_admin_keys=[SecretStr("a1")]))
    assert only_admin.enabled and only_admin.role("a1") is Role.ADMIN
    assert only_admin.role("r1") is Role.NONE


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", " 127.0.0.1 "]
)
def test_loopback_hosts_need_no_keys(host: str) -> None:
    assert is_loopback_host(host)
    require_keys_beyond_loopback(Settings(api_host=host))  # does not raise


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "192.168.1.5", "10.0.0.1", "api.example.org", "128.0.0.1"]
)
def test_any_other_host_without_keys_is_refused_with_the_fix_in_the_message(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ConfigurationError) as refused:
        require_keys_beyond_loopback(Settings(api_host=host))
    message = str(refused.value)
    assert repr(host) in message  # what was found
    assert "NEWSSTREAM_API_READ_KEYS" in message and "127.0.0.1" in message  # how to fix
    require_keys_beyond_loopback(Settings(api_host=host, api_read_keys=[SecretStr("r")]))
    require_keys_beyond_loopback(Settings(api_host=host, api_admin_keys=[SecretStr("a")]))


def test_open_paths_are_health_metrics_docs_and_the_dashboard_page_only() -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"):
        assert is_open_path(path), path
    assert is_open_path("/static-offline-docs/swagger-ui-bundle.js")
    assert is_open_path("/dashboard") and is_open_path("/dashboard/static/dashboard.js")
    for path in ("/search", "/stats", "/feeds", "/trends", "/dashboard/data", "/articles/x"):
        assert not is_open_path(path), path
    assert not is_open_path("/docsx") and not is_open_path("/static-offline-docs")
