"""Stages 4-8 on one batch: dedup, embed the survivors, upsert, check the count, record.

Runs on a worker thread (arroyo ``RunTaskInThreads``), never in the polling thread. What goes
in: a batch of :class:`consumers.prepare.Prepared` items. What comes out: an
:class:`consumers.outcomes.IndexReport`, returned only once Milvus acknowledged every row of the
batch (and the DLQ every poison item of it); only then does the batch reach the commit step,
which counts it.

Guarantees:
- ids are deduplicated inside the batch before the upsert (the last version wins), so a
  re-published article replaces its row and never adds a second one;
- the upsert count Milvus returns is checked against the rows sent (a short count is retried);
- an embedding that is not a finite vector of the collection's dimension is poison: the
  message goes to the DLQ (acknowledged before the commit), the rest of the batch goes on;
- an outage (Milvus or the DLQ broker unreachable) is retried with capped exponential backoff
  and jitter for as long as it lasts; meanwhile the bounded queue in front of this step fills and
  arroyo pauses the partitions (backpressure). Nothing is dropped and nothing goes to the DLQ
  because of an outage. When ``stop`` is set during a retry the batch is abandoned unacknowledged
  (its offsets are not committed, so it is consumed again);
- dedup state is recorded only after the upsert was acknowledged.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from pymilvus import MilvusException
from redis.exceptions import RedisError

from consumers.outcomes import IndexReport, OutcomeTally
from consumers.prepare import DlqFlood, Origin, Prepared, dlq_reason
from consumers.quality import detect_language
from core.errors import InvalidMessage, TransientError
from core.failpoints import failpoint
from core.ids import content_hash
from core.metrics import BATCH_SIZE, RETRIES, STAGE_SECONDS, RejectReason, Stage
from embedding.embedder import Embedder
from store.row import encode_sources, truncate_utf8
from store.schema import TEXT_MAX, TITLE_MAX

log = logging.getLogger(__name__)


class Abandoned(Exception):
    """The worker is stopping while a batch waited for a dependency; it will be re-consumed."""


class DlqSink(Protocol):
    def send(self, items: list[tuple[Origin, str]], timeout_s: float = 30.0) -> None: ...


class DedupStep(Protocol):
    """What the indexer needs from the dedup stage (see ``consumers.dedup_stage``)."""

    def partition(self, items: Sequence[Prepared]) -> tuple[list[Prepared], list[Prepared]]:
        """Split into (to index, duplicates); duplicates are recorded on their kept article."""
        ...

    def extra_fields(self, item: Prepared) -> dict[str, Any]:
        """Row fields decided by dedup (story_id, also_reported_by)."""
        ...

    def record(self, items: Sequence[Prepared]) -> None:
        """Remember indexed items (called only after Milvus acknowledged them)."""
        ...


class StoryStep(Protocol):
    """What the indexer needs from story clustering (see ``consumers.stories``)."""

    def assign(self, rows: list[dict[str, Any]]) -> None:
        """Set ``story_id`` on rows about to be upserted."""
        ...


def retry_transient(
    action: Callable[[], Any],
    *,
    dependency: str,
    stop: threading.Event,
    max_backoff_s: float,
    base_s: float = 0.25,
) -> Any:
    """Run ``action`` until it succeeds, sleeping with capped exponential backoff and jitter on
    :class:`TransientError`, ``MilvusException`` or connection errors; raises
    :class:`Abandoned` once ``stop`` is set."""
    attempt = 0
    while True:
        if stop.is_set():
            raise Abandoned(f"stopping while waiting for {dependency}")
        try:
            return action()
        except (TransientError, MilvusException, RedisError, ConnectionError, TimeoutError) as exc:
            attempt += 1
            RETRIES.labels(dependency).inc()
            delay = random.uniform(base_s, min(max_backoff_s, base_s * 2 ** min(attempt, 16)))
            log.warning("%s unavailable (%s); retry %d in %.1f s", dependency, exc, attempt, delay)
            stop.wait(delay)


class Indexer:
    """Embeds and upserts batches (see the module docstring)."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        upsert: Callable[[list[dict[str, Any]]], int],
        tally: OutcomeTally,
        stop: threading.Event,
        dlq: DlqSink | None = None,
        dedup: DedupStep | None = None,
        stories: StoryStep | None = None,
        max_backoff_s: float = 30.0,
        max_consecutive_poison: int = 100,
    ) -> None:
        self._embedder = embedder
        self._upsert = upsert
        self.tally = tally  # the commit step counts each batch's report into it
        self._stop = stop
        self._dlq = dlq
        self._dedup = dedup
        self._stories = stories
        self._max_backoff_s = max_backoff_s
        self._max_poison = max_consecutive_poison
        self._poison_streak = 0

    def index(self, batch: Sequence[Prepared]) -> IndexReport:
        """Dedup, embed and upsert the survivors of ``batch``; returns when all is acknowledged."""
        BATCH_SIZE.observe(len(batch))
        latest: dict[str, Prepared] = {}
        rejected = 0
        poison: list[tuple[Prepared, str]] = []
        for item in batch:
            if item.poison is not None:
                poison.append((item, item.poison))
                continue
            if item.clean is None:
                rejected += 1
                continue
            latest[item.clean.article.id] = item  # later offsets win
        # Earlier versions of an id inside this batch are superseded by its last version (the
        # row); they count as duplicates so that every consumed message has one outcome.
        superseded = len(batch) - rejected - len(poison) - len(latest)
        survivors = list(latest.values())
        duplicates: list[Prepared] = []
        if self._dedup is not None and survivors:
            started = time.monotonic()
            survivors, duplicates = retry_transient(
                lambda: self._dedup.partition(survivors) if self._dedup else (survivors, []),
                dependency="dedup",
                stop=self._stop,
                max_backoff_s=self._max_backoff_s,
            )
            STAGE_SECONDS.labels(Stage.DEDUP).observe(time.monotonic() - started)
        rows: list[dict[str, Any]] = []
        indexed: list[Prepared] = []
        if survivors:
            started = time.monotonic()
            failpoint("during_embed")
            vectors = self._embedder.embed([i.clean.text for i in survivors if i.clean])
            STAGE_SECONDS.labels(Stage.EMBED).observe(time.monotonic() - started)
            for item, vector in zip(survivors, vectors, strict=True):
                problem = self._vector_problem(vector)
                if problem is not None:
                    poison.append((item, dlq_reason(Stage.EMBED, InvalidMessage(problem))))
                    continue
                rows.append(self._row(item, vector))
                indexed.append(item)
        if poison:
            self._send_to_dlq(poison)
        if rows and self._stories is not None:
            stories = self._stories
            retry_transient(
                lambda: stories.assign(rows),
                dependency="milvus",
                stop=self._stop,
                max_backoff_s=self._max_backoff_s,
            )
        if rows:
            started = time.monotonic()
            retry_transient(
                lambda: self._upsert_checked(rows),
                dependency="milvus",
                stop=self._stop,
                max_backoff_s=self._max_backoff_s,
            )
            STAGE_SECONDS.labels(Stage.UPSERT).observe(time.monotonic() - started)
            failpoint("after_upsert")
            now_ms = time.time() * 1000
            self.tally.time_to_searchable(
                [
                    max(0.0, (now_ms - item.produced_at_ms) / 1000)
                    for item in indexed
                    if item.produced_at_ms is not None
                ]
            )
        if self._dedup is not None and (indexed or duplicates):
            started = time.monotonic()
            retry_transient(
                lambda: self._dedup.record(indexed) if self._dedup else None,
                dependency="dedup",
                stop=self._stop,
                max_backoff_s=self._max_backoff_s,
            )
            STAGE_SECONDS.labels(Stage.RECORD).observe(time.monotonic() - started)
        # Nothing is counted here: the report travels with the batch's offsets and is counted
        # when they are committed (``consumers.outcomes.CommitAndCount``), so a batch finished
        # after its partitions were given away is counted once, by the worker that commits it.
        reasons: dict[RejectReason, int] = {}
        for item in batch:
            if item.reject is not None:
                reasons[item.reject] = reasons.get(item.reject, 0) + 1
        return IndexReport(
            consumed=len(batch),
            indexed=len(indexed),
            duplicate=superseded + len(duplicates),
            rejected=rejected,
            dlq=len(poison),
            rejected_by_reason=reasons,
        )

    def _upsert_checked(self, rows: list[dict[str, Any]]) -> None:
        count = self._upsert(rows)
        if count != len(rows):
            raise TransientError(f"Milvus acknowledged {count} of {len(rows)} rows")

    def _vector_problem(self, vector: np.ndarray) -> str | None:
        if vector.shape != (self._embedder.dimension,):
            return f"embedding has shape {vector.shape}, expected ({self._embedder.dimension},)"
        if not np.all(np.isfinite(vector)):
            return "embedding holds NaN or infinite values"
        return None

    def _send_to_dlq(self, poison: list[tuple[Prepared, str]]) -> None:
        embed_poison = sum(1 for item, _ in poison if item.clean is not None)
        self._poison_streak += embed_poison
        if self._poison_streak > self._max_poison:
            raise DlqFlood(f"{self._poison_streak} unusable embeddings in a row; stopping")
        items = [(item.origin, reason) for item, reason in poison if item.origin is not None]
        if self._dlq is None:
            raise DlqFlood("poison message but no DLQ configured")
        dlq = self._dlq
        retry_transient(
            lambda: dlq.send(items),
            dependency="kafka",
            stop=self._stop,
            max_backoff_s=self._max_backoff_s,
        )

    def _row(self, item: Prepared, vector: np.ndarray) -> dict[str, Any]:
        self._poison_streak = 0
        assert item.clean is not None
        article = item.clean.article
        text = item.clean.text
        row: dict[str, Any] = {
            "id": article.id,
            "embedding": vector.tolist(),
            "title": truncate_utf8(item.clean.title, TITLE_MAX),
            "text": truncate_utf8(text, TEXT_MAX),
            "url": article.url,
            "source": article.source,
            "feed_id": article.feed_id,
            "language": (article.language or detect_language(text))[:16],
            "published_at": int(article.published_at or 0),
            "ingested_at": int(time.time()),
            "story_id": article.id,
            "model": self._embedder.model_name,
            "content_hash": content_hash(text),
            "also_reported_by": encode_sources([]),
        }
        if self._dedup is not None:
            row.update(self._dedup.extra_fields(item))
        return row
