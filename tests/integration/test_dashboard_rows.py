"""The dashboard's "rows in index" on a real store: rows written and not yet flushed count, and a
re-published article (an upsert of the same id) counts once.

Runs on the session's Milvus (Lite by default) and on the PyPI ``milvus`` 2.3 server that
`newsstream up` starts by default, whose collection statistics count only flushed segments.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.article_writer import ArticleWriter
from core.ids import article_id
from core.milvus import connect, encode_sources
from core.settings import Settings
from search_api.dashboard import Dashboard, index_row_count

from probes import wait_until

pytestmark = pytest.mark.integration


def _rows(embedder: Any, n: int, version: int = 0) -> list[dict[str, Any]]:
    now = int(time.time())
    texts = [f"Story {i} about the harbour, told for the {version}th time." for i in range(n)]
    vectors = embedder.embed(texts)
    rows = []
    for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        url = f"https://example.org/story-{i}"
        rows.append(
            {
                "id": article_id(link=url),
                "embedding": vector.tolist(),
                "title": f"Story {i}",
                "text": text,
                "url": url,
                "source": "example.org",
                "feed_id": "feed0",
                "language": "en",
                "published_at": now,
                "ingested_at": now,
                "story_id": article_id(link=url),
                "model": embedder.model_name,
                "content_hash": f"h{i}-{version}",
                "also_reported_by": encode_sources([]),
            }
        )
    return rows


def _check_unflushed_rows_count(settings: Settings, embedder: Any) -> None:
    client = connect(settings.milvus_uri or "")
    try:
        writer = ArticleWriter.open(client, settings, embedder.dimension)
        assert writer.upsert(_rows(embedder, 40)) == 40
        # No flush: the rows sit in a growing segment, as they do right after a replay.
        assert index_row_count(client, settings) == 40
        # Re-published articles replace their rows; they are not counted twice.
        assert writer.upsert(_rows(embedder, 25, version=1)) == 25
        assert index_row_count(client, settings) == 40
    finally:
        client.close()

    dashboard = Dashboard(settings)
    body: dict[str, Any] = {}

    def milvus_answered() -> bool:
        nonlocal body
        body = dashboard.data()
        return bool(body["sections"]["milvus"]["ok"])

    wait_until(milvus_answered, 30, "the dashboard's Milvus section", every_s=2)
    assert body["index_rows"] == 40


def test_rows_in_index_count_unflushed_rows(make_settings: Any, embedder: Any) -> None:
    _check_unflushed_rows_count(make_settings(), embedder)


def test_rows_in_index_count_unflushed_rows_on_the_milvus_server(
    make_settings: Any, embedder: Any, milvus_server_uri: str
) -> None:
    _check_unflushed_rows_count(make_settings(milvus_uri=milvus_server_uri), embedder)
