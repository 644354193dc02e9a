"""Story assignment: each new article joins the story of one event, or starts its own.

What goes in: the rows of a batch about to be upserted (:class:`store.row.ArticleRow`, with
their embeddings). What comes out: new rows, the same but for ``story_id`` (the rows given are
never changed). The decision is :mod:`consumers.story_rule`'s: the article
is compared with each candidate story's representative (its first article, the "seed", whose
``story_id`` is its own id), within the event window, on two signals (cosine and shared key
terms) with thresholds for the text's length. An article already stored keeps its story when it
is published again (so an admin's split sticks, and a seed never leaves its own story).

Candidate stories come from three places: Milvus (one batched search per batch for the nearest
rows in the event window; their stories' seeds are then read by id, in the one ``get`` per batch
that also finds the batch's articles already stored, and kept in a bounded cache), the seeds
this worker created in the last ``recent_s`` seconds (kept in memory, because a Bounded read
may not see them yet), and the seeds created earlier in the same batch. Each article is compared by the rule only with the seeds within its lowest cosine bar
(:class:`consumers.story_rule.SeedPool`: one matrix product per article, same decisions).

The Milvus reads use the configured consistency (Bounded by default), not Strong: a Strong read
waits for the server's next time tick (200 ms on the 2.3 server) on every batch, which bounded
the worker's ingest rate. Seeds another worker wrote within the staleness bound may be missed,
as rows another worker is writing at the same moment always could be: the article then starts
its own story.

:class:`AssignStories` is the worker's step around :class:`StoryAssigner`: in, a batch with its
rows; out, the batch holding the rows with their ``story_id``, before they are upserted (a
Milvus outage is retried until ``stop``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from pymilvus import MilvusClient

from consumers.item import Batch
from consumers.retry import retry_transient
from consumers.story_rule import SeedPool, StoryFeatures, StoryRule, best_story
from store.row import ArticleRow
from store.schema import VECTOR_FIELD

#: Seconds this worker remembers the seeds it created (longer than any Bounded staleness).
RECENT_S = 30.0
#: At most this many seeds in memory (recent ones and ones read from Milvus, the least recently
#: used go first): about 2 KB each.
SEED_CACHE_MAX = 20_000
#: Nearest stored rows looked at per article; their stories are the candidates.
CANDIDATES = 16
_SEED_FIELDS = ["id", "story_id", "title", "text", "published_at", "ingested_at", VECTOR_FIELD]


def event_time(row: Mapping[str, Any]) -> float:
    """When a stored entity's event happened as far as we know: published, else ingested."""
    return float(row.get("published_at") or row.get("ingested_at") or 0)


def features(row: Mapping[str, Any]) -> StoryFeatures:
    """The story-rule features of a stored entity (as Milvus returns it)."""
    return StoryFeatures.of(
        str(row["id"]),
        str(row.get("story_id") or row["id"]),
        row[VECTOR_FIELD],
        str(row.get("title") or ""),
        str(row.get("text") or ""),
        event_time(row),
    )


def row_features(row: ArticleRow) -> StoryFeatures:
    """The story-rule features of a row about to be stored."""
    return StoryFeatures.of(
        row.id,
        row.story_id or row.id,
        row.embedding,
        row.title,
        row.text,
        float(row.published_at or row.ingested_at),
    )


class StoryAssigner:
    """Sets ``story_id`` on rows (see the module docstring)."""

    def __init__(
        self,
        client: MilvusClient,
        collection: str,
        *,
        rule: StoryRule | None = None,
        consistency: str = "Bounded",
        recent_s: float = RECENT_S,
        candidates: int = CANDIDATES,
    ) -> None:
        self._client = client
        self._collection = collection
        self.rule = rule or StoryRule()
        self._consistency = consistency
        self._recent_s = recent_s
        self._candidates = candidates
        # Seeds this worker created, with the monotonic time they were created, oldest first.
        self._recent: deque[tuple[float, StoryFeatures]] = deque(maxlen=SEED_CACHE_MAX)
        self._cache: OrderedDict[str, StoryFeatures] = OrderedDict()
        self._lock = threading.Lock()

    def assign(self, rows: Sequence[ArticleRow]) -> list[ArticleRow]:
        """``rows`` (about to be upserted) with their ``story_id``, in the same order."""
        if not rows:
            return []
        batch = [row_features(row) for row in rows]
        stored, seeds = self._read(batch, self._nearest_stories(batch))
        assigned: list[ArticleRow] = []
        with self._lock:
            pool = SeedPool(self.rule, [*seeds, *self._recent_seeds()])
            created: list[StoryFeatures] = []
            for row, article in zip(rows, batch, strict=True):
                kept = stored.get(article.id)
                if kept:  # published again: the stored story stands
                    assigned.append(replace(row, story_id=kept))
                    continue
                match = best_story(self.rule, article, [*pool.near(article), *created])
                assigned.append(replace(row, story_id=match.story_id if match else article.id))
                if match is None:
                    created.append(article)
            now = time.monotonic()
            for seed in created:
                self._recent.append((now, seed))
                self._remember(seed)
        return assigned

    def _nearest_stories(self, batch: list[StoryFeatures]) -> set[str]:
        """The stories of the stored rows nearest to the batch's articles within the event
        window."""
        times = [a.event_time for a in batch]
        low, high = int(min(times) - self.rule.window_s), int(max(times) + self.rule.window_s)
        expr = (
            f"((published_at > 0 and published_at >= {low} and published_at <= {high}) or "
            f"(published_at == 0 and ingested_at >= {low} and ingested_at <= {high}))"
        )
        found = self._client.search(
            self._collection,
            data=[a.vector.tolist() for a in batch],
            anns_field=VECTOR_FIELD,
            limit=self._candidates,
            filter=expr,
            output_fields=["story_id"],
            search_params={"metric_type": "COSINE", "params": {"ef": max(32, self._candidates)}},
            consistency_level=self._consistency,
        )
        story_ids: set[str] = set()
        for hits in found:
            for hit in hits:
                story_ids.add(str(hit["entity"].get("story_id") or hit["id"]))
        return story_ids

    def _read(
        self, batch: list[StoryFeatures], story_ids: set[str]
    ) -> tuple[dict[str, str], list[StoryFeatures]]:
        """The stored story of the batch's articles already in Milvus, and the representatives
        of ``story_ids``: from the cache, the rest read by id in the same ``get`` as the
        stored stories (one read per batch: the articles' ids rarely exist, and a row that does
        not exist costs nothing to ask for)."""
        with self._lock:
            seeds = [self._cache[s] for s in story_ids if s in self._cache]
            for seed in seeds:
                self._cache.move_to_end(seed.id)
        cached = {seed.id for seed in seeds}
        missing = {s for s in story_ids if s not in cached}
        ids = [a.id for a in batch]
        rows = self._client.get(
            self._collection,
            ids=list(dict.fromkeys([*ids, *missing])),
            output_fields=_SEED_FIELDS if missing else ["story_id"],
            consistency_level=self._consistency,
        )
        stored: dict[str, str] = {}
        batch_ids = set(ids)
        fetched: list[StoryFeatures] = []
        for row in rows:
            row_id = str(row["id"])
            if row_id in batch_ids and row.get("story_id"):
                stored[row_id] = str(row["story_id"])
            if row_id in missing:
                seed = features(dict(row))
                if seed.is_seed:
                    fetched.append(seed)
        with self._lock:
            for seed in fetched:
                self._remember(seed)
        return stored, [*seeds, *fetched]

    def _recent_seeds(self) -> list[StoryFeatures]:
        cutoff = time.monotonic() - self._recent_s
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()
        return [seed for _, seed in self._recent]

    def forget(self, ids: Collection[str]) -> None:
        """Deleted articles stop being candidate seeds at once (the recent seeds and the
        cache would otherwise offer a deleted story's first article for up to 30 s, or until
        evicted)."""
        gone = set(ids)
        with self._lock:
            for article_id in gone:
                self._cache.pop(article_id, None)
            kept = [(at, seed) for at, seed in self._recent if seed.id not in gone]
            self._recent.clear()
            self._recent.extend(kept)

    def _remember(self, seed: StoryFeatures) -> None:
        self._cache[seed.id] = seed
        self._cache.move_to_end(seed.id)
        while len(self._cache) > SEED_CACHE_MAX:
            self._cache.popitem(last=False)


class StoryClusters(Protocol):
    """What the story step needs: the rows given back with their ``story_id``, and deleted
    articles forgotten as candidate seeds."""

    def assign(self, rows: Sequence[ArticleRow]) -> list[ArticleRow]: ...

    def forget(self, ids: Collection[str]) -> None: ...


class AssignStories:
    """The story step (see the module docstring)."""

    def __init__(
        self, stories: StoryClusters, *, stop: threading.Event, max_backoff_s: float
    ) -> None:
        self._stories = stories
        self._stop = stop
        self._max_backoff_s = max_backoff_s

    def __call__(self, batch: Batch) -> Batch:
        rows = batch.rows
        if rows:
            batch.rows = retry_transient(
                lambda: self._stories.assign(rows),
                dependency="milvus",
                stop=self._stop,
                max_backoff_s=self._max_backoff_s,
            )
        return batch
