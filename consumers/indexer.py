"""Stages 5-7 on one batch: embed the survivors, upsert them into Milvus, check the count.

Runs on a worker thread (arroyo ``RunTaskInThreads``), never in the polling thread. What goes
in: a batch of :class:`consumers.prepare.Prepared` items. What comes out: an
:class:`IndexReport` once Milvus acknowledged every row of the batch; only then does the batch
reach the commit step.

Guarantees:
- ids are deduplicated inside the batch before the upsert (the last version wins), so a
  re-published article replaces its row and never adds a second one;
- the upsert count Milvus returns is checked against the rows sent;
- an outage (Milvus unreachable or refusing) is retried with capped exponential backoff and
  jitter for as long as it lasts; meanwhile the bounded queue in front of this step fills and
  arroyo pauses the partitions (backpressure). Nothing is dropped and nothing goes to the DLQ
  because of an outage. When ``stop`` is set during a retry the batch is abandoned unacknowledged
  (its offsets are not committed, so it is consumed again).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymilvus import MilvusException

from consumers.prepare import Prepared
from core.embedding import Embedder
from core.errors import TransientError
from core.ids import content_hash
from core.metrics import (
    BATCH_SIZE,
    OUTCOMES,
    RETRIES,
    STAGE_SECONDS,
    TIME_TO_SEARCHABLE,
    Outcome,
    RejectReason,
    Stage,
)
from core.milvus import TEXT_MAX, TITLE_MAX, truncate_utf8

log = logging.getLogger(__name__)


class Abandoned(Exception):
    """The worker is stopping while a batch waited for a dependency; it will be re-consumed."""


@dataclass(frozen=True)
class IndexReport:
    """What one batch became."""

    consumed: int
    indexed: int
    duplicate: int
    rejected: int


def retry_transient(
    action: Callable[[], Any],
    *,
    dependency: str,
    stop: threading.Event,
    max_backoff_s: float,
    base_s: float = 0.25,
) -> Any:
    """Run ``action`` until it succeeds, sleeping with capped exponential backoff and jitter on
    :class:`TransientError` or ``MilvusException``; raises :class:`Abandoned` once ``stop`` is
    set."""
    attempt = 0
    while True:
        if stop.is_set():
            raise Abandoned(f"stopping while waiting for {dependency}")
        try:
            return action()
        except (TransientError, MilvusException, ConnectionError, TimeoutError) as exc:
            attempt += 1
            RETRIES.labels(dependency).inc()
            delay = random.uniform(0, min(max_backoff_s, base_s * 2 ** min(attempt, 16)))
            log.warning("%s unavailable (%s); retry %d in %.1f s", dependency, exc, attempt, delay)
            stop.wait(delay)


class Indexer:
    """Embeds and upserts batches (see the module docstring)."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        upsert: Callable[[list[dict[str, Any]]], int],
        stop: threading.Event,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._embedder = embedder
        self._upsert = upsert
        self._stop = stop
        self._max_backoff_s = max_backoff_s

    def index(self, batch: Sequence[Prepared]) -> IndexReport:
        """Embed and upsert the survivors of ``batch``; returns when Milvus acknowledged."""
        BATCH_SIZE.observe(len(batch))
        latest: dict[str, Prepared] = {}
        rejected = 0
        for item in batch:
            if item.clean is None:
                rejected += 1
                continue
            latest[item.clean.article.id] = item  # later offsets win
        survivors = list(latest.values())
        # Earlier versions of an id inside this batch are superseded by its last version (the
        # row); they count as duplicates so that every consumed message has one outcome.
        superseded = len(batch) - rejected - len(survivors)
        if not survivors:
            return IndexReport(len(batch), 0, 0, rejected)
        started = time.monotonic()
        texts = [item.clean.text for item in survivors if item.clean is not None]
        vectors = self._embedder.embed(texts)
        STAGE_SECONDS.labels(Stage.EMBED).observe(time.monotonic() - started)
        rows = [self._row(item, vector) for item, vector in zip(survivors, vectors, strict=True)]
        started = time.monotonic()
        count = retry_transient(
            lambda: self._upsert(rows),
            dependency="milvus",
            stop=self._stop,
            max_backoff_s=self._max_backoff_s,
        )
        STAGE_SECONDS.labels(Stage.UPSERT).observe(time.monotonic() - started)
        if count != len(rows):
            # Milvus acknowledged fewer rows than sent: treat as not acknowledged at all.
            raise TransientError(f"Milvus upserted {count} of {len(rows)} rows")
        now_ms = time.time() * 1000
        for item in survivors:
            if item.produced_at_ms is not None:
                TIME_TO_SEARCHABLE.observe(max(0.0, (now_ms - item.produced_at_ms) / 1000))
        OUTCOMES.labels(Outcome.INDEXED, RejectReason.NONE).inc(len(survivors))
        if superseded:
            OUTCOMES.labels(Outcome.DUPLICATE, RejectReason.NONE).inc(superseded)
        return IndexReport(len(batch), len(survivors), superseded, rejected)

    def _row(self, item: Prepared, vector: np.ndarray) -> dict[str, Any]:
        assert item.clean is not None
        article = item.clean.article
        text = item.clean.text
        return {
            "id": article.id,
            "embedding": vector.tolist(),
            "title": truncate_utf8(item.clean.title, TITLE_MAX),
            "text": truncate_utf8(text, TEXT_MAX),
            "url": article.url,
            "source": article.source,
            "feed_id": article.feed_id,
            "language": article.language,
            "published_at": int(article.published_at or 0),
            "ingested_at": int(time.time()),
            "story_id": article.id,
            "model": self._embedder.model_name,
            "content_hash": content_hash(text),
            "also_reported_by": [],
        }
