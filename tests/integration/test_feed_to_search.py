"""The first end-to-end path, in process: served feeds -> producer -> broker -> worker ->
Milvus -> search API. Real local broker and Milvus Lite server; nothing mocked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consumers.clean import clean_article
from consumers.quality import check_quality
from newsstream.stack.replay import ReplayServer
from producers.parser import parse_feed
from producers.service import build_scheduler
from search_api.app import create_app

from probes import milvus_count, wait_for_lag_zero, wait_until
from running import running_worker

pytestmark = pytest.mark.integration

FEEDS = ["4179e7a13df0f120.xml", "e8fa5b64a4b41322.xml", "d2a188f20637f7a4.xml"]


def _expected(feeds_dir: Path, replay: ReplayServer) -> dict[str, str]:
    """id -> headline of every served entry that should pass the quality gate."""
    expected: dict[str, str] = {}
    for spec in [f for f in replay.feeds() if f.url.rsplit("/", 1)[1] in FEEDS]:
        body = (feeds_dir / spec.url.rsplit("/", 1)[1]).read_bytes()
        for article in parse_feed(body, feed_url=spec.url, feed_id=spec.id).articles:
            clean = clean_article(article)
            if check_quality(clean) is None:
                expected[article.id] = clean.title
    return expected


def test_a_served_headline_finds_its_article_and_reruns_add_no_rows(
    news_feeds_dir: Path, make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    replay = ReplayServer(news_feeds_dir).start()
    try:
        feeds = [f for f in replay.feeds() if f.url.rsplit("/", 1)[1] in FEEDS]
        assert len(feeds) == 3
        settings = make_settings()
        expected = _expected(news_feeds_dir, replay)
        assert len(expected) >= 20

        scheduler, publisher, fetcher, state = build_scheduler(settings, feeds)
        reports = scheduler.poll_all()
        assert [r.result for r in reports] == ["ok", "ok", "ok"], reports
        assert sum(r.published for r in reports) >= len(expected)

        with running_worker(settings, embedder):
            wait_until(lambda: milvus_count(settings) == len(expected), 180, "all rows indexed")
            wait_for_lag_zero(settings)

            with TestClient(create_app(settings, embedder)) as api:
                for article_id, headline in list(expected.items())[:5]:
                    response = api.get("/search", params={"q": headline, "k": 10})
                    assert response.status_code == 200, response.text
                    body = response.json()
                    assert body["results"], f"no results for {headline!r}"
                    assert body["results"][0]["id"] == article_id, (headline, body["results"][:3])
                    first = body["results"][0]
                    assert first["title"] and first["url"].startswith("http")
                    assert first["source"]

            # Unchanged feeds: the replay server answers 304, nothing is published again.
            again = scheduler.poll_all()
            assert [r.result for r in again] == ["not_modified"] * 3
            assert milvus_count(settings) == len(expected)

            # Even a producer that forgot everything republishes the same ids: the upsert on
            # id replaces rows, it never adds a second one.
            fresh, publisher2, fetcher2, state2 = build_scheduler(
                settings.model_copy(update={"data_dir": tmp_path / "fresh"}), feeds
            )
            republished = fresh.poll_all()
            assert sum(r.published for r in republished) >= len(expected)
            wait_for_lag_zero(settings)
            assert milvus_count(settings) == len(expected)
            publisher2.close()
            fetcher2.close()
            state2.close()
        publisher.close()
        fetcher.close()
        state.close()
    finally:
        replay.stop()
