"""The one result model: the fields and order of a search result as the API answers it."""

from __future__ import annotations

from core.metrics import SearchMode
from search_api.results import SearchResponse, SearchResult

FIELDS = [
    "id",
    "title",
    "snippet",
    "url",
    "source",
    "published_at",
    "score",
    "story_id",
    "also_reported_by",
    "story_url",
]


def result(story_id: str, also: list[dict[str, str]]) -> SearchResult:
    return SearchResult(
        id="a" * 32,
        title="Floods",
        snippet="Rain.",
        url="https://a.example/1",
        source="a.example",
        published_at=None,
        score=0.5,
        story_id=story_id,
        also_reported_by=also,
    )


def test_a_result_answers_the_contract_fields_in_order() -> None:
    page = SearchResponse(query="floods", mode=SearchMode.HYBRID, results=[result("b" * 32, [])])
    body = page.model_dump(mode="json")
    assert list(body) == ["query", "mode", "results", "next_cursor"]
    assert list(body["results"][0]) == FIELDS
    assert body["results"][0]["story_url"] == "/stories/" + "b" * 32


def test_a_result_without_a_story_links_its_own_and_drops_partial_sources() -> None:
    also = [{"source": "b.example", "url": "https://b.example/1"}, {"url": "https://c.example/"}]
    body = result("", also).model_dump(mode="json")
    assert body["story_url"] == "/stories/" + "a" * 32
    assert body["also_reported_by"] == [{"source": "b.example", "url": "https://b.example/1"}]
