"""Stage 8, record dedup state: remember what was indexed, after Milvus acknowledged it.

In: a batch after the upsert step. Out: the same batch, once the dedup index knows its indexed
articles (and the kept articles know the sources of their duplicates). This step runs only
after the upsert returned, so a crash in between can never make an article a duplicate of
itself (it is consumed again and indexed). A dedup backend outage is retried until ``stop``.
"""

from __future__ import annotations

import threading
import time

from consumers.dedup_stage import Deduplicator
from consumers.item import Batch
from consumers.retry import retry_transient
from core.metrics import STAGE_SECONDS, Stage


class RecordDedupState:
    """The record step (see the module docstring)."""

    def __init__(self, dedup: Deduplicator, *, stop: threading.Event, max_backoff_s: float) -> None:
        self._dedup = dedup
        self._stop = stop
        self._max_backoff_s = max_backoff_s

    def __call__(self, batch: Batch) -> Batch:
        if not (batch.indexed or batch.duplicates):
            return batch
        indexed = batch.indexed
        started = time.monotonic()
        retry_transient(
            lambda: self._dedup.record(indexed),
            dependency="dedup",
            stop=self._stop,
            max_backoff_s=self._max_backoff_s,
        )
        STAGE_SECONDS.labels(Stage.RECORD).observe(time.monotonic() - started)
        return batch
