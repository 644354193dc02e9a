"""Stories: the timeline of one story and the admin split of a story in two.

A story is the set of stored articles sharing a ``story_id``: the id of the story's first
article, its seed (whose row has ``story_id == id``).

- ``GET /stories/{story_id}``: the story's articles in time order (``published_at``, or
  ``ingested_at`` for an undated article; ties by id), at most :data:`MAX_TIMELINE_ARTICLES`
  of them (the earliest; ``truncated`` says when there are more), with the story's title (the
  seed's, else the earliest article's), its distinct sources (outlets of the articles and of
  their ``also_reported_by``) and its first and last article times. ``count``, ``sources``,
  ``first_seen`` and ``last_seen`` describe the whole story (up to :data:`SCAN_ROWS` rows).
  Reads at ``milvus_search_consistency``, like ``/articles/{id}``.
- ``POST /stories/{story_id}/split`` (an admin key when keys are configured): the listed
  articles leave the story and form a new one whose id is the id of the earliest listed
  article. First the move is recorded on ``kafka_story_edits_topic`` (compacted, one message
  per moved article keyed by its id, acknowledged by the broker) and on the audit topic
  (:mod:`search_api.audit`, action ``story.split``), then the rows are rewritten
  in Milvus through :class:`store.writer.ArticleWriter`. Repeating a split gives the
  same answer and the same rows (a listed article already in the new story counts as a member
  when the edits log says a split moved it there), so a split that failed half-way (503) is
  finished by sending it again. The worker keeps a stored article's story when the article is re-published, so a
  split sticks.

Errors: 404 for a malformed id or a story with no article; 422 for a split that lists the seed
(list the other articles instead), an article outside the story or every article of it; 503
with ``Retry-After`` when the broker does not acknowledge the record or Milvus is away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator
from pymilvus import MilvusClient, MilvusException

from core.errors import InvalidRequest, TransientError
from core.ids import is_article_id
from core.settings import Settings
from search_api.acked_producer import RecordSink
from search_api.audit import AuditLog
from search_api.errors import RETRY_AFTER_S, ErrorResponse, error_response
from search_api.story_edits import StoryEditLog
from store.expressions import quote_literal
from store.row import decode_sources
from store.schema import VECTOR_FIELD
from store.writer import ArticleWriter

log = logging.getLogger(__name__)

#: Articles a timeline lists at most (the earliest ones).
MAX_TIMELINE_ARTICLES = 500
#: Rows of one story read at most to order a long story and to check a split: Milvus's query
#: window (limit + offset) is 16,384 rows.
SCAN_ROWS = 16_384
#: Articles one split may move.
MAX_SPLIT_ARTICLES = 200


_ARTICLE_FIELDS = [
    "id",
    "title",
    "url",
    "source",
    "published_at",
    "ingested_at",
    "story_id",
    "also_reported_by",
]
#: What ordering and summing up a long story needs (no title, URL or text).
_SUMMARY_FIELDS = ["id", "source", "published_at", "ingested_at", "also_reported_by"]


class StorySource(BaseModel):
    """Another outlet that reported an article (from dedup)."""

    source: str
    url: str


class StoryArticle(BaseModel):
    """One article of a story."""

    id: str
    title: str
    url: str
    source: str
    published_at: int | None = Field(description="Epoch s; null when the feed gave no date.")
    ingested_at: int = Field(description="Epoch s the article was indexed.")
    also_reported_by: list[StorySource] = Field(default_factory=list)
    url_api: str = Field(description="The stored article: /articles/<id>.")


class StoryTimeline(BaseModel):
    """A story's articles in time order, with what they have in common."""

    story_id: str
    title: str = Field(description="The seed's title, else the earliest article's.")
    count: int = Field(description="Articles in the story.")
    sources: list[str] = Field(description="Distinct outlets, also-reported-by included.")
    first_seen: int = Field(description="Time of the earliest article (epoch s).")
    last_seen: int = Field(description="Time of the latest article (epoch s).")
    articles: list[StoryArticle] = Field(
        description=f"Earliest first, at most {MAX_TIMELINE_ARTICLES}."
    )
    truncated: bool = Field(description="True when the story has more articles than listed.")


class SplitRequest(BaseModel):
    """The body of ``POST /stories/{story_id}/split``."""

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "article_ids": ["0f3c2a9b8e7d6c5b4a39281706f5e4d3"],
                    "reason": "a different event with a similar headline",
                }
            ]
        }
    }

    article_ids: list[str] = Field(
        min_length=1,
        max_length=MAX_SPLIT_ARTICLES,
        description="Articles of the story that form a new story (not the story's first one).",
    )
    reason: str | None = Field(None, max_length=500, description="Why, for the record.")

    @field_validator("article_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        bad = [ident for ident in value if not is_article_id(ident)]
        if bad:
            raise ValueError(f"not an article id (32 lower-case hex characters): {bad[0][:40]!r}")
        return sorted(set(value))


class SplitResult(BaseModel):
    """What a split did."""

    story_id: str = Field(description="The story the articles left.")
    new_story_id: str = Field(description="The story they form: the earliest one's id.")
    moved: int = Field(description="Articles now in the new story.")
    remaining: int = Field(description="Articles left in the old story.")


def article_time(row: dict[str, Any]) -> int:
    """When an article happened for ordering: ``published_at``, else ``ingested_at``."""
    return int(row.get("published_at") or 0) or int(row.get("ingested_at") or 0)


def _order(row: dict[str, Any]) -> tuple[int, str]:
    return article_time(row), str(row["id"])


def distinct_sources(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Outlets of ``rows`` and of their ``also_reported_by``, each once, in order of appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for source in [row.get("source"), *(s.get("source") for s in _sources(row))]:
            if source:
                seen.setdefault(str(source), None)
    return list(seen)


def _sources(row: dict[str, Any]) -> list[dict[str, str]]:
    return [s for s in decode_sources(row.get("also_reported_by")) if "source" in s and "url" in s]


def build_timeline(
    story_id: str,
    listed: Sequence[dict[str, Any]],
    whole: Sequence[dict[str, Any]],
    count: int,
    seed_title: str | None,
) -> StoryTimeline:
    """The answer of ``GET /stories/{story_id}`` from stored rows (pure).

    ``listed``: the rows to list (any order; cut to :data:`MAX_TIMELINE_ARTICLES`, earliest
    first); ``whole``: rows of the whole story (at least the time and source fields) for the
    summary; ``count``: articles in the story; ``seed_title``: the seed's title when known.
    """
    ordered = sorted(listed, key=_order)[:MAX_TIMELINE_ARTICLES]
    times = [article_time(row) for row in whole] or [article_time(row) for row in ordered]
    seed = next((row for row in ordered if row["id"] == story_id), None)
    title = seed_title if seed_title is not None else seed["title"] if seed else None
    return StoryTimeline(
        story_id=story_id,
        title=title if title is not None else str(ordered[0].get("title") or ""),
        count=count,
        sources=distinct_sources(sorted(whole, key=_order)),
        first_seen=min(times),
        last_seen=max(times),
        articles=[
            StoryArticle(
                id=str(row["id"]),
                title=str(row.get("title") or ""),
                url=str(row.get("url") or ""),
                source=str(row.get("source") or ""),
                published_at=int(row.get("published_at") or 0) or None,
                ingested_at=int(row.get("ingested_at") or 0),
                also_reported_by=[StorySource(**s) for s in _sources(row)],
                url_api=f"/articles/{row['id']}",
            )
            for row in ordered
        ],
        truncated=count > len(ordered),
    )


def plan_split(
    story_id: str,
    listed: Sequence[dict[str, Any]],
    wanted: Sequence[str],
    members: Sequence[str],
    moved_earlier: Collection[str] = (),
) -> tuple[str, int]:
    """The new story's id and the articles remaining in the old one, or raise
    :class:`InvalidRequest` (pure).

    ``listed``: the stored rows of the ``wanted`` ids (with ``id``, ``story_id`` and times);
    ``members``: ids of every row now in the story; ``moved_earlier``: ids the edits log says
    were moved out of this story into the story they are in now. Those of them already in the
    new story (a repeated split) count as members; nothing else outside the story does (an
    article that is the seed of its own story looks the same in Milvus, but was never moved).
    """
    if story_id in wanted:
        raise InvalidRequest(
            "the story's first article cannot be split off: list the story's other articles "
            "instead (they form a new story, and this one keeps its id)"
        )
    found = {str(row["id"]): row for row in listed}
    missing = [ident for ident in wanted if ident not in found]
    if missing:
        raise InvalidRequest(f"article {missing[0]} is not stored, so not in story {story_id}")
    new_story_id = str(min(listed, key=_order)["id"])
    outside = [
        ident
        for ident in wanted
        if found[ident].get("story_id") != story_id
        and not (found[ident].get("story_id") == new_story_id and ident in moved_earlier)
    ]
    if outside:
        raise InvalidRequest(f"article {outside[0]} is not in story {story_id}")
    remaining = len(set(members) - set(wanted))
    if remaining == 0:
        raise InvalidRequest(
            "a split must leave at least one article in the story; list fewer articles"
        )
    return new_story_id, remaining


class StoryStore:
    """The Milvus reads and writes of stories on one collection (errors become
    :class:`TransientError`)."""

    def __init__(self, client: MilvusClient, settings: Settings, *, has_bm25: bool) -> None:
        self._client = client
        self._settings = settings
        self._collection = settings.milvus_collection
        self._has_bm25 = has_bm25

    def timeline(self, story_id: str) -> StoryTimeline | None:
        """The timeline of ``story_id``; None when no stored row belongs to it."""
        expr = f"story_id == {quote_literal(story_id)}"
        consistency = self._settings.milvus_search_consistency
        try:
            rows = self._query(expr, _ARTICLE_FIELDS, MAX_TIMELINE_ARTICLES + 1, consistency)
            if not rows:
                return None
            if len(rows) <= MAX_TIMELINE_ARTICLES:
                return build_timeline(story_id, rows, rows, len(rows), None)
            # A long story: order all of it on a few fields, then fetch the earliest in full.
            whole = self._query(expr, _SUMMARY_FIELDS, SCAN_ROWS, consistency)
            count = len(whole) if len(whole) < SCAN_ROWS else self._count(expr, consistency)
            chosen = [str(r["id"]) for r in sorted(whole, key=_order)[:MAX_TIMELINE_ARTICLES]]
            fetched = self._client.get(
                self._collection,
                ids=[*chosen, story_id],
                output_fields=_ARTICLE_FIELDS,
                consistency_level=consistency,
            )
        except MilvusException as exc:
            raise TransientError(f"Milvus unavailable: {exc}") from exc
        by_id = {str(r["id"]): dict(r) for r in fetched}
        seed = by_id.get(story_id)
        seed_title = str(seed["title"]) if seed and seed.get("story_id") == story_id else None
        listed = [by_id[ident] for ident in chosen if ident in by_id]
        return build_timeline(story_id, listed, whole, count, seed_title)

    def split(
        self,
        story_id: str,
        wanted: list[str],
        record: Callable[[str], None],
        moved_earlier: Callable[[dict[str, str]], set[str]],
    ) -> SplitResult:
        """Move ``wanted`` out of ``story_id`` (see the module docstring).

        ``record(new_story_id)`` must make the move durable elsewhere first (it raises to stop
        the split before any row changes); ``moved_earlier({id: its story now})`` says which
        listed articles outside the story were moved out of it by an earlier split (asked only
        when some are). Raises :class:`InvalidRequest` for a split the rules
        refuse, :class:`UnknownStory` when no row belongs to ``story_id``.
        """
        expr = f"story_id == {quote_literal(story_id)}"
        try:
            # Strong: the rows about to be rewritten must be the latest ones (a worker or an
            # earlier split may have written them a moment ago).
            members = [str(r["id"]) for r in self._query(expr, ["id"], SCAN_ROWS, "Strong")]
            if not members:
                raise UnknownStory(story_id)
            listed = [
                dict(r)
                for r in self._client.get(
                    self._collection,
                    ids=wanted,
                    output_fields=["*", VECTOR_FIELD],
                    consistency_level="Strong",
                )
            ]
        except MilvusException as exc:
            raise TransientError(f"Milvus unavailable: {exc}") from exc
        elsewhere = {
            str(row["id"]): str(row.get("story_id"))
            for row in listed
            if row.get("story_id") != story_id
        }
        earlier = moved_earlier(elsewhere) if elsewhere else set()
        new_story_id, remaining = plan_split(story_id, listed, wanted, members, earlier)
        record(new_story_id)
        # Rows an earlier run of the same split moved already are left alone by the writer.
        writer = ArticleWriter(self._client, self._settings, has_bm25=self._has_bm25)
        try:
            writer.set_story([str(row["id"]) for row in listed], new_story_id)
        except MilvusException as exc:
            raise TransientError(f"Milvus unavailable: {exc}") from exc
        return SplitResult(
            story_id=story_id, new_story_id=new_story_id, moved=len(wanted), remaining=remaining
        )

    def _query(
        self, expr: str, fields: list[str], limit: int, consistency: str
    ) -> list[dict[str, Any]]:
        rows = self._client.query(
            self._collection,
            filter=expr,
            output_fields=fields,
            limit=limit,
            consistency_level=consistency,
        )
        return [dict(r) for r in rows]

    def _count(self, expr: str, consistency: str) -> int:
        result = self._client.query(
            self._collection,
            filter=expr,
            output_fields=["count(*)"],
            consistency_level=consistency,
        )
        return int(result[0]["count(*)"])


def attach_stories(
    app: FastAPI,
    settings: Settings,
    store: Callable[[], StoryStore],
    caller: Callable[[Request], str],
    sink: RecordSink,
    audit: AuditLog,
) -> None:
    """Add the story routes to ``app`` (on the app itself, so that its route table, which
    the 405 answers read, lists them); ``store()`` gives the connected :class:`StoryStore`
    (raising :class:`TransientError` while Milvus is away), ``caller(request)`` who is
    asking, for the record (a key fingerprint or "loopback", never a key), ``sink`` sends the
    edits and ``audit`` records the split."""
    edits = StoryEditLog(settings, sink)

    @app.get(
        "/stories/{story_id}",
        response_model=StoryTimeline,
        summary="A story's articles in time order.",
        tags=["stories"],
        responses={404: {"model": ErrorResponse}},
    )
    def story(story_id: str) -> StoryTimeline | JSONResponse:
        if not is_article_id(story_id):
            return error_response(404, "no story with this id")
        timeline = store().timeline(story_id)
        if timeline is None:
            return error_response(404, "no story with this id")
        return timeline

    @app.post(
        "/stories/{story_id}/split",
        response_model=SplitResult,
        summary="Move articles out of a story into a new one (admin).",
        tags=["stories"],
        responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
    )
    def split(story_id: str, body: SplitRequest, request: Request) -> SplitResult | JSONResponse:
        if not is_article_id(story_id):
            return error_response(404, "no story with this id")

        def record(new_story_id: str) -> None:
            by = caller(request)
            try:
                edits.record(body.article_ids, new_story_id, story_id, by, body.reason)
                audit.record(
                    "story.split",
                    story_id,
                    by,
                    body.reason,
                    {"new_story_id": new_story_id, "article_ids": list(body.article_ids)},
                )
            except TransientError as exc:
                log.warning("split of story %s not recorded: %s", story_id, exc)
                raise _EditNotRecorded from None

        def moved_earlier(current: dict[str, str]) -> set[str]:
            try:
                return edits.moved_out_of(story_id, current)
            except TransientError as exc:
                log.warning("story edits of %s unreadable: %s", story_id, exc)
                raise _EditNotRecorded from None

        try:
            return store().split(story_id, body.article_ids, record, moved_earlier)
        except UnknownStory:
            return error_response(404, "no story with this id")
        except _EditNotRecorded:
            return error_response(
                503,
                "the story-edits or audit topic did not answer; nothing changed; retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )


class UnknownStory(LookupError):
    """No stored article belongs to the story."""


class _EditNotRecorded(Exception):
    """The broker did not acknowledge a split's record, or its log could not be read
    (answered 503, nothing changed)."""
