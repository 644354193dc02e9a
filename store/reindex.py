"""Reindex without downtime: build a new collection from the stored rows, then swap the alias.

What goes in: the settings, a Milvus client, the embedder of the model to build with (the
configured one, or ``--model``/``--backend``) and the embedding cache. What comes out: a new real
collection ``<name>_v<N>`` holding every stored article, embedded by that model (its fingerprint
recorded on it), served through the alias ``<name>`` (:mod:`store.aliases`), and the previous
collection kept, and kept current, for a rollback until ``drop_old``.

The steps of :meth:`Reindexer.run` and what each guarantees:

1. create the target (schema, index, fingerprint; role ``building``) and set it as the serving
   collection's mirror; then wait until every writer has re-read the routing
   (:data:`store.writer.ROUTING_REFRESH_S`): from then on workers write new and deleted
   articles to both collections (a target whose fingerprint refuses the workers' model is
   caught up by step 3 instead).
2. copy: read the serving collection with a query iterator (the stored rows, not Kafka, whose
   retention may have passed), embed each text through the cache keyed by (content hash, model
   fingerprint), upsert into the target and its keyword index. When the serving collection
   records exactly this model's fingerprint (same model, same backend), its stored vectors are
   what the model makes: they are reused (and cached), nothing is embedded.
3. catch up: compare both collections row by row (id, ingested time, content hash, story,
   other sources) and copy what differs, delete what the serving one no longer holds (an article
   deleted while the copy read it). Run twice: the second pass finds what raced the first.
4. swap: the target mirrors back into the old collection, then the alias moves (one call; two
   on an install whose name was a real collection, see :func:`store.aliases.swap`).

A failure leaves the serving collection as it was; running again resumes the same target (its
role is still ``building``) and embeds nothing it embedded before.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pymilvus import MilvusClient

from core.errors import ConfigurationError, TransientError
from core.settings import Settings
from store.aliases import (
    MIRROR,
    ROLE,
    collection_properties,
    keyword_path,
    next_generation,
    resolve,
    set_properties,
    swap,
)
from store.client import row_pages
from store.embed_cache import EmbeddingCache, fingerprint_key, text_key
from store.fingerprint import ModelStamp, recorded_fingerprint
from store.keyword_index import KeywordIndex, doc_from_row
from store.row import ArticleRow
from store.schema import OUTPUT_FIELDS, VECTOR_FIELD, ensure_collection
from store.writer import ROUTING_REFRESH_S

log = logging.getLogger(__name__)

#: Fields compared by the catch-up: a row whose values differ is copied again.
STATE_FIELDS = ["id", "ingested_at", "content_hash", "story_id", "also_reported_by"]


class TextEmbedder(Protocol):
    """What the reindex needs of :class:`embedding.embedder.Embedder`."""

    model_name: str
    dimension: int

    @property
    def fingerprint(self) -> ModelStamp: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class ReindexProgress:
    """Where a reindex is: its phase, rows done of the total, and how many were embedded or
    read from the cache."""

    phase: str = "starting"
    source: str = ""
    target: str = ""
    done: int = 0
    total: int = 0
    embedded: int = 0
    cached: int = 0
    reused: int = 0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str = ""

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        elapsed = (self.finished_at or time.time()) - self.started_at
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate (None before any row)."""
        rate = self.rate
        return max(0.0, (self.total - self.done) / rate) if rate > 0 else None

    def to_json(self) -> dict[str, Any]:
        eta = self.eta_s
        return {
            "phase": self.phase,
            "source": self.source,
            "target": self.target,
            "done": self.done,
            "total": self.total,
            "embedded": self.embedded,
            "cached": self.cached,
            "reused": self.reused,
            "rate_per_s": round(self.rate, 1),
            "eta_s": None if eta is None else round(eta, 1),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }


def embedding_cache_path(settings: Settings) -> Path:
    """The embedding cache file of reindexes under the data dir."""
    return settings.data_dir / "embed-cache" / "vectors.sqlite"


def count_rows(client: MilvusClient, collection: str) -> int:
    """Rows in ``collection`` at Strong consistency."""
    result = client.query(
        collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
    )
    return int(result[0]["count(*)"])


def row_state(row: dict[str, Any]) -> tuple[Any, ...]:
    """What the catch-up compares of one row (see :data:`STATE_FIELDS`)."""
    return (
        int(row.get("ingested_at") or 0),
        str(row.get("content_hash") or ""),
        str(row.get("story_id") or ""),
        json.dumps(row.get("also_reported_by"), sort_keys=True),
    )


def plan_catch_up(
    source: dict[str, tuple[Any, ...]], target: dict[str, tuple[Any, ...]]
) -> tuple[list[str], list[str]]:
    """Ids to copy (missing in ``target`` or different there) and ids to delete from it (gone
    from ``source``), each sorted."""
    copy = sorted(i for i, state in source.items() if target.get(i) != state)
    delete = sorted(set(target) - set(source))
    return copy, delete


class Reindexer:
    """Runs the steps of the module docstring for one configured collection name."""

    def __init__(
        self,
        settings: Settings,
        client: MilvusClient,
        embedder: TextEmbedder,
        cache: EmbeddingCache,
        *,
        on_progress: Callable[[ReindexProgress], None] | None = None,
        batch: int = 256,
        settle_s: float = ROUTING_REFRESH_S + 1.0,
        reuse_vectors: bool = True,
    ) -> None:
        """``reuse_vectors=False`` embeds (through the cache) even when the stored vectors
        were made by this very model and backend (the benchmark measures the cache so)."""
        self._settings = settings
        self._client = client
        self._embedder = embedder
        self._cache = cache
        self._name = settings.milvus_collection
        self._on_progress = on_progress
        self._batch = batch
        self._settle_s = settle_s
        self._fp = fingerprint_key(embedder.fingerprint.to_json())
        self.progress = ReindexProgress()
        self._keywords: KeywordIndex | None = None
        self._reuse = False
        self._reuse_allowed = reuse_vectors

    def _report(self, **changes: Any) -> None:
        self.progress = replace(self.progress, **changes)
        if self._on_progress is not None:
            self._on_progress(self.progress)

    def run(self) -> ReindexProgress:
        """Build, fill, catch up and swap (see the module docstring); returns the final progress.
        Raises :class:`ConfigurationError` when there is nothing to reindex or a previous
        collection is still kept, and what Milvus raises on an outage (run again to resume)."""
        try:
            self._run()
        except Exception as exc:
            self._report(phase="failed", error=str(exc), finished_at=time.time())
            raise
        finally:
            if self._keywords is not None:
                self._keywords.close()
        return self.progress

    def _run(self) -> None:
        client = self._client
        serving = resolve(client, self._name)
        if not client.has_collection(serving.collection):
            raise ConfigurationError(f"no collection {self._name!r} to reindex")
        source = serving.collection
        target = serving.mirror
        if target and collection_properties(client, target).get(ROLE) != "building":
            raise ConfigurationError(
                f"the previous collection {target!r} is still kept for a rollback: run "
                "`newsstream reindex --rollback` or `newsstream reindex --drop-old` first"
            )
        if not target:
            target = next_generation(self._name, list(client.list_collections()))
        self._report(phase="preparing", source=source, target=target)
        has_bm25 = ensure_collection(
            client,
            self._settings.model_copy(update={"milvus_collection": target}),
            self._embedder.dimension,
            self._embedder.fingerprint,
        )
        if self._settings.keyword_index and not has_bm25:
            self._keywords = KeywordIndex(keyword_path(self._settings.data_dir, target, {}))
        set_properties(client, target, {ROLE: "building"})
        # The same model on the same backend made the stored vectors: reuse them (a reindex
        # for a schema or index change embeds nothing); any other fingerprint embeds again.
        self._reuse = self._reuse_allowed and (
            recorded_fingerprint(client, source) == self._embedder.fingerprint.to_json()
        )
        set_properties(client, source, {MIRROR: target})
        time.sleep(self._settle_s)  # every writer now mirrors into the target

        self._report(phase="copying", total=count_rows(client, source))
        for rows in row_pages(client, source, self._read_fields(), batch=self._batch):
            self._copy(target, rows)
            self._report(done=self.progress.done + len(rows))

        for _ in range(2):
            self._report(phase="catching up")
            self._catch_up(source, target)

        self._report(phase="swapping")
        # The first swap renames a real collection ``name`` (see store.aliases.swap): the
        # target mirrors into the name it is about to get.
        previous = legacy_name(self._name) if source == self._name else source
        set_properties(client, target, {ROLE: "serving", MIRROR: previous})
        swap(client, self._name, target)
        set_properties(client, previous, {ROLE: "previous", MIRROR: ""})
        self._report(phase="done", source=previous)
        if source == self._name:
            # Writers that had not re-read the routing wrote to ``name``, the alias since the
            # rename: the renamed collection missed those rows; copy them back to it.
            time.sleep(self._settle_s)
            self._catch_up_previous(target, previous)
        self._report(finished_at=time.time())
        log.info("reindex: %r now serves %r (previous: %r)", self._name, target, previous)

    def _read_fields(self) -> list[str]:
        return [*OUTPUT_FIELDS, VECTOR_FIELD] if self._reuse else OUTPUT_FIELDS

    def _vectors(self, rows: Sequence[dict[str, Any]]) -> list[np.ndarray]:
        """One vector per row: the stored one when reused, else from the cache or embedded
        (and then cached)."""
        keys = [
            str(r.get("content_hash") or "") or text_key(str(r.get("text") or "")) for r in rows
        ]
        if self._reuse:
            stored = {
                k: np.asarray(r[VECTOR_FIELD], dtype=np.float32)
                for k, r in zip(keys, rows, strict=True)
            }
            self._cache.put_many(self._fp, stored)
            self._report(reused=self.progress.reused + len(rows))
            return [stored[k] for k in keys]
        found = self._cache.get_many(self._fp, keys)
        missing = {k: str(r.get("text") or "") for k, r in zip(keys, rows, strict=True)}
        missing = {k: t for k, t in missing.items() if k not in found}
        if missing:
            texts = list(missing.values())
            step = self._settings.embedding_batch_size
            made = np.concatenate(
                [self._embedder.embed(texts[i : i + step]) for i in range(0, len(texts), step)]
            )
            fresh = dict(zip(missing, made, strict=True))
            self._cache.put_many(self._fp, fresh)
            found.update(fresh)
        self._report(
            embedded=self.progress.embedded + len(missing),
            cached=self.progress.cached + len(rows) - len(missing),
        )
        return [found[k] for k in keys]

    def _copy(self, target: str, rows: Sequence[dict[str, Any]]) -> None:
        """Embed ``rows`` (stored rows without their vector) and upsert them into ``target``."""
        if not rows:
            return
        vectors = self._vectors(rows)
        entities = [
            ArticleRow.from_milvus({**row, VECTOR_FIELD: vector.tolist()})
            .with_changes(model=self._embedder.model_name)
            .to_milvus()
            for row, vector in zip(rows, vectors, strict=True)
        ]
        count = int(self._client.upsert(target, entities)["upsert_count"])
        if count != len(entities):
            raise TransientError(f"Milvus acknowledged {count} of {len(entities)} rows")
        if self._keywords is not None:
            self._keywords.upsert(doc_from_row(entity) for entity in entities)

    def _catch_up_previous(self, serving: str, previous: str) -> None:
        """Copy into ``previous`` the rows of ``serving`` it lacks or holds in another state,
        with their stored vectors, when ``previous`` accepts this model's vectors (else a
        rollback misses the rows of those few seconds: said in the log)."""
        recorded = recorded_fingerprint(self._client, previous)
        reason = None if recorded is None else self._embedder.fingerprint.refusal(recorded)
        if reason is not None:
            log.warning("not catching up %r for a rollback: %s", previous, reason)
            return
        copy, delete = plan_catch_up(self._states(serving), self._states(previous))
        keywords = None
        if self._keywords is not None:
            properties = collection_properties(self._client, previous)
            keywords = KeywordIndex(keyword_path(self._settings.data_dir, previous, properties))
        try:
            if delete:
                self._client.delete(previous, ids=delete)
                if keywords is not None:
                    keywords.delete(delete)
            for start in range(0, len(copy), self._batch):
                rows = self._client.get(
                    serving,
                    ids=copy[start : start + self._batch],
                    output_fields=[*OUTPUT_FIELDS, VECTOR_FIELD],
                    consistency_level="Strong",
                )
                entities = [ArticleRow.from_milvus(row).to_milvus() for row in rows]
                if entities:
                    self._client.upsert(previous, entities)
                    if keywords is not None:
                        keywords.upsert(doc_from_row(entity) for entity in entities)
        finally:
            if keywords is not None:
                keywords.close()
        log.info(
            "reindex: %d rows copied back into %r, %d deleted", len(copy), previous, len(delete)
        )

    def _states(self, collection: str) -> dict[str, tuple[Any, ...]]:
        return {
            str(row["id"]): row_state(row)
            for rows in row_pages(self._client, collection, STATE_FIELDS)
            for row in rows
        }

    def _catch_up(self, source: str, target: str) -> None:
        copy, delete = plan_catch_up(self._states(source), self._states(target))
        if delete:
            self._client.delete(target, ids=delete)
            if self._keywords is not None:
                self._keywords.delete(delete)
        for start in range(0, len(copy), self._batch):
            ids = copy[start : start + self._batch]
            rows = self._client.get(
                source, ids=ids, output_fields=self._read_fields(), consistency_level="Strong"
            )
            self._copy(target, [dict(r) for r in rows])
        log.info("reindex catch-up: %d rows copied, %d deleted", len(copy), len(delete))


def legacy_name(name: str) -> str:
    """What the first swap renames a real collection ``name`` to."""
    return f"{name}_v1"


def rollback(client: MilvusClient, name: str) -> str:
    """Point ``name`` back at the previous collection (kept current since the swap); the
    collection it leaves is kept, and kept current, until :func:`drop_old`. Returns the
    collection now served. Raises :class:`ConfigurationError` when there is none to go back to."""
    serving = resolve(client, name)
    previous = serving.mirror
    if not previous or collection_properties(client, previous).get(ROLE) != "previous":
        raise ConfigurationError(f"{name!r} has no previous collection to roll back to")
    set_properties(client, previous, {ROLE: "serving", MIRROR: serving.collection})
    swap(client, name, previous)
    set_properties(client, serving.collection, {ROLE: "previous", MIRROR: ""})
    return previous


def drop_old(
    client: MilvusClient, settings: Settings, *, settle_s: float = ROUTING_REFRESH_S + 1.0
) -> str | None:
    """Stop mirroring into the collection kept for a rollback (or an unfinished reindex
    target), wait until every writer has seen that, then drop it and its keyword index; returns
    its name, or None when there was none."""
    name = settings.milvus_collection
    serving = resolve(client, name)
    old = serving.mirror
    if not old:
        return None
    properties = collection_properties(client, old)
    set_properties(client, serving.collection, {MIRROR: ""})
    time.sleep(settle_s)
    client.drop_collection(old)
    path = keyword_path(settings.data_dir, old, properties)
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return old


def status(client: MilvusClient, name: str) -> dict[str, Any]:
    """What ``name`` serves now: the real collection, its rows and model, and the collection it
    mirrors into (with its role and rows)."""
    serving = resolve(client, name)
    recorded = recorded_fingerprint(client, serving.collection)
    out: dict[str, Any] = {
        "name": name,
        "alias": serving.is_alias,
        "serving": serving.collection,
        "rows": count_rows(client, serving.collection),
        "model": recorded,
        "mirror": serving.mirror or None,
    }
    if serving.mirror:
        out["mirror_role"] = collection_properties(client, serving.mirror).get(ROLE, "")
        out["mirror_rows"] = count_rows(client, serving.mirror)
    return out
