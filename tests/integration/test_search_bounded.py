"""Search at the product's default consistency: what the worker writes, the API finds.

Every other integration test reads at Strong consistency (it reads right after writing); the
product reads at Bounded. Here an article goes through the worker's write path (publisher,
worker, Milvus) and the API, with the default ``milvus_search_consistency``, must find it
within a bounded wait.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.kafka import ensure_topics
from core.settings import Settings
from producers.publisher import Publisher
from search_api.app import create_app

from probes import wait_until
from running import running_worker
from worker_procs import news_article

pytestmark = pytest.mark.integration

DEFAULT_CONSISTENCY = Settings.model_fields["milvus_search_consistency"].default


def test_an_indexed_article_is_found_at_the_default_consistency(
    make_settings: Any, embedder: Any
) -> None:
    assert DEFAULT_CONSISTENCY == "Bounded"
    settings = make_settings(api_search_events=False, milvus_search_consistency=DEFAULT_CONSISTENCY)
    article = news_article(
        "https://harbour.example/2026/lighthouse-keepers-return",
        "Lighthouse keepers return to the northern harbour after forty years",
        "The harbour authority hired three lighthouse keepers again after automated lamps failed "
        "repeatedly during winter storms, and fishing crews welcomed the return of a staffed "
        "light on the northern breakwater.",
        "harbour.example",
    )
    ensure_topics(settings)
    publisher = Publisher(settings, client_id="test-bounded")
    try:
        assert publisher.publish([article]) == {article.id}
    finally:
        publisher.close()
    with (
        running_worker(settings, embedder),
        TestClient(create_app(settings, embedder)) as api,
    ):

        def found(mode: str | None) -> bool:
            params = {"q": "lighthouse keepers return to the harbour", "k": 3}
            response = api.get("/search", params=params | ({"mode": mode} if mode else {}))
            assert response.status_code == 200, response.text
            return article.id in [hit["id"] for hit in response.json()["results"]]

        wait_until(lambda: found(None), 120, "the default search to find the article")
        wait_until(lambda: found("semantic"), 30, "the semantic search to find the article")
        stored = api.get(f"/articles/{article.id}")
        assert stored.status_code == 200, stored.text
        assert stored.json()["url"] == article.url
