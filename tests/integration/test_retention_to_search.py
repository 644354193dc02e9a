"""Retention end to end on the real broker, worker and Milvus: articles older than the window
leave search, the article look-up and Milvus once the sweep's tombstones are applied; articles
inside the window stay searchable."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from core.article import Article
from core.ids import article_id
from core.kafka import ensure_topics
from newsstream.ops.retention import sweep
from producers.publisher import Publisher
from producers.retention import DAY_S
from store.client import connect

from probes import wait_until
from running import running_worker, serving

pytestmark = pytest.mark.integration

TOPICS = {
    "glacier": "Glacier melt in the Alps doubled this summer, alpine researchers reported on Monday.",
    "orchestra": "The city orchestra opened its season with a new symphony by a young composer.",
    "harbour": "Harbour workers ended a strike after the port authority agreed to higher wages.",
    "vaccine": "A new malaria vaccine passed its final trial in three countries, doctors said.",
    "railway": "The high-speed railway line between the two capitals opened to passengers today.",
}
EXPIRED = ("glacier", "orchestra", "harbour")


def _article(name: str, age_days: float, now: int) -> Article:
    url = f"https://retention.example/{name}"
    return Article(
        id=article_id(link=url),
        url=url,
        title=f"{name.title()} report",
        summary=TOPICS[name],
        source="retention.example",
        feed_id="retention",
        published_at=int(now - age_days * DAY_S),
        fetched_at=now,
    )


def _rows(settings: Any) -> set[str]:
    client = connect(settings.milvus_uri)
    try:
        found = client.query(
            settings.milvus_collection,
            filter="",
            output_fields=["id"],
            limit=100,
            consistency_level="Strong",
        )
        return {str(r["id"]) for r in found}
    finally:
        client.close()


def test_expired_articles_leave_search_and_the_index(make_settings: Any, embedder: Any) -> None:
    settings = make_settings(retention_days=14)
    ensure_topics(settings)
    now = int(time.time())
    articles = {n: _article(n, 20 if n in EXPIRED else 2, now) for n in TOPICS}
    publisher = Publisher(settings)
    assert len(publisher.publish(list(articles.values()), 30)) == len(articles)
    publisher.close()
    ids = {n: a.id for n, a in articles.items()}
    with running_worker(settings, embedder), serving(settings, embedder) as base:
        wait_until(lambda: _rows(settings) == set(ids.values()), 120, "every article indexed")
        report = sweep(settings, feeds=[])
        assert report.tombstones == len(EXPIRED)
        kept = {ids[n] for n in TOPICS if n not in EXPIRED}
        wait_until(lambda: _rows(settings) == kept, 60, "the expired rows deleted")
        with httpx.Client(base_url=base, timeout=30) as api:
            for name in TOPICS:
                status = api.get(f"/articles/{ids[name]}").status_code
                assert status == (404 if name in EXPIRED else 200), name
                found = api.get("/search", params={"q": TOPICS[name], "k": 10}).json()
                returned = {r["id"] for r in found["results"]}
                assert (ids[name] in returned) is (name not in EXPIRED), name
