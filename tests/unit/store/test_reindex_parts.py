"""The pure parts of a reindex: generation names, the catch-up plan, the embedding cache keyed by
(content hash, model fingerprint), the progress and ETA, and the writer's routing that sends every
write to the serving collection and its mirror (on an in-memory stand-in for Milvus)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.settings import Settings
from store.aliases import (
    KEYWORD_FILE,
    MIRROR,
    generation_of,
    keyword_path,
    next_generation,
)
from store.embed_cache import EmbeddingCache, fingerprint_key, text_key
from store.reindex import ReindexProgress, plan_catch_up, row_state
from store.row import ArticleRow
from store.writer import ArticleWriter


def test_generations_count_up_from_two_past_any_existing_one() -> None:
    assert next_generation("news", ["news"]) == "news_v2"  # news itself becomes news_v1
    assert next_generation("news", ["news_v1", "news_v2", "other_v9", "news_v2x"]) == "news_v3"
    assert next_generation("news", []) == "news_v2"
    assert generation_of("news", "news_v12") == 12
    assert generation_of("news", "news") == 0


def test_a_renamed_collection_keeps_its_keyword_file(tmp_path: Path) -> None:
    assert keyword_path(tmp_path, "news_v2", {}) == tmp_path / "keywords" / "news_v2.sqlite"
    kept = keyword_path(tmp_path, "news_v1", {KEYWORD_FILE: "news.sqlite"})
    assert kept == tmp_path / "keywords" / "news.sqlite"


def test_the_catch_up_copies_missing_and_changed_rows_and_deletes_gone_ones() -> None:
    base = {"ingested_at": 5, "content_hash": "h", "story_id": "s", "also_reported_by": {}}
    source = {
        "a": row_state(base),
        "b": row_state({**base, "ingested_at": 6}),  # re-published after the copy read it
        "c": row_state(base),  # indexed after the copy passed it
    }
    target = {
        "a": row_state(base),
        "b": row_state(base),
        "d": row_state(base),  # deleted while the copy read it
    }
    assert plan_catch_up(source, target) == (["b", "c"], ["d"])
    assert plan_catch_up(source, dict(source)) == ([], [])


def test_the_cache_answers_only_for_the_same_hash_and_fingerprint(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    torch = fingerprint_key({"model": "m", "backend": "torch"})
    onnx = fingerprint_key({"model": "m", "backend": "onnx-int8"})
    assert torch != onnx and fingerprint_key({"backend": "torch", "model": "m"}) == torch
    cache.put_many(torch, {"h1": [1.0, 0.0], "h2": np.array([0.0, 1.0])})
    found = cache.get_many(torch, ["h1", "h2", "h3"])
    assert set(found) == {"h1", "h2"} and found["h2"].tolist() == [0.0, 1.0]
    assert cache.get_many(onnx, ["h1"]) == {}
    assert cache.count(torch) == 2 and cache.count() == 2
    cache.close()
    reopened = EmbeddingCache(tmp_path / "cache.sqlite")  # it outlives the process
    assert reopened.get_many(torch, ["h1"])["h1"].dtype == np.float32
    reopened.close()
    assert text_key("a") != text_key("b")


def test_progress_gives_a_rate_and_an_eta() -> None:
    progress = ReindexProgress(phase="copying", done=50, total=150, started_at=100.0)
    progress.finished_at = 110.0
    assert progress.rate == pytest.approx(5.0)
    assert progress.eta_s == pytest.approx(20.0)
    assert ReindexProgress(total=10).eta_s is None
    assert progress.to_json()["eta_s"] == 20.0


class RoutedMilvus:
    """Collections by name and an alias ``articles``: the calls the writer makes."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[str, Any]]] = {"articles_v1": {}, "articles_v2": {}}
        self.properties: dict[str, dict[str, str]] = {"articles_v1": {}, "articles_v2": {}}
        self.alias = "articles_v1"
        self.describes = 0

    def describe_collection(self, name: str) -> dict[str, Any]:
        self.describes += 1
        real = self.alias if name == "articles" else name
        return {"collection_name": real, "properties": dict(self.properties[real])}

    def upsert(self, collection: str, rows: list[dict[str, Any]]) -> dict[str, int]:
        for row in rows:
            self.rows[collection][str(row["id"])] = row
        return {"upsert_count": len(rows)}

    def delete(self, collection: str, *, ids: list[str]) -> None:
        for ident in ids:
            self.rows[collection].pop(ident, None)

    def query(self, collection: str, **_: Any) -> list[dict[str, Any]]:
        return []  # no row lists another one


def _row(n: int) -> ArticleRow:
    return ArticleRow(id=f"{n:032x}", embedding=[0.1, 0.2], title=f"t{n}", text=f"x{n}")


def test_writes_go_to_the_serving_collection_and_its_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("store.writer.ROUTING_REFRESH_S", 0.0)  # re-read at every write
    milvus = RoutedMilvus()
    stand_in: Any = milvus
    settings = Settings(data_dir=tmp_path, milvus_collection="articles")
    writer = ArticleWriter(stand_in, settings, has_bm25=False)
    writer.upsert([_row(1)])
    assert set(milvus.rows["articles_v1"]) == {_row(1).id} and milvus.rows["articles_v2"] == {}
    # A reindex starts: the serving collection mirrors into the new one.
    milvus.properties["articles_v1"][MIRROR] = "articles_v2"
    writer.upsert([_row(2)])
    writer.delete([_row(1).id])
    assert set(milvus.rows["articles_v1"]) == set(milvus.rows["articles_v2"]) == {_row(2).id}
    # Each collection has its own keyword index.
    assert (tmp_path / "keywords" / "articles_v1.sqlite").exists()
    assert (tmp_path / "keywords" / "articles_v2.sqlite").exists()
    assert [t.collection for t in writer.targets()] == ["articles_v1", "articles_v2"]
    writer.close()


def test_the_routing_is_re_read_only_every_few_seconds(tmp_path: Path) -> None:
    milvus = RoutedMilvus()
    stand_in: Any = milvus
    writer = ArticleWriter(stand_in, Settings(milvus_collection="articles"), has_bm25=True)
    for n in range(20):
        writer.upsert([_row(n)])
    assert milvus.describes == 1  # one describe for twenty writes
