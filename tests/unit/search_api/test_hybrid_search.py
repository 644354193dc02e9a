"""Hybrid search: which rankings it fuses and how deep, on collections with and without the
title's BM25 field; the schema that carries that field; the eval's known-item arithmetic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytest
from pymilvus import MilvusClient

from core.metrics import SearchMode
from core.settings import Settings
from embedding.embedder import Embedder
from newsstream.evals.search import mrr_ceiling, reciprocal_rank
from search_api.filters import SearchFilters, build_expression
from search_api.searcher import RRF_K, TITLE_CANDIDATES, Searcher
from store.schema import (
    SPARSE_FIELD,
    TITLE_SPARSE_FIELD,
    VECTOR_FIELD,
    _index_params,
    _schema,
    collection_has_title_bm25,
)


class FakeEmbedder:
    model_name = "fake"
    dimension = 4

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.ones((len(texts), self.dimension), dtype=np.float32) / 2


class FakeClient:
    """Records hybrid_search calls; describes a collection with ``fields``."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = fields
        self.calls: list[dict[str, Any]] = []

    def describe_collection(self, name: str) -> dict[str, Any]:
        return {"fields": [{"name": f} for f in self.fields]}

    def hybrid_search(self, collection: str, reqs: list[Any], **kwargs: Any) -> list[list[Any]]:
        self.calls.append({"reqs": reqs, **kwargs})
        return [[{"id": "a", "distance": 0.5, "entity": {"title": "A", "text": "a"}}]]


NEW_FIELDS = ["id", VECTOR_FIELD, "title", "text", SPARSE_FIELD, TITLE_SPARSE_FIELD]
OLD_FIELDS = ["id", VECTOR_FIELD, "title", "text", SPARSE_FIELD]


def _search(fields: list[str], k: int = 10, **settings: Any) -> dict[str, Any]:
    client = FakeClient(fields)
    searcher = Searcher(
        Settings(milvus_collection="c", **settings),
        cast(MilvusClient, client),
        cast(Embedder, FakeEmbedder()),
    )
    hits = searcher.search(
        "storm floods", k=k, mode=SearchMode.HYBRID, filters=SearchFilters(language="en")
    )
    assert [h.id for h in hits] == ["a"]
    assert len(client.calls) == 1
    return client.calls[0]


def test_hybrid_fuses_dense_text_and_the_best_title_match() -> None:
    call = _search(NEW_FIELDS)
    dense, text, title = call["reqs"]
    assert (dense.anns_field, text.anns_field, title.anns_field) == (
        VECTOR_FIELD,
        SPARSE_FIELD,
        TITLE_SPARSE_FIELD,
    )
    assert dense.limit == text.limit == Settings().milvus_hybrid_candidates
    assert title.limit == TITLE_CANDIDATES == 1
    assert dense.param["params"]["ef"] >= dense.limit  # HNSW needs ef >= the request's limit
    assert text.data == title.data == ["storm floods"]
    expr = build_expression(SearchFilters(language="en"))
    assert all(r.expr == expr for r in call["reqs"])
    assert call["ranker"].dict() == {"strategy": "rrf", "params": {"k": RRF_K}}
    assert call["limit"] == 10


def test_a_collection_made_before_the_title_field_fuses_dense_and_text_only() -> None:
    call = _search(OLD_FIELDS)
    assert [r.anns_field for r in call["reqs"]] == [VECTOR_FIELD, SPARSE_FIELD]


def test_candidates_follow_the_setting_and_at_least_twice_k() -> None:
    assert [r.limit for r in _search(NEW_FIELDS, milvus_hybrid_candidates=30)["reqs"]] == [
        30,
        30,
        1,
    ]
    assert [r.limit for r in _search(NEW_FIELDS, k=80)["reqs"]][:2] == [160, 160]


def test_the_bm25_schema_indexes_the_title_and_the_plain_one_does_not() -> None:
    client = cast(MilvusClient, MilvusClient)  # create_schema/prepare_index_params: classmethods
    with_bm25 = _schema(client, 4, with_bm25=True).to_dict()
    fields = {f["name"]: f for f in with_bm25["fields"]}
    assert fields["title"]["params"].get("enable_analyzer") is True
    functions = {
        f["name"]: (f["input_field_names"], f["output_field_names"]) for f in with_bm25["functions"]
    }
    assert functions == {
        "text_bm25": (["text"], [SPARSE_FIELD]),
        "title_bm25": (["title"], [TITLE_SPARSE_FIELD]),
    }
    indexed = {i.field_name for i in _index_params(client, Settings(), with_bm25=True)}
    assert {SPARSE_FIELD, TITLE_SPARSE_FIELD} <= indexed
    plain = {f["name"] for f in _schema(client, 4, with_bm25=False).to_dict()["fields"]}
    assert SPARSE_FIELD not in plain and TITLE_SPARSE_FIELD not in plain


def test_title_bm25_is_detected_from_the_fields() -> None:
    assert collection_has_title_bm25(cast(MilvusClient, FakeClient(NEW_FIELDS)), "c")
    assert not collection_has_title_bm25(cast(MilvusClient, FakeClient(OLD_FIELDS)), "c")


def test_reciprocal_rank_takes_the_first_target() -> None:
    assert reciprocal_rank(["x", "b", "a"], {"a", "b"}) == 0.5
    assert reciprocal_rank(["x"], {"a"}) == 0.0


def test_mrr_ceiling_of_copies_ordered_at_random() -> None:
    assert mrr_ceiling([1, 1]) == 1.0
    assert mrr_ceiling([2]) == pytest.approx(0.75)
    assert mrr_ceiling([1, 2]) == pytest.approx(0.875)
    assert mrr_ceiling([]) == 0.0
