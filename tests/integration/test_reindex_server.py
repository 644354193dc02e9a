"""Reindex on the PyPI `milvus` 2.3.5 server, which has no BM25: the keyword index is rebuilt
beside the new collection and follows the swap (keyword search finds the same articles through
the API's searcher before and after), the alias swaps and rolls back there too, and a reindex
with another backend of the model records that backend's fingerprint on the new collection."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.kafka import ensure_topics
from core.metrics import SearchMode
from core.settings import Settings
from newsstream.ops.explain import explain
from search_api.filters import SearchFilters
from search_api.searcher import Searcher
from store.aliases import resolve
from store.client import connect
from store.embed_cache import EmbeddingCache
from store.fingerprint import recorded_fingerprint
from store.reindex import Reindexer, drop_old, rollback
from store.writer import ArticleWriter

from news_texts import CHESS, FLOODS, RATES
from worker_procs import stored_row

pytestmark = pytest.mark.integration

NEWS = [
    ("https://floods.example/1", "Floods force thousands from northern villages", FLOODS),
    ("https://rates.example/1", "Central bank holds its main interest rate", RATES),
    ("https://chess.example/1", "Teenage grandmaster wins the national chess title", CHESS),
]


class OtherBackend:
    """The test's embedder under another backend's fingerprint (the vectors are the model's)."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self.model_name = embedder.model_name
        self.dimension = embedder.dimension
        self.fingerprint = replace(embedder.fingerprint, backend="other-backend")
        self.calls = 0

    def embed(self, texts: Any) -> Any:
        self.calls += 1
        return self._embedder.embed(texts)


def test_a_reindex_on_a_server_without_bm25_moves_the_keyword_index_too(
    make_settings: Any, milvus_server_uri: str, embedder: Any, tmp_path: Path
) -> None:
    settings: Settings = make_settings(milvus_uri=milvus_server_uri)
    client = connect(milvus_server_uri)
    writer = ArticleWriter.open(client, settings, embedder.dimension, embedder.fingerprint)
    vectors = embedder.embed([text for _, _, text in NEWS])
    rows = [
        stored_row(url, title, text, vector, embedder.model_name, content_hash=f"h{n}")
        for n, ((url, title, text), vector) in enumerate(zip(NEWS, vectors, strict=True))
    ]
    assert writer.upsert(rows) == len(rows)
    writer.close()
    searcher = Searcher(settings, client, embedder)
    query = NEWS[0][1]

    def keyword_ids() -> list[str]:
        hits = searcher.search(query, k=3, mode=SearchMode.KEYWORD, filters=SearchFilters())
        return [hit.id for hit in hits]

    before = keyword_ids()
    assert before and before[0] == rows[0]["id"]
    other = OtherBackend(embedder)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    result = Reindexer(settings, client, other, cache, settle_s=0.5).run()
    name = settings.milvus_collection
    assert result.embedded == len(rows) and result.reused == 0  # another fingerprint: embedded
    assert resolve(client, name).collection == f"{name}_v2"
    recorded = recorded_fingerprint(client, f"{name}_v2")
    assert recorded is not None and recorded["backend"] == "other-backend"
    keywords = settings.data_dir / "keywords"
    assert (keywords / f"{name}_v2.sqlite").exists()
    searcher = Searcher(settings, client, embedder)  # a fresh API process after the swap
    assert keyword_ids() == before

    assert rollback(client, name) == f"{name}_v1"
    assert resolve(client, name).collection == f"{name}_v1"
    assert (
        Searcher(settings, client, embedder)
        .search(query, k=3, mode=SearchMode.KEYWORD, filters=SearchFilters())[0]
        .id
        == rows[0]["id"]
    )  # the renamed collection kept its keyword index

    # Explain reads the serving collection's keyword index, not the file of the configured
    # name: build again (the cache answers), drop the collection kept for a rollback (the
    # first one, whose file bears the configured name) and ask.
    ensure_topics(settings)
    assert drop_old(client, settings, settle_s=0.5) == f"{name}_v2"
    Reindexer(settings, client, other, cache, settle_s=0.5).run()
    assert resolve(client, name).collection != f"{name}_v1"
    assert drop_old(client, settings, settle_s=0.5) == f"{name}_v1"
    assert not (keywords / f"{name}.sqlite").exists()
    assert explain(settings, rows[0]["id"]).in_keyword_index is True
    cache.close()
    client.close()
