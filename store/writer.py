"""The one write path of article rows: Milvus, plus the keyword index where Milvus has no BM25.

What goes in: :class:`store.row.ArticleRow` values (the worker and every change of stored rows;
the benchmarks' bulk fills also pass dicts of every schema field, as
:meth:`ArticleRow.to_milvus` makes them), or a partial change of stored rows
(:meth:`ArticleWriter.update` and the changes built on it). What comes out: the upsert count
Milvus acknowledged. Guaranteed:

- when Milvus acknowledged every row and the collection has no BM25 field, the same rows are in
  the keyword index before ``upsert`` returns (a keyword-index failure raises
  :class:`core.errors.TransientError`; retrying the whole call is safe because both writes are
  upserts);
- a partial change rewrites whole rows (Milvus has no partial update that every server
  supports): it reads the latest stored rows (Strong), vector included, changes only what it
  names, leaves out the fields Milvus computes (BM25 outputs), upserts the rows that changed
  and raises :class:`core.errors.TransientError` when Milvus acknowledges fewer of them.
  Repeating a change gives the same rows;
- a delete (:meth:`ArticleWriter.delete`) has left Milvus, the keyword index and the
  ``also_reported_by`` lists of other rows when it returns; deleting an id that is not there is
  a no-op, and repeating a delete is safe;
- every write goes to the real collection the configured name resolves to AND to the collection
  it mirrors (:mod:`store.aliases`: a reindex's new collection while it is built, the previous
  one after a swap, so a rollback loses nothing), each with its own keyword index. The writer
  re-reads that routing every :data:`ROUTING_REFRESH_S` seconds (one ``describe_collection``)
  and after any failed write. It writes to the real names, not through the alias, so a writer
  that has not yet seen a swap still writes to both. A mirror whose recorded model fingerprint
  refuses this writer's model (a reindex to another model) is left out: the reindex catches it
  up from the serving rows instead; once the name serves such a collection, the next write
  raises :class:`core.errors.ConfigurationError` (the worker stops, as it would at start).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymilvus import MilvusClient, MilvusException

from core.errors import ConfigurationError, TransientError
from core.settings import Settings
from store.aliases import keyword_path, resolve
from store.fingerprint import ModelStamp, recorded_fingerprint
from store.keyword_index import KeywordIndex, doc_from_row, fill_from_milvus, keyword_index_path
from store.row import ArticleRow, OtherSource, listing_any
from store.schema import VECTOR_FIELD, ensure_collection

log = logging.getLogger(__name__)

#: Seconds between two reads of the routing (which real collections a write goes to). A
#: reindex waits longer than this after it changes the routing before it relies on it.
ROUTING_REFRESH_S = 3.0


@dataclass(frozen=True)
class WriteTarget:
    """One real collection a write goes to, and its keyword index (None with Milvus BM25)."""

    collection: str
    keywords: KeywordIndex | None


class ArticleWriter:
    """Writes article rows to the collection ``settings.milvus_collection`` names (and its
    mirror, see the module docstring) through ``client``."""

    def __init__(
        self,
        client: MilvusClient,
        settings: Settings,
        *,
        has_bm25: bool,
        fingerprint: ModelStamp | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._name = settings.milvus_collection
        self._use_keywords = settings.keyword_index and not has_bm25
        self._fingerprint = fingerprint
        self._indexes: dict[str, KeywordIndex] = {}
        self._refused: set[str] = set()
        self._targets: list[WriteTarget] | None = None
        self._serving = ""
        self._next_refresh = 0.0
        self._lock = threading.Lock()

    @property
    def keywords(self) -> KeywordIndex | None:
        """The keyword index of the serving collection (None with Milvus BM25)."""
        return self.targets()[0].keywords

    @classmethod
    def open(
        cls,
        client: MilvusClient,
        settings: Settings,
        dim: int,
        fingerprint: ModelStamp | None = None,
    ) -> ArticleWriter:
        """Ensure the collection exists for the model (see
        :func:`store.schema.ensure_collection`), then a writer for it."""
        has_bm25 = ensure_collection(client, settings, dim, fingerprint)
        return cls(client, settings, has_bm25=has_bm25, fingerprint=fingerprint)

    @classmethod
    def fresh(
        cls,
        client: MilvusClient,
        settings: Settings,
        dim: int,
        fingerprint: ModelStamp | None = None,
    ) -> ArticleWriter:
        """A writer for an empty collection: the collection and its keyword index are dropped
        first (benchmarks and evaluations, never the service)."""
        if client.has_collection(settings.milvus_collection):
            client.drop_collection(settings.milvus_collection)
        keyword_index_path(settings).unlink(missing_ok=True)
        return cls.open(client, settings, dim, fingerprint)

    def targets(self) -> list[WriteTarget]:
        """Where writes go now: the serving collection first, then its mirror if any (re-read
        every :data:`ROUTING_REFRESH_S` seconds)."""
        with self._lock:
            now = time.monotonic()
            if self._targets is None or now >= self._next_refresh:
                self._targets = self._route()
                self._next_refresh = now + ROUTING_REFRESH_S
            return self._targets

    def _route(self) -> list[WriteTarget]:
        serving = resolve(self._client, self._name)
        if self._fingerprint is not None and serving.collection != self._serving:
            # A swap to a collection of another model (a reindex with --model): this writer's
            # vectors do not belong there; stop as a worker with the wrong model stops at start.
            recorded = recorded_fingerprint(self._client, serving.collection)
            reason = None if recorded is None else self._fingerprint.refusal(recorded)
            if reason is not None:
                raise ConfigurationError(
                    f"{self._name!r} now serves {serving.collection!r}, which refuses this "
                    f"embedding model: {reason}. Restart with the model it was built with "
                    "(`newsstream model` shows it)"
                )
        self._serving = serving.collection
        names = [serving.collection]
        properties = {serving.collection: serving.properties}
        mirror = serving.mirror
        if mirror and mirror != serving.collection and self._accepts(mirror):
            names.append(mirror)
            properties[mirror] = {}
            try:
                properties[mirror] = dict(
                    self._client.describe_collection(mirror).get("properties") or {}
                )
            except MilvusException:
                names.pop()  # dropped meanwhile: the next refresh sees the cleared routing
        return [WriteTarget(n, self._keyword_index(n, properties[n])) for n in names]

    def _accepts(self, mirror: str) -> bool:
        """Whether this writer's vectors may go into ``mirror`` (its fingerprint accepts them)."""
        if self._fingerprint is None:
            return True
        try:
            recorded = recorded_fingerprint(self._client, mirror)
        except MilvusException:
            return False
        reason = None if recorded is None else self._fingerprint.refusal(recorded)
        if reason is not None and mirror not in self._refused:
            self._refused.add(mirror)
            log.warning("not mirroring writes into %r: %s", mirror, reason)
        return reason is None

    def _keyword_index(self, collection: str, properties: Mapping[str, Any]) -> KeywordIndex | None:
        if not self._use_keywords:
            return None
        path = keyword_path(
            self._settings.data_dir, collection, {k: str(v) for k, v in properties.items()}
        )
        key = str(path)
        if key not in self._indexes:
            self._indexes[key] = KeywordIndex(path)
        return self._indexes[key]

    def _each(self, write: Callable[[WriteTarget], int]) -> int:
        """Run ``write`` on every target; returns the serving target's result. A failure makes
        the next call re-read the routing, then propagates."""
        try:
            results = [write(target) for target in self.targets()]
        except Exception:
            with self._lock:
                self._targets = None
            raise
        return results[0]

    def catch_up(self) -> int:
        """Index rows Milvus has and the keyword index lacks (a new or lost index file);
        returns how many (0 without a keyword index or when it is complete)."""
        target = self.targets()[0]
        if target.keywords is None:
            return 0
        filled = fill_from_milvus(target.keywords, self._client, target.collection)
        if filled:
            log.info("keyword index: indexed %d rows already in Milvus", filled)
        return filled

    def upsert(self, rows: Sequence[ArticleRow | Mapping[str, Any]]) -> int:
        """Upsert ``rows``; returns the count Milvus acknowledged (see the module docstring).

        A dict (the benchmarks' bulk fills) must hold every schema field, as
        :meth:`ArticleRow.to_milvus` makes them. A mirror that acknowledges fewer rows raises
        :class:`TransientError` (the whole call may be repeated).
        """
        entities = [row.to_milvus() if isinstance(row, ArticleRow) else row for row in rows]
        served: list[int] = []

        def write(target: WriteTarget) -> int:
            count = int(self._client.upsert(target.collection, entities)["upsert_count"])
            if target.keywords is not None and count == len(entities):
                target.keywords.upsert(doc_from_row(entity) for entity in entities)
            if served and count != len(entities):
                raise TransientError(
                    f"Milvus acknowledged {count} of {len(entities)} rows in {target.collection!r}"
                )
            served.append(count)
            return count

        return self._each(write)

    def update(self, ids: Collection[str], change: Callable[[ArticleRow], ArticleRow]) -> int:
        """Apply ``change`` to the stored rows of ``ids`` and write those it changed; returns
        how many were rewritten. Ids with no stored row are skipped (an article that left the
        collection is not brought back). Raises :class:`TransientError` when Milvus acknowledges
        fewer rows than were changed, and what pymilvus raises when Milvus is away."""
        if not ids:
            return 0
        return self._each(lambda target: self._update_in(target, ids, change))

    def _update_in(
        self, target: WriteTarget, ids: Collection[str], change: Callable[[ArticleRow], ArticleRow]
    ) -> int:
        # Strong: a row may have been upserted a moment ago (by this worker, in this batch, or
        # by another process), and a server serves Bounded reads a little behind the writes.
        stored = self._client.get(
            target.collection,
            ids=list(ids),
            output_fields=["*", VECTOR_FIELD],
            consistency_level="Strong",
        )
        changed: list[ArticleRow] = []
        for entity in stored:
            row = ArticleRow.from_milvus(entity)
            new = change(row)
            if new != row:
                changed.append(new)
        if not changed:
            return 0
        entities = [row.to_milvus() for row in changed]
        written = int(self._client.upsert(target.collection, entities)["upsert_count"])
        if written != len(changed):
            raise TransientError(f"Milvus acknowledged {written} of {len(changed)} changed rows")
        if target.keywords is not None:
            target.keywords.upsert(doc_from_row(entity) for entity in entities)
        return written

    def set_story(self, ids: Collection[str], story_id: str) -> int:
        """Move the stored articles ``ids`` into story ``story_id``; returns how many moved
        (those already in it are left alone). See :meth:`update` for errors."""
        return self.update(ids, lambda row: row.with_changes(story_id=story_id))

    def add_sources(self, sources: Mapping[str, Sequence[OtherSource]]) -> int:
        """Add other outlets to stored articles' ``also_reported_by`` (article id -> outlets,
        merged as :meth:`ArticleRow.with_sources` does); returns how many rows changed. See
        :meth:`update` for errors."""
        return self.update(sources.keys(), lambda row: row.with_sources(sources[row.id]))

    def delete(self, ids: Collection[str]) -> int:
        """Remove the articles ``ids``: their rows from Milvus, then from the keyword index,
        then their entries from the ``also_reported_by`` of the rows that list them (found
        with a Strong query of the ids kept in that field), in every target. Returns how many
        other rows of the serving collection were rewritten. Raises :class:`TransientError`
        (keyword index busy, short count of a rewrite) and what pymilvus raises when Milvus is
        away; the whole call may be repeated."""
        if not ids:
            return 0
        gone = set(ids)
        return self._each(lambda target: self._delete_in(target, gone))

    def _delete_in(self, target: WriteTarget, gone: set[str]) -> int:
        self._client.delete(target.collection, ids=sorted(gone))
        if target.keywords is not None:
            target.keywords.delete(gone)
        listing = self._client.query(
            target.collection,
            filter=listing_any(sorted(gone)),
            output_fields=["id"],
            consistency_level="Strong",
        )
        others = {str(row["id"]) for row in listing} - gone
        if not others:
            return 0
        return self._update_in(target, others, lambda row: row.without_sources(gone))

    def close(self) -> None:
        """Close the keyword indexes this writer opened."""
        with self._lock:
            for index in self._indexes.values():
                index.close()
            self._indexes.clear()
            self._targets = None
