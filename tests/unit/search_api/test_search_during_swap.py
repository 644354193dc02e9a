"""A search that meets the instant of the first swap (the configured name renamed, its alias not
yet created: Milvus says the collection does not exist) is retried and answers; any other Milvus
error still fails at once (on an in-memory stand-in for Milvus)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pymilvus import MilvusException

from core.errors import TransientError
from core.metrics import SearchMode
from core.settings import Settings
from search_api.filters import SearchFilters
from search_api.searcher import Searcher

HIT = {"id": "a" * 32, "distance": 0.9, "entity": {"title": "Harbour reopens", "text": "x"}}


class Embedder:
    model_name = "m"

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 4), dtype=np.float32)


class Milvus:
    """``search`` fails ``failures`` times with ``error``, then finds :data:`HIT`."""

    def __init__(self, failures: int, error: str) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def search(self, *_: Any, **__: Any) -> list[list[dict[str, Any]]]:
        self.calls += 1
        if self.calls <= self.failures:
            raise MilvusException(code=100, message=self.error)
        return [[HIT]]


def _search(milvus: Milvus) -> list[Any]:
    client: Any = milvus
    embedder: Any = Embedder()
    searcher = Searcher(Settings(milvus_collection="news"), client, embedder)
    return searcher.search("harbour", k=5, mode=SearchMode.SEMANTIC, filters=SearchFilters())


def test_a_search_between_rename_and_alias_is_retried() -> None:
    milvus = Milvus(2, "collection not found[database=default][collection=news]")
    assert [hit.id for hit in _search(milvus)] == [HIT["id"]]
    assert milvus.calls == 3


def test_other_milvus_errors_are_not_retried() -> None:
    milvus = Milvus(1, "index not loaded")
    with pytest.raises(TransientError):
        _search(milvus)
    assert milvus.calls == 1
