"""The typed article row: its limits, its round trip through a Milvus entity, its merges; and
the store package's import boundary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from import_rules import packages_imported_by

from store.row import (
    MAX_ALSO_REPORTED,
    ArticleRow,
    OtherSource,
    encode_sources,
    truncate_utf8,
)
from store.schema import (
    COMPUTED_FIELDS,
    OUTPUT_FIELDS,
    SOURCE_MAX,
    TEXT_MAX,
    TITLE_MAX,
    URL_MAX,
    VECTOR_FIELD,
)

ID = "0f3c2a9b8e7d6c5b4a39281706f5e4d3"


def _row(**changes: Any) -> ArticleRow:
    fields: dict[str, Any] = {
        "id": ID,
        "embedding": [0.25, -0.5, 1.0],
        "title": "Oil prices rise",
        "text": "Oil prices rose on Monday.",
        "url": "https://a.example/oil",
        "source": "a.example",
        "feed_id": "f1",
        "language": "en",
        "published_at": 1_700_000_000,
        "ingested_at": 1_700_000_100,
        "model": "all-MiniLM-L6-v2",
        "content_hash": "ab" * 16,
    }
    return ArticleRow(**(fields | changes))


def test_an_entity_holds_every_schema_field_and_reads_back_as_the_same_row() -> None:
    row = _row(also_reported_by=(OtherSource("b.example", "https://b.example/oil"),))
    entity = row.to_milvus()
    assert set(entity) == {*OUTPUT_FIELDS, VECTOR_FIELD}
    assert entity["also_reported_by"] == encode_sources(
        [{"source": "b.example", "url": "https://b.example/oil"}]
    )
    # What a read with output_fields=["*", "embedding"] adds: BM25 outputs, numpy-ish floats.
    stored = entity | {field: {1: 0.5} for field in COMPUTED_FIELDS}
    assert ArticleRow.from_milvus(stored) == row


def test_a_vector_of_any_float_type_is_sent_as_python_floats() -> None:
    vector = np.array([0.25, -0.5, 1.0], dtype=np.float32)
    sent = _row(embedding=vector).to_milvus()[VECTOR_FIELD]
    assert sent == [0.25, -0.5, 1.0]
    assert all(type(x) is float for x in sent)


def test_a_row_without_a_story_starts_its_own() -> None:
    assert _row().story_id == ID
    assert _row(story_id="1" * 32).story_id == "1" * 32


@pytest.mark.parametrize(
    ("field", "limit"),
    [("title", TITLE_MAX), ("text", TEXT_MAX), ("url", URL_MAX), ("source", SOURCE_MAX)],
)
def test_a_field_over_its_limit_is_refused_and_named(field: str, limit: int) -> None:
    _row(**{field: "x" * limit})  # at the limit: fine
    with pytest.raises(ValueError, match=rf"ArticleRow\.{field} holds {limit + 1} characters"):
        _row(**{field: "x" * (limit + 1)})


def test_ids_hashes_and_codes_have_their_schema_lengths() -> None:
    for field, limit in [("id", 64), ("story_id", 64), ("content_hash", 64), ("language", 16)]:
        with pytest.raises(ValueError, match=field):
            _row(**{field: "a" * (limit + 1)})
    with pytest.raises(ValueError, match="embedding is empty"):
        _row(embedding=[])
    with pytest.raises(ValueError, match="id is empty"):
        _row(id="")


def test_truncation_keeps_a_text_within_its_field() -> None:
    long = "é" * (TEXT_MAX + 5)
    assert _row(text=truncate_utf8(long, TEXT_MAX)).text == "é" * TEXT_MAX
    assert truncate_utf8("short", TEXT_MAX) == "short"


def test_sources_merge_once_each_never_the_articles_own_url_and_stay_bounded() -> None:
    first = OtherSource("b.example", "https://b.example/oil")
    row = _row().with_sources([first, first, OtherSource("a.example", "https://a.example/oil")])
    assert row.also_reported_by == (first,)
    assert row.with_sources([first]) is row  # nothing new: the same row, no rewrite
    many = [OtherSource("c.example", f"https://c.example/{n}") for n in range(80)]
    assert len(row.with_sources(many).also_reported_by) == MAX_ALSO_REPORTED
    assert row.with_sources(many).also_reported_by[0] == first  # the earliest are kept
    with pytest.raises(ValueError, match="also_reported_by"):
        _row(also_reported_by=tuple(many))


def test_a_stored_entity_of_earlier_versions_reads_back() -> None:
    legacy = _row().to_milvus() | {
        "also_reported_by": [{"source": "b.example", "url": "https://b.example/1"}, {"x": 1}],
        "published_at": None,
    }
    row = ArticleRow.from_milvus(legacy)
    assert row.also_reported_by == (OtherSource("b.example", "https://b.example/1"),)
    assert row.published_at == 0


def test_the_store_imports_only_core_and_core_never_imports_it() -> None:
    """The index sits below every service: it may use core (settings, errors), nothing else of
    ours; core stays the bottom layer."""
    ours = {"producers", "consumers", "dedup", "search_api", "trends", "newsstream", "embedding"}
    reaching_up = packages_imported_by("store", ours)
    assert not reaching_up, f"store imports more than core: {reaching_up}"
    into_store = list(packages_imported_by("core", {"store"}))
    assert not into_store, f"core imports store: {into_store}"


def test_a_listed_copy_keeps_its_id_and_leaves_the_list_when_deleted() -> None:
    copy = OtherSource("b.example", "https://b.example/1", id="b" * 32)
    old = OtherSource("c.example", "https://c.example/1")  # recorded before ids were kept
    row = ArticleRow(id="a" * 32, embedding=[0.5], title="t", text="x").with_sources([copy, old])
    entity = row.to_milvus()
    assert entity["also_reported_by"]["ids"] == ["b" * 32]
    assert ArticleRow.from_milvus(entity) == row
    assert row.without_sources({"b" * 32}).also_reported_by == (old,)
    assert row.without_sources({"f" * 32}) is row
