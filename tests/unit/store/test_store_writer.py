"""The writer's partial changes (stories, other sources) on an in-memory stand-in for Milvus:
they rewrite whole rows from the latest stored ones, never write computed fields, skip what
did not change, keep the keyword index in step and check the acknowledged count."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core.errors import TransientError
from core.settings import Settings
from store.row import ArticleRow, OtherSource
from store.schema import COMPUTED_FIELDS, VECTOR_FIELD
from store.writer import ArticleWriter


class FakeMilvus:
    """The two calls a partial change makes (``get`` and ``upsert``), on one collection: reads
    add the BM25 outputs as Milvus does, and an upsert that carries one is refused as Milvus
    refuses it. ``short`` makes the next upsert acknowledge one row fewer."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.upserts: list[list[str]] = []
        self.reads: list[str] = []
        self.deletes: list[list[str]] = []
        self.short = False

    def describe_collection(self, collection: str) -> dict[str, Any]:
        # The routing read: a real collection, no alias, no mirror.
        return {"collection_name": collection, "properties": {}}

    def get(
        self, collection: str, *, ids: list[str], output_fields: list[str], consistency_level: str
    ) -> list[dict[str, Any]]:
        assert output_fields == ["*", VECTOR_FIELD]
        self.reads.append(consistency_level)
        computed = {field: {7: 0.5} for field in COMPUTED_FIELDS}
        return [self.rows[i] | computed for i in ids if i in self.rows]

    def delete(self, collection: str, *, ids: list[str]) -> dict[str, int]:
        self.deletes.append(list(ids))
        for ident in ids:
            self.rows.pop(ident, None)
        return {"delete_count": len(ids)}

    def query(
        self, collection: str, *, filter: str, output_fields: list[str], consistency_level: str
    ) -> list[dict[str, Any]]:
        # Only the filter a delete sends: the rows whose also_reported_by lists one of the ids.
        match = re.fullmatch(r'json_contains_any\(also_reported_by\["ids"\], \[(.*)\]\)', filter)
        assert match is not None, filter
        wanted = set(re.findall(r'"([^"]*)"', match.group(1)))
        self.reads.append(consistency_level)
        return [
            {"id": ident}
            for ident, row in self.rows.items()
            if wanted & set(row["also_reported_by"].get("ids", []))
        ]

    def upsert(self, collection: str, rows: list[dict[str, Any]]) -> dict[str, int]:
        for row in rows:
            if set(row) & set(COMPUTED_FIELDS):
                raise ValueError("the BM25 output fields cannot be written")
        self.upserts.append([str(row["id"]) for row in rows])
        count = len(rows) - 1 if self.short else len(rows)
        for row in rows[:count]:
            self.rows[str(row["id"])] = dict(row)
        self.short = False
        return {"upsert_count": count}


def _row(n: int, **changes: Any) -> ArticleRow:
    return ArticleRow(
        id=f"{n:032x}",
        embedding=[0.1 * n, 0.2, 0.3],
        title=f"title {n}",
        text=f"text number {n}",
        url=f"https://a.example/{n}",
        source="a.example",
        **changes,
    )


def _writer(tmp_path: Path, *, has_bm25: bool = True) -> tuple[ArticleWriter, FakeMilvus]:
    client = FakeMilvus()
    settings = Settings(data_dir=tmp_path, milvus_collection="articles")
    stand_in: Any = client  # the two calls a MilvusClient answers here
    writer = ArticleWriter(stand_in, settings, has_bm25=has_bm25)
    writer.upsert([_row(1), _row(2), _row(3)])
    client.upserts.clear()
    return writer, client


def test_set_story_rewrites_only_the_rows_that_move_keeping_every_other_field(
    tmp_path: Path,
) -> None:
    writer, client = _writer(tmp_path)
    before = {i: ArticleRow.from_milvus(r) for i, r in client.rows.items()}
    moved = writer.set_story([_row(1).id, _row(2).id, "f" * 32], _row(1).id)
    assert moved == 1  # row 1 is already in its own story; the unknown id is skipped
    assert client.upserts == [[_row(2).id]]
    assert client.reads == ["Strong"]
    after = ArticleRow.from_milvus(client.rows[_row(2).id])
    assert after == before[_row(2).id].with_changes(story_id=_row(1).id)
    assert "f" * 32 not in client.rows
    assert writer.set_story([_row(2).id], _row(1).id) == 0  # repeated: nothing to write


def test_add_sources_merges_into_the_stored_list(tmp_path: Path) -> None:
    writer, client = _writer(tmp_path)
    other = OtherSource("b.example", "https://b.example/1")
    own = OtherSource("a.example", _row(3).url)
    assert writer.add_sources({_row(3).id: [other, own], "f" * 32: [other]}) == 1
    assert writer.add_sources({_row(3).id: [other]}) == 0  # known already: no write
    stored = ArticleRow.from_milvus(client.rows[_row(3).id])
    assert stored.also_reported_by == (other,)
    assert stored.embedding == _row(3).embedding


def test_a_short_acknowledgement_of_a_change_is_an_outage(tmp_path: Path) -> None:
    writer, client = _writer(tmp_path)
    client.short = True
    with pytest.raises(TransientError, match="acknowledged 1 of 2"):
        writer.set_story([_row(2).id, _row(3).id], _row(1).id)
    # Repeating the change finishes it.
    assert writer.set_story([_row(2).id, _row(3).id], _row(1).id) == 1
    assert {r["story_id"] for r in client.rows.values()} == {_row(1).id}


def test_changes_reach_the_keyword_index_beside_a_server_without_bm25(tmp_path: Path) -> None:
    writer, _ = _writer(tmp_path, has_bm25=False)
    assert writer.keywords is not None
    assert writer.keywords.count() == 3
    writer.upsert([_row(4).with_changes(title="volcano erupts").to_milvus()])  # a dict still works
    assert [i for i, _ in writer.keywords.search("volcano", limit=5)] == [_row(4).id]
    writer.update([_row(4).id], lambda row: row.with_changes(title="harbour reopens"))
    assert writer.keywords.search("volcano", limit=5) == []
    assert [i for i, _ in writer.keywords.search("harbour", limit=5)] == [_row(4).id]
    writer.keywords.close()


def test_a_delete_leaves_milvus_the_keyword_index_and_other_rows_lists(tmp_path: Path) -> None:
    writer, client = _writer(tmp_path, has_bm25=False)
    assert writer.keywords is not None
    copy = OtherSource("b.example", "https://b.example/copy", id="b" * 32)
    other = OtherSource("c.example", "https://c.example/copy", id="c" * 32)
    writer.add_sources({_row(1).id: [copy, other], _row(3).id: [copy]})
    client.upserts.clear()
    # Article 2 (stored) and the copy (a duplicate listed on rows 1 and 3) are deleted.
    assert writer.delete([_row(2).id, copy.id]) == 2
    assert set(client.rows) == {_row(1).id, _row(3).id}
    assert {i for i, _ in writer.keywords.search("title", limit=10)} == {_row(1).id, _row(3).id}
    assert ArticleRow.from_milvus(client.rows[_row(1).id]).also_reported_by == (other,)
    assert ArticleRow.from_milvus(client.rows[_row(3).id]).also_reported_by == ()
    assert client.reads[-2:] == ["Strong", "Strong"]  # the lists are read as just written
    # Repeated (a redelivered tombstone) or unknown: a no-op.
    client.upserts.clear()
    assert writer.delete([_row(2).id, copy.id, "f" * 32]) == 0
    assert client.upserts == [] and set(client.rows) == {_row(1).id, _row(3).id}
    assert writer.delete([]) == 0
    writer.keywords.close()
