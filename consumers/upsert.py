"""Stage 7, upsert: the batch's rows into Milvus, acknowledged and counted.

In: a batch whose rows (:class:`store.row.ArticleRow`) have their story. Out: the same batch,
returned only once Milvus acknowledged every row (through the one writer,
:meth:`store.writer.ArticleWriter.upsert`, which also feeds the keyword index). Ids are already
unique inside the batch (:meth:`Batch.of` keeps the last version of an id), so a re-published
article replaces its row and never adds a second one. The count Milvus returns is checked against the rows sent; a short count, like an outage,
is retried with capped exponential backoff until ``stop``. The failpoint ``after_upsert`` lets
the fault tests kill the worker between this acknowledgement and the commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from consumers.failpoints import failpoint
from consumers.item import Batch
from consumers.outcomes import OutcomeTally
from consumers.retry import retry_transient
from core.errors import TransientError
from core.metrics import STAGE_SECONDS, Stage
from store.row import ArticleRow


class Upsert:
    """The upsert step (see the module docstring); records time-to-searchable in ``tally``."""

    def __init__(
        self,
        upsert: Callable[[list[ArticleRow]], int],
        tally: OutcomeTally,
        *,
        stop: threading.Event,
        max_backoff_s: float,
    ) -> None:
        self._upsert = upsert
        self._tally = tally
        self._stop = stop
        self._max_backoff_s = max_backoff_s

    def __call__(self, batch: Batch) -> Batch:
        rows = batch.rows
        if not rows:
            return batch
        started = time.monotonic()
        retry_transient(
            lambda: self._checked(rows),
            dependency="milvus",
            stop=self._stop,
            max_backoff_s=self._max_backoff_s,
        )
        STAGE_SECONDS.labels(Stage.UPSERT).observe(time.monotonic() - started)
        now_ms = time.time() * 1000
        batch.indexed_at_ms = int(now_ms)
        failpoint("after_upsert")
        self._tally.time_to_searchable(
            [
                max(0.0, (now_ms - item.produced_at_ms) / 1000)
                for item in batch.indexed
                if item.produced_at_ms is not None
            ]
        )
        return batch

    def _checked(self, rows: list[ArticleRow]) -> None:
        count = self._upsert(rows)
        if count != len(rows):
            raise TransientError(f"Milvus acknowledged {count} of {len(rows)} rows")
