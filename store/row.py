"""The typed article row: what one entity of the articles collection holds, and its limits.

What goes in: the fields of one article as the worker (or an admin change) decides them. What
comes out: :meth:`ArticleRow.to_milvus`, the dict an upsert takes; :meth:`ArticleRow.from_milvus`
reads a stored entity back (computed BM25 fields and unknown fields are ignored). Guaranteed: a
row that exists fits the collection (:mod:`store.schema`): every string within its field's
length, times as whole epoch seconds, a non-empty vector. A field over its limit raises
``ValueError`` naming the field, its limit and what was found; callers cut texts first with
:func:`truncate_utf8`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from store.expressions import quote_literal
from store.schema import (
    FEED_ID_MAX,
    HASH_MAX,
    ID_MAX,
    LANGUAGE_MAX,
    MODEL_MAX,
    SOURCE_MAX,
    TEXT_MAX,
    TITLE_MAX,
    URL_MAX,
    VECTOR_FIELD,
)

#: Other outlets kept per article in ``also_reported_by`` (a bounded JSON field).
MAX_ALSO_REPORTED = 50


def truncate_utf8(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters (VARCHAR lengths are per character)."""
    return text if len(text) <= max_chars else text[:max_chars]


#: Key of the list in the ``also_reported_by`` JSON value.
SOURCES_KEY = "sources"
#: Key of the flat list of the listed articles' ids in the same value (what a delete looks
#: up with ``json_contains_any``: :func:`listing_any`).
IDS_KEY = "ids"


def encode_sources(sources: list[dict[str, str]]) -> dict[str, list[Any]]:
    """The ``also_reported_by`` value for ``sources``: a JSON object, not a bare list, with
    the ids of the entries that have one beside it.

    Milvus 2.3 accepts only objects at the top of a JSON field ("cannot unmarshal array"); an
    object holding the list works on every server.
    """
    return {SOURCES_KEY: sources, IDS_KEY: [s["id"] for s in sources if s.get("id")]}


def listing_any(article_ids: Iterable[str]) -> str:
    """The Milvus filter of the rows whose ``also_reported_by`` lists one of ``article_ids``."""
    literals = ", ".join(quote_literal(i) for i in article_ids)
    return f'json_contains_any(also_reported_by["{IDS_KEY}"], [{literals}])'


def decode_sources(value: Any) -> list[dict[str, str]]:
    """The sources of an ``also_reported_by`` value as readers show them (``source`` and
    ``url``; the listed article's id is the store's own business): the object form, or a bare
    list written by earlier versions; anything else reads as no sources."""
    return [{k: v for k, v in entry.items() if k != "id"} for entry in _stored_sources(value)]


def _stored_sources(value: Any) -> list[dict[str, Any]]:
    """The entries of an ``also_reported_by`` value as stored (ids included)."""
    if isinstance(value, dict):
        value = value.get(SOURCES_KEY)
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict)]


def _floats(vector: Sequence[float]) -> list[float]:
    """``vector`` as the list pymilvus sends: a list as is (its items are floats by type; a
    per-item check would cost more than the rest of the row), an array through ``tolist``."""
    if isinstance(vector, list):
        return vector
    tolist = getattr(vector, "tolist", None)
    return list(tolist()) if tolist is not None else [float(x) for x in vector]


@dataclass(frozen=True, slots=True)
class OtherSource:
    """Another outlet that published a duplicate of the article (recorded by dedup)."""

    source: str
    """The outlet's domain (``source`` of the duplicate)."""
    url: str
    """The duplicate's link."""
    id: str = ""
    """The duplicate's article id ("" in entries recorded before ids were kept: a delete of
    that article cannot find them)."""


#: Length limits of the string fields, in characters (the schema's VARCHAR sizes).
_LIMITS = {
    "id": ID_MAX,
    "title": TITLE_MAX,
    "text": TEXT_MAX,
    "url": URL_MAX,
    "source": SOURCE_MAX,
    "feed_id": FEED_ID_MAX,
    "language": LANGUAGE_MAX,
    "story_id": ID_MAX,
    "model": MODEL_MAX,
    "content_hash": HASH_MAX,
}


@dataclass(frozen=True, slots=True)
class ArticleRow:
    """One stored article (see the module docstring); change one with :meth:`with_changes`."""

    id: str
    """The article id (``core.ids``: 32 hex characters; at most 64)."""
    embedding: Sequence[float]
    """The text's vector, of the collection's dimension (checked by Milvus on upsert)."""
    title: str
    """The cleaned headline, at most ``TITLE_MAX`` characters."""
    text: str
    """The cleaned body the vector was made from, at most ``TEXT_MAX`` characters."""
    url: str = ""
    """The article's link, at most ``URL_MAX`` characters ("" when the feed gave none)."""
    source: str = ""
    """The publisher's domain, at most ``SOURCE_MAX`` characters."""
    feed_id: str = ""
    """The feed it came from (``producers.feeds``), at most 64 characters."""
    language: str = ""
    """An ISO 639-1 code (given by the feed or detected), at most 16 characters."""
    published_at: int = 0
    """Epoch seconds the feed gave; 0 when it gave none."""
    ingested_at: int = 0
    """Epoch seconds the row was written by the worker."""
    story_id: str = ""
    """The story it belongs to: the id of the story's first article; "" reads as its own id
    (a new article starts its own story)."""
    model: str = ""
    """The embedding model that made ``embedding``, at most ``MODEL_MAX`` characters."""
    content_hash: str = ""
    """The exact-duplicate key of ``text`` (``dedup.index.text_hash``); "" when not computed."""
    also_reported_by: tuple[OtherSource, ...] = field(default=())
    """Other outlets that published a copy, at most :data:`MAX_ALSO_REPORTED`, oldest first."""

    def __post_init__(self) -> None:
        if not self.story_id:
            object.__setattr__(self, "story_id", self.id)
        if not self.id:
            raise ValueError("ArticleRow.id is empty")
        for name, limit in _LIMITS.items():
            found = len(getattr(self, name))
            if found > limit:
                raise ValueError(f"ArticleRow.{name} holds {found} characters, at most {limit}")
        if len(self.embedding) == 0:
            raise ValueError("ArticleRow.embedding is empty")
        if len(self.also_reported_by) > MAX_ALSO_REPORTED:
            raise ValueError(
                f"ArticleRow.also_reported_by holds {len(self.also_reported_by)} sources, "
                f"at most {MAX_ALSO_REPORTED}"
            )

    def with_changes(self, **changes: Any) -> ArticleRow:
        """A copy with ``changes`` applied (checked like a new row)."""
        return replace(self, **changes)

    def with_sources(self, sources: Iterable[OtherSource]) -> ArticleRow:
        """A copy that also lists ``sources``, skipping its own URL and URLs listed already,
        keeping the first :data:`MAX_ALSO_REPORTED`; ``self`` when nothing is added."""
        known = list(self.also_reported_by)
        urls = {entry.url for entry in known}
        for source in sources:
            if source.url not in urls and source.url != self.url:
                known.append(source)
                urls.add(source.url)
        if len(known) == len(self.also_reported_by):
            return self
        return replace(self, also_reported_by=tuple(known[:MAX_ALSO_REPORTED]))

    def without_sources(self, article_ids: Collection[str]) -> ArticleRow:
        """A copy that no longer lists the articles ``article_ids`` (deleted); ``self`` when
        it listed none of them."""
        kept = tuple(s for s in self.also_reported_by if not (s.id and s.id in article_ids))
        if len(kept) == len(self.also_reported_by):
            return self
        return replace(self, also_reported_by=kept)

    def to_milvus(self) -> dict[str, Any]:
        """The entity an upsert of the articles collection takes (every schema field)."""
        return {
            "id": self.id,
            VECTOR_FIELD: _floats(self.embedding),
            "title": self.title,
            "text": self.text,
            "url": self.url,
            "source": self.source,
            "feed_id": self.feed_id,
            "language": self.language,
            "published_at": int(self.published_at),
            "ingested_at": int(self.ingested_at),
            "story_id": self.story_id,
            "model": self.model,
            "content_hash": self.content_hash,
            "also_reported_by": encode_sources(
                [
                    {"source": s.source, "url": s.url, **({"id": s.id} if s.id else {})}
                    for s in self.also_reported_by
                ]
            ),
        }

    @classmethod
    def from_milvus(cls, entity: Mapping[str, Any]) -> ArticleRow:
        """The row of a stored entity read with every field and the vector (``output_fields=
        ["*", "embedding"]``); BM25 outputs and other extra fields are ignored, a missing
        scalar reads as its default, and ``also_reported_by`` entries without a URL are
        dropped (and more than :data:`MAX_ALSO_REPORTED` cut). Raises ``KeyError`` without
        ``id`` or the vector."""
        return cls(
            id=str(entity["id"]),
            embedding=[float(x) for x in entity[VECTOR_FIELD]],
            title=str(entity.get("title") or ""),
            text=str(entity.get("text") or ""),
            url=str(entity.get("url") or ""),
            source=str(entity.get("source") or ""),
            feed_id=str(entity.get("feed_id") or ""),
            language=str(entity.get("language") or ""),
            published_at=int(entity.get("published_at") or 0),
            ingested_at=int(entity.get("ingested_at") or 0),
            story_id=str(entity.get("story_id") or ""),
            model=str(entity.get("model") or ""),
            content_hash=str(entity.get("content_hash") or ""),
            also_reported_by=tuple(
                OtherSource(
                    source=str(s.get("source") or ""), url=str(s["url"]), id=str(s.get("id") or "")
                )
                for s in _stored_sources(entity.get("also_reported_by"))
                if s.get("url")
            )[:MAX_ALSO_REPORTED],
        )
