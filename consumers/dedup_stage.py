"""The worker's dedup stages: exact + near-duplicate check, and recording dedup state.

What goes in: a batch's surviving :class:`consumers.item.Item` items. What comes out of
:meth:`DedupStage.partition`: the items to embed and index (each carrying its unique
:class:`dedup.index.Verdict`, whose content hash becomes the row's), and the duplicates (exact
by content hash, or near by MinHash LSH confirmed by estimated Jaccard). A duplicate is not
embedded; the kept article records the duplicate's source, URL and id in ``also_reported_by``
(applied in :meth:`DedupStage.record`, after Milvus acknowledged the batch, so the kept row
exists). :meth:`DedupStage.remove` forgets deleted articles.

Guarantees: dedup state is recorded only after the upsert of the kept article returned (the
indexer calls :meth:`record` after the upsert), so a crash in between can never make an article
a duplicate of itself. With the Redis backend the index is shared by all workers and an atomic
claim makes sure that of two near-duplicates checked at the same moment at most one survives.
With the memory backend the index is rebuilt at start from the window of recent rows in Milvus.
:class:`CheckDuplicates` is the worker's step around :meth:`DedupStage.partition` (the record
half is :class:`consumers.record.RecordDedupState`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from pymilvus import MilvusClient, MilvusException

from consumers.item import Batch, Item
from consumers.retry import retry_transient
from core.errors import TransientError
from core.metrics import DEDUP_INDEX_SIZE, STAGE_SECONDS, Stage
from core.settings import Settings
from dedup.index import DedupIndex, IndexParams
from dedup.lsh import LshParams
from dedup.memory_backend import MemoryBackend
from dedup.signature import SignatureParams
from store.client import row_pages
from store.row import OtherSource
from store.writer import ArticleWriter

log = logging.getLogger(__name__)


def index_params(settings: Settings) -> IndexParams:
    """The dedup parameters of ``settings`` (stored with the index, checked at start)."""
    return IndexParams(
        signature=SignatureParams(
            num_perm=settings.dedup_num_perm,
            seed=settings.dedup_seed,
            unit=settings.dedup_shingle_unit,  # type: ignore[arg-type]
            k=settings.dedup_shingle_size,
        ),
        lsh=LshParams(
            threshold=settings.dedup_threshold, bands=settings.dedup_bands, rows=settings.dedup_rows
        ),
        window_s=settings.dedup_window_hours * 3600,
        claim_ttl_s=settings.dedup_claim_ttl_s,
    )


def build_index(settings: Settings, client: MilvusClient) -> DedupIndex:
    """The configured dedup index; the memory backend is rebuilt from recent Milvus rows."""
    params = index_params(settings)
    if settings.dedup_backend == "redis":
        from dedup.redis_backend import RedisBackend

        if settings.dedup_redis_url is None:
            from core.errors import ConfigurationError

            raise ConfigurationError(
                "NEWSSTREAM_DEDUP_BACKEND=redis needs NEWSSTREAM_DEDUP_REDIS_URL "
                "(for example redis://127.0.0.1:6379/0)"
            )
        backend: Any = RedisBackend(
            params,
            settings.dedup_redis_url.get_secret_value(),
            basename=settings.dedup_redis_basename,
        )
        return DedupIndex(backend, params)
    index = DedupIndex(MemoryBackend(params), params)
    now = time.time()
    count = index.rebuild(_recent_rows(client, settings, now - params.window_s), now)
    log.info("dedup index rebuilt from Milvus: %d articles in the window", count)
    DEDUP_INDEX_SIZE.set(index.size())
    return index


#: Width of the time slices the window is read back in at start (see :func:`_recent_rows`).
REBUILD_SLICE_S = 3600


def _recent_rows(client: MilvusClient, settings: Settings, since: float) -> Any:
    """``(id, text, ingested_at)`` of the rows ingested since ``since``, streamed oldest slice
    first: one query iterator per ``REBUILD_SLICE_S`` of ingest time (the last one open-ended),
    rows in Milvus' order within a slice. Nothing is sorted or held beyond one batch, so a
    window of a million articles never sits in memory as texts; an entry recorded behind a
    newer one of its slice expires up to one slice late, never early."""
    if not client.has_collection(settings.milvus_collection):
        return
    start = int(since)
    end = int(time.time())
    while True:
        upper = start + REBUILD_SLICE_S
        last = upper > end
        condition = f"ingested_at >= {start}" + ("" if last else f" and ingested_at < {upper}")
        fields = ["id", "text", "ingested_at"]
        pages = row_pages(client, settings.milvus_collection, fields, expression=condition)
        for page in pages:
            for row in page:
                yield row["id"], row["text"], float(row["ingested_at"])
        if last:
            return
        start = upper


class Deduplicator(Protocol):
    """What the dedup and record steps need from the dedup stage."""

    def partition(self, items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
        """Split into (to index, duplicates); the items to index carry their unique
        :class:`dedup.index.Verdict` (its content hash is the row's); duplicates are recorded
        on their kept article."""
        ...

    def record(self, items: Sequence[Item]) -> None:
        """Remember indexed items (called only after Milvus acknowledged them)."""
        ...

    def remove(self, article_ids: Sequence[str]) -> None:
        """Forget deleted articles (no-op for ids it does not hold)."""
        ...


class CheckDuplicates:
    """The dedup step (per batch): in, a batch; out, its survivors split into the ones to embed
    and the duplicates (not embedded). A dedup backend outage is retried until ``stop``."""

    def __init__(self, dedup: Deduplicator, *, stop: threading.Event, max_backoff_s: float) -> None:
        self._dedup = dedup
        self._stop = stop
        self._max_backoff_s = max_backoff_s

    def __call__(self, batch: Batch) -> Batch:
        if not batch.survivors:
            return batch
        survivors = batch.survivors
        started = time.monotonic()
        batch.survivors, batch.duplicates = retry_transient(
            lambda: self._dedup.partition(survivors),
            dependency="dedup",
            stop=self._stop,
            max_backoff_s=self._max_backoff_s,
        )
        STAGE_SECONDS.labels(Stage.DEDUP).observe(time.monotonic() - started)
        return batch


class DedupStage:
    """The worker's dedup stage (see the module docstring)."""

    def __init__(
        self,
        index: DedupIndex,
        annotate: Callable[[dict[str, list[dict[str, str]]]], None] | None = None,
    ) -> None:
        self._index = index
        self._annotate = annotate
        self._pending: dict[str, list[dict[str, str]]] = {}

    def partition(self, items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
        now = time.time()
        keep: list[Item] = []
        duplicates: list[Item] = []
        for item in items:
            assert item.clean is not None
            article = item.clean.article
            verdict = self._index.check(article.id, item.clean.text, now)
            if verdict.is_duplicate and verdict.duplicate_of:
                duplicates.append(replace(item, verdict=verdict))  # the ledger names the kept id
                if article.url:
                    self._pending.setdefault(verdict.duplicate_of, []).append(
                        {"source": article.source, "url": article.url, "id": article.id}
                    )
            else:
                keep.append(replace(item, verdict=verdict))
        return keep, duplicates

    def record(self, items: Sequence[Item]) -> None:
        now = time.time()
        for item in items:
            assert item.clean is not None
            article_id = item.clean.article.id
            self._index.record(article_id, item.verdict or item.clean.text, now)
        if self._pending and self._annotate is not None:
            pending, self._pending = self._pending, {}
            try:
                self._annotate(pending)
            except MilvusException as exc:  # advisory data: never hold the batch for it
                log.warning("could not record other sources of %d articles: %s", len(pending), exc)
        self._pending.clear()
        self._index.expire(now)
        DEDUP_INDEX_SIZE.set(self._index.size())

    def remove(self, article_ids: Sequence[str]) -> None:
        self._index.remove(article_ids)
        DEDUP_INDEX_SIZE.set(self._index.size())


def milvus_annotator(
    writer: ArticleWriter,
) -> Callable[[dict[str, list[dict[str, str]]]], None]:
    """Adds sources to stored articles' ``also_reported_by`` through ``writer``: one read of
    every kept article of a batch, a merge, one upsert of the changed rows
    (:meth:`store.writer.ArticleWriter.add_sources`)."""

    def annotate(pending: dict[str, list[dict[str, str]]]) -> None:
        sources = {
            article_id: [
                OtherSource(source=s["source"], url=s["url"], id=s.get("id", "")) for s in found
            ]
            for article_id, found in pending.items()
        }
        try:
            writer.add_sources(sources)
        except TransientError as exc:  # a short count: advisory data never holds the batch
            log.warning("could not record other sources of %d articles: %s", len(pending), exc)

    return annotate
