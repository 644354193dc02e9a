"""Story assignment: nearest neighbour in Milvus, in this worker's recent rows, or in the batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from consumers.stories import StoryAssigner
from core.milvus import VECTOR_FIELD


class FakeSearch:
    """Answers ``search`` from the rows it was given (what Milvus has made visible)."""

    def __init__(self) -> None:
        self.visible: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []

    def search(self, _collection: str, *, data: list[list[float]], **kwargs: Any) -> list[Any]:
        self.calls.append(kwargs)
        out = []
        for vector in data:
            scored = [
                {
                    "id": row["id"],
                    "distance": float(np.dot(row[VECTOR_FIELD], vector)),
                    "entity": {"story_id": row["story_id"]},
                }
                for row in self.visible
            ]
            out.append(sorted(scored, key=lambda h: -h["distance"])[:1])
        return out


def unit(*values: float) -> list[float]:
    vector = np.asarray(values, dtype=np.float32)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def row(ident: str, vector: list[float]) -> dict[str, Any]:
    return {"id": ident, "story_id": ident, VECTOR_FIELD: vector}


@pytest.fixture
def milvus() -> FakeSearch:
    return FakeSearch()


def assigner(milvus: FakeSearch, **kwargs: Any) -> StoryAssigner:
    return StoryAssigner(
        milvus,
        "articles",
        threshold=0.8,
        window_s=3600,
        **kwargs,
    )


def test_search_reads_at_the_configured_consistency(milvus: FakeSearch) -> None:
    assigner(milvus, consistency="Bounded").assign([row("a", unit(1, 0, 0))])
    assert milvus.calls[0]["consistency_level"] == "Bounded"


def test_a_stored_neighbour_gives_its_story(milvus: FakeSearch) -> None:
    milvus.visible = [{**row("old", unit(1, 0.1, 0)), "story_id": "story-1"}]
    rows = [row("new", unit(1, 0, 0)), row("other", unit(0, 0, 1))]
    assigner(milvus).assign(rows)
    assert [r["story_id"] for r in rows] == ["story-1", "other"]


def test_the_previous_batch_is_found_before_milvus_shows_it(milvus: FakeSearch) -> None:
    stories = assigner(milvus)
    first = [row("first", unit(1, 0, 0))]
    stories.assign(first)  # upserted, but not yet visible to a Bounded read
    second = [row("retold", unit(1, 0.2, 0)), row("unrelated", unit(0, 1, 0))]
    stories.assign(second)
    assert [r["story_id"] for r in second] == ["first", "unrelated"]


def test_recent_rows_are_forgotten_after_recent_s(milvus: FakeSearch) -> None:
    stories = assigner(milvus, recent_s=0.0)
    stories.assign([row("first", unit(1, 0, 0))])
    later = [row("retold", unit(1, 0.2, 0))]
    stories.assign(later)
    assert later[0]["story_id"] == "retold"


def test_the_nearest_of_milvus_recent_and_batch_wins(milvus: FakeSearch) -> None:
    stories = assigner(milvus)
    stories.assign([row("near", unit(1, 0.05, 0))])
    milvus.visible = [{**row("far", unit(1, 0.6, 0)), "story_id": "story-far"}]
    rows = [row("x", unit(1, 0, 0)), row("y", unit(1, 0.01, 0))]
    stories.assign(rows)
    assert [r["story_id"] for r in rows] == ["near", "near"]


def test_a_re_published_id_does_not_match_its_own_earlier_version(milvus: FakeSearch) -> None:
    stories = assigner(milvus)
    stories.assign([row("same", unit(1, 0, 0))])
    again = [row("same", unit(1, 0, 0))]
    stories.assign(again)
    assert again[0]["story_id"] == "same"
