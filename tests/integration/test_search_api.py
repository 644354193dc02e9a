"""The search API against a real Milvus Lite server: modes, filters under attack, pagination,
similar articles, error shapes, API keys, rate limits and a Milvus outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.article_writer import ArticleWriter
from core.ids import article_id
from core.milvus import connect, encode_sources
from core.settings import Settings
from search_api.app import create_app

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
            {
                "id": article_id(link=url),
                "embedding": vector.tolist(),
                "title": title,
                "text": f"{title}. {body}",
                "url": url,
                "source": source,
                "feed_id": f"feed{n % 2}",
                "language": lang,
                "published_at": now - n * 86400,
                "ingested_at": now,
                "story_id": article_id(link=url),
                "model": embedder.model_name,
                "content_hash": f"h{n}",
                "also_reported_by": encode_sources([]),
            }
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
    from newsstream.local_stack import free_port

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
