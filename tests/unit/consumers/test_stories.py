"""Story assignment in the worker: seeds from Milvus, from this worker's recent seeds and from the
batch; stored articles keep their story; reads at the configured consistency; the story step sets
the story of every row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from consumer_fakes import STOP, OwnStories, article
from consumer_fakes import embedded as _embedded

from consumers.stories import AssignStories, StoryAssigner
from consumers.story_rule import StoryRule
from store.row import ArticleRow
from store.schema import VECTOR_FIELD

TITLE = "Capriati out of Australian Open"
OTHER = "Hewitt falls to Dent in Adelaide"


class FakeMilvus:
    """Answers ``search`` and ``get`` from the rows it was given (what Milvus made visible)."""

    def __init__(self) -> None:
        self.visible: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def search(self, _collection: str, *, data: list[list[float]], **kwargs: Any) -> list[Any]:
        self.calls.append(("search", kwargs))
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
            out.append(sorted(scored, key=lambda h: -h["distance"])[: kwargs["limit"]])
        return out

    def get(self, _collection: str, *, ids: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(("get", kwargs))
        return [dict(row) for row in self.visible if row["id"] in ids]


def unit(*values: float) -> list[float]:
    vector = np.asarray(values, dtype=np.float32)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def row(ident: str, vector: list[float], title: str = TITLE, **fields: Any) -> ArticleRow:
    """A row about to be upserted (its own story unless ``story_id`` says otherwise)."""
    given: dict[str, Any] = {"published_at": 1_700_000_000, "ingested_at": 1_700_000_100}
    return ArticleRow(
        id=ident,
        embedding=vector,
        title=title,
        text=f"{title}. Reported from Melbourne by Jennifer Smith on Monday.",
        **(given | fields),
    )


def stored(ident: str, vector: list[float], title: str = TITLE, **fields: Any) -> dict[str, Any]:
    """A row as Milvus returns it."""
    return row(ident, vector, title, **fields).to_milvus()


@pytest.fixture
def milvus() -> FakeMilvus:
    return FakeMilvus()


def assigner(milvus: FakeMilvus, **kwargs: Any) -> StoryAssigner:
    return StoryAssigner(milvus, "articles", rule=StoryRule(window_s=48 * 3600), **kwargs)  # type: ignore[arg-type]


def test_reads_at_the_configured_consistency(milvus: FakeMilvus) -> None:
    assigner(milvus, consistency="Bounded").assign([row("a", unit(1, 0, 0))])
    assert {kind for kind, _ in milvus.calls} == {"search", "get"}
    assert all(call["consistency_level"] == "Bounded" for _, call in milvus.calls)


def test_a_stored_seed_gives_its_story(milvus: FakeMilvus) -> None:
    milvus.visible = [stored("seed", unit(1, 0.1, 0))]
    rows = [row("new", unit(1, 0, 0)), row("other", unit(0, 0, 1), OTHER)]
    assigned = assigner(milvus).assign(rows)
    assert [r.story_id for r in assigned] == ["seed", "other"]
    assert [r.story_id for r in rows] == ["new", "other"], "the rows given are left as they are"
    assert assigned[0] == rows[0].with_changes(story_id="seed")


def test_a_stored_member_leads_to_its_seed_never_to_itself(milvus: FakeMilvus) -> None:
    # The member is nearest, but the new article is compared with the member's seed, which
    # is too far: no chain from seed to member to newcomer.
    milvus.visible = [
        stored("seed", unit(1, 2, 0)),
        stored("member", unit(1, 0.1, 0), story_id="seed"),
    ]
    rows = [row("new", unit(1, 0, 0))]
    assert assigner(milvus).assign(rows)[0].story_id == "new"


def test_a_seed_outside_the_window_is_no_candidate(milvus: FakeMilvus) -> None:
    milvus.visible = [stored("seed", unit(1, 0, 0), published_at=1_700_000_000 - 3 * 86_400)]
    rows = [row("new", unit(1, 0, 0))]
    stories = assigner(milvus)
    assert stories.assign(rows)[0].story_id == "new"
    search = next(call for kind, call in milvus.calls if kind == "search")
    assert "published_at >=" in search["filter"], "the window is applied in Milvus too"


def test_a_seed_of_the_previous_batch_is_found_before_milvus_shows_it(milvus: FakeMilvus) -> None:
    stories = assigner(milvus)
    stories.assign([row("first", unit(1, 0, 0))])  # upserted, not yet visible to a Bounded read
    second = [row("retold", unit(1, 0.05, 0)), row("unrelated", unit(0, 1, 0), OTHER)]
    assert [r.story_id for r in stories.assign(second)] == ["first", "unrelated"]


def test_a_deleted_seed_is_no_candidate_at_once(milvus: FakeMilvus) -> None:
    stories = assigner(milvus)
    stories.assign([row("first", unit(1, 0, 0))])  # a recent seed, and in the cache
    stories.forget(["first"])  # deleted before Milvus shows it
    retold = [row("retold", unit(1, 0.05, 0))]
    assert stories.assign(retold)[0].story_id == "retold"


def test_recent_seeds_are_forgotten_after_recent_s(milvus: FakeMilvus) -> None:
    stories = assigner(milvus, recent_s=0.0)
    stories.assign([row("first", unit(1, 0, 0))])
    later = [row("retold", unit(1, 0.05, 0))]
    assert stories.assign(later)[0].story_id == "retold"


def test_a_seed_earlier_in_the_batch_is_a_candidate(milvus: FakeMilvus) -> None:
    rows = [row("x", unit(1, 0, 0)), row("y", unit(1, 0.01, 0))]
    assert [r.story_id for r in assigner(milvus).assign(rows)] == ["x", "x"]


def test_a_stored_article_published_again_keeps_its_story(milvus: FakeMilvus) -> None:
    # An admin moved "moved" into story "other": publishing it again must not undo that.
    milvus.visible = [
        stored("seed", unit(1, 0, 0)),
        stored("moved", unit(1, 0, 0), story_id="other"),
    ]
    again = [row("moved", unit(1, 0, 0))]
    assert assigner(milvus).assign(again)[0].story_id == "other"


def test_seeds_read_from_milvus_are_cached(milvus: FakeMilvus) -> None:
    milvus.visible = [stored("seed", unit(1, 0.1, 0))]
    stories = assigner(milvus)
    stories.assign([row("a", unit(1, 0, 0))])
    seed_reads = [c for k, c in milvus.calls if k == "get" and VECTOR_FIELD in c["output_fields"]]
    stories.assign([row("b", unit(1, 0.02, 0))])
    again = [c for k, c in milvus.calls if k == "get" and VECTOR_FIELD in c["output_fields"]]
    assert len(seed_reads) == 1 and len(again) == 1


def test_one_read_gives_the_stored_stories_and_the_seeds_not_cached(milvus: FakeMilvus) -> None:
    # One batch: an article published again (its story stands) and a new article whose
    # candidate seed this worker never saw. Both answers come from a single get after the search.
    milvus.visible = [
        stored("seed", unit(1, 0.1, 0)),
        stored("moved", unit(0, 0, 1), OTHER, story_id="other"),
    ]
    rows = [row("moved", unit(0, 0, 1), OTHER), row("new", unit(1, 0, 0))]
    assigned = assigner(milvus).assign(rows)
    assert [r.story_id for r in assigned] == ["other", "seed"]
    assert [kind for kind, _ in milvus.calls] == ["search", "get"]


def test_story_sets_the_story_of_every_row() -> None:
    stories = OwnStories()
    batch = AssignStories(stories, stop=STOP, max_backoff_s=0.01)(_embedded(article(1), article(2)))
    assert stories.seen == [article(1).id, article(2).id]
    assert all(row.story_id == row.id for row in batch.rows)
