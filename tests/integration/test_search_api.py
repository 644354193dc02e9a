"""The search API against a real Milvus Lite server: modes, filters under attack, pagination,
similar articles, error shapes, API keys, rate limits and a Milvus outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from search_api.app import create_app
from store.client import connect
from store.writer import ArticleWriter

from worker_procs import stored_row

pytestmark = pytest.mark.integration

ARTICLES = [
    (
        "bbc.co.uk",
        "Storm floods coastal towns",
        "Heavy rain and a storm surge flooded coastal towns overnight, forcing hundreds from their homes.",
        "en",
    ),
    (
        "reuters.com",
        "Central bank holds interest rates",
        "The central bank left interest rates unchanged, citing stubborn inflation and a weak currency.",
        "en",
    ),
    (
        "lemonde.fr",
        "Élections régionales: la participation recule",
        "La participation aux élections régionales a reculé dimanche selon les premiers chiffres officiels.",
        "fr",
    ),
    (
        'we"ird\\src.example',
        "Quoted source publishes chess results",
        "A local chess club published results of its winter tournament, won by a teenager.",
        "en",
    ),
    (
        "apnews.com",
        "Wildfire spreads near the capital",
        "A wildfire spread quickly near the capital as strong winds fanned the flames, officials said.",
        "en",
    ),
]


def _rows(embedder: Any) -> list[dict[str, Any]]:
    now = int(time.time())
    rows = []
    vectors = embedder.embed([f"{t}. {b}" for _, t, b, _ in ARTICLES])
    for n, ((source, title, body, lang), vector) in enumerate(zip(ARTICLES, vectors, strict=True)):
        url = f"https://{source.replace(chr(34), '').replace(chr(92), '')}/story-{n}"
        rows.append(
            stored_row(
                url,
                title,
                f"{title}. {body}",
                vector,
                embedder.model_name,
                source=source,
                feed_id=f"feed{n % 2}",
                language=lang,
                published_at=now - n * 86400,
                ingested_at=now,
                content_hash=f"h{n}",
            )
        )
    return rows


@pytest.fixture
def indexed(make_settings: Any, embedder: Any) -> Iterator[tuple[Settings, list[dict[str, Any]]]]:
    settings = make_settings(api_search_events=False)
    client = connect(settings.milvus_uri or "")
    writer = ArticleWriter.open(client, settings, embedder.dimension)
    rows = _rows(embedder)
    assert writer.upsert(rows) == len(rows)
    client.close()
    yield settings, rows


def test_modes_find_the_right_article(indexed: Any, embedder: Any) -> None:
    settings, rows = indexed
    with TestClient(create_app(settings, embedder)) as api:
        for mode in ("semantic", "keyword", "hybrid"):
            body = api.get("/search", params={"q": "interest rates inflation", "mode": mode}).json()
            assert body["mode"] == mode
            assert body["results"][0]["id"] == rows[1]["id"], mode
        default = api.get("/search", params={"q": "wildfire"}).json()
        assert default["mode"] == "hybrid"
        post = api.post("/search", json={"q": "wildfire near the capital", "k": 2}).json()
        assert post["results"][0]["id"] == rows[4]["id"] and len(post["results"]) == 2


@pytest.mark.parametrize(
    "payload",
    [
        'x" or 1==1 or "',
        "\\",
        '") or (source != "',
        "' or ''='",
        'en" || true || "',
        "\u2028",
        "a" * 255,
    ],
)
@pytest.mark.parametrize("field", ["source", "lang", "feed"])
def test_injection_in_any_filter_never_widens_results(
    indexed: Any, embedder: Any, field: str, payload: str
) -> None:
    settings, _ = indexed
    with TestClient(create_app(settings, embedder)) as api:
        response = api.get("/search", params={"q": "news", field: payload, "k": 10})
        assert response.status_code in (200, 422), response.text
        if response.status_code == 200:
            assert response.json()["results"] == []
        else:
            assert set(response.json()["error"]) == {"code", "message"}


def test_a_source_with_quotes_and_backslashes_matches_literally(
    indexed: Any, embedder: Any
) -> None:
    settings, rows = indexed
    with TestClient(create_app(settings, embedder)) as api:
        body = api.get(
            "/search", params={"q": "tournament", "source": 'we"ird\\src.example'}
        ).json()
        assert [r["id"] for r in body["results"]] == [rows[3]["id"]]
        many = api.get("/search", params=[("q", "news"), *[("source", f"s{i}") for i in range(60)]])
        assert many.status_code == 422


def test_language_feed_and_date_filters(indexed: Any, embedder: Any) -> None:
    settings, rows = indexed
    with TestClient(create_app(settings, embedder)) as api:
        fr = api.get("/search", params={"q": "élections", "lang": "fr"}).json()["results"]
        assert [r["id"] for r in fr] == [rows[2]["id"]]
        feed1 = api.get("/search", params={"q": "news", "feed": "feed1", "k": 10}).json()["results"]
        assert {r["id"] for r in feed1} == {rows[1]["id"], rows[3]["id"]}
        recent = api.get("/search", params={"q": "news", "since": rows[1]["published_at"], "k": 10})
        assert {r["id"] for r in recent.json()["results"]} == {rows[0]["id"], rows[1]["id"]}


def test_pagination_similar_and_articles(indexed: Any, embedder: Any) -> None:
    settings, rows = indexed
    with TestClient(create_app(settings, embedder)) as api:
        first = api.get("/search", params={"q": "news", "k": 2}).json()
        assert first["next_cursor"]
        second = api.get(
            "/search", params={"q": "news", "k": 2, "cursor": first["next_cursor"]}
        ).json()
        ids1 = {r["id"] for r in first["results"]}
        ids2 = {r["id"] for r in second["results"]}
        assert len(ids2) == 2 and not ids1 & ids2
        similar = api.get(f"/articles/{rows[0]['id']}/similar", params={"k": 3}).json()
        assert rows[0]["id"] not in [r["id"] for r in similar["results"]]
        assert len(similar["results"]) == 3
        assert api.get(f"/articles/{rows[0]['id']}").json()["title"] == rows[0]["title"]
        assert api.get("/articles/" + "0" * 32).status_code == 404
        assert api.get("/articles/not-an-id/similar").status_code == 404


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"q": "   "}, "q must contain text"),
        ({"q": "x" * 600}, "longer than"),
        ({"q": "x", "k": 101}, "k must be at most"),
        ({"q": "x", "k": 0}, "k"),
        ({"q": "x", "cursor": "garbage!"}, "cursor"),
        ({"q": "x", "mode": "fuzzy"}, "mode"),
    ],
)
def test_invalid_requests_get_a_clear_422(
    indexed: Any, embedder: Any, params: dict[str, Any], fragment: str
) -> None:
    settings, _ = indexed
    with TestClient(create_app(settings, embedder)) as api:
        response = api.get("/search", params=params)
        assert response.status_code == 422
        assert fragment in response.json()["error"]["message"]


def test_body_size_keys_and_rate_limits(indexed: Any, embedder: Any) -> None:
    settings, _ = indexed
    locked = settings.model_copy(
        update={"api_read_keys": [SecretStr("reader")], "api_rate_limit_per_minute": 3}
    )
    with TestClient(create_app(locked, embedder)) as api:
        assert api.get("/search", params={"q": "storm"}).status_code == 401
        assert api.get("/healthz").status_code == 200
        headers = {"X-API-Key": "reader"}
        codes = [
            api.get("/search", params={"q": "storm"}, headers=headers).status_code for _ in range(4)
        ]
        assert codes[:3] == [200, 200, 200]
        assert codes[3] == 429
        limited = api.get("/search", params={"q": "storm"}, headers=headers)
        assert int(limited.headers["Retry-After"]) >= 1
        big = api.post(
            "/search",
            content=b"{" + b" " * 70_000 + b"}",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert big.status_code == 413


def test_milvus_outage_is_a_503_with_retry_after(embedder: Any, make_settings: Any) -> None:
    from newsstream.stack.launchers import free_port

    settings = make_settings(
        milvus_uri=f"http://127.0.0.1:{free_port()}", milvus_timeout_s=1.0, api_search_events=False
    )
    with TestClient(create_app(settings, embedder)) as api:
        response = api.get("/search", params={"q": "storm"})
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert response.json()["error"]["code"] == "unavailable"
        assert "Traceback" not in response.text
        assert api.get("/readyz").status_code == 503


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The one error shape: ``{"error": {"code", "message"}}`` and nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    return body["error"]


def test_every_error_status_has_the_one_shape(embedder: Any, make_settings: Any) -> None:
    from newsstream.stack.launchers import free_port

    settings = make_settings(
        milvus_uri=f"http://127.0.0.1:{free_port()}", milvus_timeout_s=1.0, api_search_events=False
    )
    app = create_app(settings, embedder)

    def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/explode", explode)
    with TestClient(app, raise_server_exceptions=False) as api:
        _assert_error(api.get("/no/such/route"), 404, "not_found")
        _assert_error(api.get("/dashboard/static/nope.js"), 404, "not_found")
        _assert_error(api.get("/static-offline-docs/nope.js"), 404, "not_found")
        wrong = api.delete("/search")
        _assert_error(wrong, 405, "method_not_allowed")
        assert "GET" in wrong.headers["Allow"] and "POST" in wrong.headers["Allow"]
        _assert_error(api.put("/healthz"), 405, "method_not_allowed")
        _assert_error(api.get("/search", params={"q": "x", "k": "many"}), 422, "invalid_request")
        _assert_error(api.post("/search", content=b"not json"), 422, "invalid_request")
        big = api.post(
            "/search",
            content=b"{" + b" " * 70_000 + b"}",
            headers={"Content-Type": "application/json"},
        )
        _assert_error(big, 413, "too_large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds all the same
            yield b'{"q": "'
            yield from (b"x" * 1000 for _ in range(70))
            yield b'"}'

        chunked = api.post(
            "/search", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in chunked.request.headers
        _assert_error(chunked, 413, "too_large")
        down = api.get("/search", params={"q": "storm"})
        _assert_error(down, 503, "unavailable")
        assert down.headers["Retry-After"]
        crashed = _assert_error(api.get("/explode"), 500, "internal_error")
        assert "secret internals" not in crashed["message"]

    limited = settings.model_copy(update={"api_rate_limit_per_minute": 1})
    with TestClient(create_app(limited, embedder)) as api:
        api.get("/no/such/route")
        _assert_error(api.get("/no/such/route"), 429, "rate_limited")


def test_keys_answer_401_and_403_in_the_one_shape(indexed: Any, embedder: Any) -> None:
    settings, _ = indexed
    locked = settings.model_copy(update={"api_read_keys": [SecretStr("reader")]})
    with TestClient(create_app(locked, embedder)) as api:
        _assert_error(api.get("/search", params={"q": "storm"}), 401, "unauthorized")
        _assert_error(api.get("/no/such/route"), 401, "unauthorized")
        wrong_key = api.get("/stats", headers={"X-API-Key": "guess"})
        _assert_error(wrong_key, 401, "unauthorized")
        _assert_error(api.post("/stats", headers={"X-API-Key": "reader"}), 403, "forbidden")


def _every_route(app: Any, article: str) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves, HEAD aside."""
    from starlette.routing import Route

    calls = []
    for route in app.routes:
        if not isinstance(route, Route):
            continue
        path = (
            route.path.replace("{article_id}", article)
            .replace("{story_id}", article)
            .replace("{name}", "dashboard.js")
        )
        calls += [(method, path) for method in sorted((route.methods or set()) - {"HEAD"})]
    return calls


def test_an_admin_key_is_accepted_wherever_a_read_key_is(indexed: Any, embedder: Any) -> None:
    settings, rows = indexed
    locked = settings.model_copy(
        update={
            "api_read_keys": [SecretStr("reader")],
            "api_admin_keys": [SecretStr("admin")],
            "api_rate_limit_per_minute": 0,
        }
    )
    app = create_app(locked, embedder)
    calls = _every_route(app, rows[0]["id"])
    assert ("GET", "/search") in calls and ("POST", "/search") in calls and len(calls) > 10
    with TestClient(app) as api:

        def status(method: str, path: str, key: str | None) -> int:
            headers = {"X-API-Key": key} if key else {}
            body = {"q": "storm"} if method == "POST" else None
            params = {"q": "storm"} if path == "/search" and method == "GET" else None
            response = api.request(method, path, headers=headers, json=body, params=params)
            return response.status_code

        # Edits, deletes and the audit need an admin key; a read key may call every other route.
        admin_only = {
            ("POST", f"/stories/{rows[0]['id']}/split"),
            ("DELETE", f"/articles/{rows[0]['id']}"),
            ("GET", "/audit"),
        }
        assert admin_only <= set(calls)
        # The admin routes are all admin-only (reindex here; the feed and DLQ routes, which
        # `serve` adds, have their own test of it).
        admin_routes = {(m, p) for m, p in calls if p.startswith("/admin/")}
        assert ("POST", "/admin/reindex") in admin_routes, admin_routes
        admin_only |= admin_routes
        for method, path in calls:
            read = status(method, path, "reader")
            if (method, path) in admin_routes and method != "GET":
                # An admin's call would start a reindex, change a feed or replay the DLQ of the
                # shared fixture: the routes' own tests check that an admin key is accepted.
                assert read == 403, (method, path, read)
                continue
            # The admin's delete would delete the fixture's article: an id never stored passes
            # the key check and answers 404 without publishing anything.
            admin_path = "/articles/" + "0" * 32 if method == "DELETE" else path
            admin = status(method, admin_path, "admin")
            if (method, path) in admin_only:
                assert read == 403 and admin not in (401, 403), (method, path, read, admin)
                continue
            assert read not in (401, 403), (method, path, read)
            assert admin == read, (method, path, read, admin)
        # Other methods need an admin key too, and 405.
        assert status("DELETE", "/stats", "admin") == 405
        assert status("DELETE", "/stats", "reader") == 403
        assert status("GET", "/stats", None) == 401
