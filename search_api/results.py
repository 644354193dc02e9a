"""The one result model: what a search finds, as the engine ranks it and as the API answers it.

What goes in: a stored article's fields, read by :class:`search_api.searcher.Searcher`. What
comes out: a frozen :class:`SearchResult` that the ranking functions re-score and collapse (by
copying it) and that ``/search`` and ``/articles/{id}/similar`` return as it is, inside a
:class:`SearchResponse`. Guarantees: the JSON field names and order are those of the HTTP
contract; ``story_url`` is always derived from ``story_id`` (or the article's own id when it
has no story), so the two never disagree; ``also_reported_by`` holds only entries that have
both a source and a URL.

A pydantic model rather than a dataclass: it is the API's documented response (OpenAPI schema,
field descriptions) and the engine's value type at once, so no second shape has to be kept in
step with it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator
from typing_extensions import TypedDict

from core.metrics import SearchMode


# A TypedDict, not a model: entries stay plain dicts, the form the index stores them in and
# the ranking merges them in.
class SourceRef(TypedDict):
    """Another outlet that reported the same story."""

    source: str
    url: str


class SearchResult(BaseModel):
    """One search result, best first in its list."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    snippet: str
    url: str
    source: str
    published_at: int | None
    score: float
    story_id: str
    also_reported_by: list[SourceRef] = Field(default_factory=list)

    @field_validator("also_reported_by", mode="before")
    @classmethod
    def _complete_sources(cls, value: Any) -> Any:
        # An entry without both a source and a URL cannot be shown as an outlet: left out.
        if isinstance(value, list):
            return [e for e in value if isinstance(e, dict) and "source" in e and "url" in e]
        return value

    @computed_field(description="The story's timeline: /stories/<story id>.")  # type: ignore[prop-decorator]
    @property
    def story_url(self) -> str:
        return f"/stories/{self.story_id or self.id}"


class SearchResponse(BaseModel):
    """A page of results; ``next_cursor`` asks for the next page (null on the last one)."""

    query: str
    mode: SearchMode
    results: list[SearchResult]
    next_cursor: str | None = None
