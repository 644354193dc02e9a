"""The pure rules of the story routes: a timeline's order and summary, and which splits are
allowed and what they make."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import InvalidRequest
from search_api.stories import (
    MAX_TIMELINE_ARTICLES,
    SplitRequest,
    build_timeline,
    distinct_sources,
    plan_split,
)
from store.row import encode_sources

SEED, A, B, C, D = (f"{n:032x}" for n in range(1, 6))


def row(
    ident: str, published: int, ingested: int, story: str = SEED, **extra: Any
) -> dict[str, Any]:
    return {
        "id": ident,
        "title": f"title {ident[-1]}",
        "url": f"https://s{ident[-1]}.example/a",
        "source": f"s{ident[-1]}.example",
        "published_at": published,
        "ingested_at": ingested,
        "story_id": story,
        "also_reported_by": encode_sources([]),
        **extra,
    }


def test_undated_articles_sort_by_ingest_time_and_ties_by_id() -> None:
    rows = [row(B, 0, 150), row(SEED, 200, 210), row(A, 100, 300), row(C, 200, 220)]
    timeline = build_timeline(SEED, rows, rows, len(rows), None)
    assert [a.id for a in timeline.articles] == [A, B, SEED, C]
    assert [a.published_at for a in timeline.articles] == [100, None, 200, 200]
    assert (timeline.first_seen, timeline.last_seen) == (100, 200)


def test_the_title_is_the_seeds_else_the_earliest_articles() -> None:
    with_seed = [row(A, 100, 100), row(SEED, 200, 200)]
    assert build_timeline(SEED, with_seed, with_seed, 2, None).title == "title 1"
    without = [row(B, 300, 300), row(A, 100, 100)]  # the seed left the index
    assert build_timeline(SEED, without, without, 2, None).title == "title 2"
    assert build_timeline(SEED, without, without, 2, "told").title == "told"


def test_sources_are_distinct_outlets_including_also_reported_by_in_time_order() -> None:
    also = encode_sources(
        [{"source": "x.example", "url": "u"}, {"source": "s1.example", "url": "v"}]
    )
    rows = [row(A, 300, 300, also_reported_by=also), row(SEED, 100, 100), row(B, 200, 200)]
    assert distinct_sources(sorted(rows, key=lambda r: r["published_at"])) == [
        "s1.example",
        "s3.example",
        "s2.example",
        "x.example",
    ]
    timeline = build_timeline(SEED, rows, rows, 3, None)
    assert timeline.sources == ["s1.example", "s3.example", "s2.example", "x.example"]
    assert timeline.articles[-1].also_reported_by[0].source == "x.example"
    assert timeline.articles[0].url_api == f"/articles/{SEED}"


def test_a_timeline_lists_at_most_the_earliest_500() -> None:
    rows = [row(f"{n:032x}", 10_000 - n, 10_000) for n in range(MAX_TIMELINE_ARTICLES + 3)]
    timeline = build_timeline(SEED, rows, rows, len(rows), None)
    assert len(timeline.articles) == MAX_TIMELINE_ARTICLES and timeline.truncated
    assert timeline.articles[0].published_at == 10_000 - (MAX_TIMELINE_ARTICLES + 2)
    assert timeline.count == MAX_TIMELINE_ARTICLES + 3
    short = build_timeline(SEED, rows[:3], rows[:3], 3, None)
    assert not short.truncated


def test_the_new_story_is_named_after_its_earliest_article() -> None:
    listed = [row(C, 500, 500), row(B, 0, 300), row(A, 400, 400)]
    members = [SEED, A, B, C, D]
    assert plan_split(SEED, listed, [A, B, C], members) == (B, 2)


def test_the_seed_cannot_be_split_off() -> None:
    with pytest.raises(InvalidRequest, match="list the story's other articles instead"):
        plan_split(SEED, [row(SEED, 1, 1), row(A, 2, 2)], [A, SEED], [SEED, A, B])


def test_articles_outside_the_story_are_refused() -> None:
    with pytest.raises(InvalidRequest, match=f"{C} is not stored"):
        plan_split(SEED, [row(A, 1, 1)], [A, C], [SEED, A])
    other = row(C, 1, 1, story="f" * 32)
    with pytest.raises(InvalidRequest, match=f"{C} is not in story"):
        plan_split(SEED, [row(A, 5, 5), other], [A, C], [SEED, A])


def test_the_seed_of_another_story_is_not_mistaken_for_a_repeated_split() -> None:
    # C is its own story's seed: after "moving" it alone, Milvus would look the same as now.
    own_story = row(C, 1, 1, story=C)
    with pytest.raises(InvalidRequest, match="is not in story"):
        plan_split(SEED, [own_story], [C], [SEED, A])
    # ... unless the edits log says a split moved it out of this story.
    assert plan_split(SEED, [own_story], [C], [SEED, A], moved_earlier={C}) == (C, 2)


def test_a_repeated_split_plans_the_same_as_the_first() -> None:
    first = plan_split(SEED, [row(A, 1, 1), row(B, 2, 2)], [A, B], [SEED, A, B, C])
    moved = [row(A, 1, 1, story=A), row(B, 2, 2, story=A)]
    assert plan_split(SEED, moved, [A, B], [SEED, C], moved_earlier={A, B}) == first == (A, 2)


def test_a_split_must_leave_an_article_behind() -> None:
    # Without a stored seed (it was deleted), listing every member would empty the story.
    with pytest.raises(InvalidRequest, match="at least one article"):
        plan_split(SEED, [row(A, 1, 1), row(B, 2, 2)], [A, B], [A, B])


def test_the_split_body_takes_1_to_200_valid_ids_once_each() -> None:
    assert SplitRequest(article_ids=[B, A, B]).article_ids == [A, B]
    for bad in ([], [f"{n:032x}" for n in range(201)], ["NOT-AN-ID"], ["AB" * 16]):
        with pytest.raises(ValueError):
            SplitRequest(article_ids=bad)
    with pytest.raises(ValueError):
        SplitRequest(article_ids=[A], reason="x" * 501)
