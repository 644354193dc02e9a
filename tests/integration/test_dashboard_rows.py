"""The dashboard's "rows in index" on a real store: rows written and not yet flushed count, and a
re-published article (an upsert of the same id) counts once.

Runs on the session's Milvus (Lite by default) and on the PyPI ``milvus`` 2.3 server that
`newsstream up` starts by default, whose collection statistics count only flushed segments.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.settings import Settings
from search_api.dashboard import Dashboard, index_row_count
from store.client import connect
from store.writer import ArticleWriter

from probes import wait_until
from worker_procs import stored_row

pytestmark = pytest.mark.integration


def _rows(embedder: Any, n: int, version: int = 0) -> list[dict[str, Any]]:
    texts = [f"Story {i} about the harbour, told for the {version}th time." for i in range(n)]
    vectors = embedder.embed(texts)
    return [
        stored_row(
            f"https://example.org/story-{i}",
            f"Story {i}",
            text,
            vector,
            embedder.model_name,
            content_hash=f"h{i}-{version}",
        )
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    ]


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
