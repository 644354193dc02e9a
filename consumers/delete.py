"""The delete step: the articles a batch's tombstones name leave every store.

In: a batch whose ``deleted_ids`` are the ids with a tombstone in it (see
:meth:`consumers.item.Batch.of`). Out: the same batch, returned only once every store
acknowledged the deletion: Milvus, the keyword index and the other rows' ``also_reported_by``
lists (one call of the one writer, :meth:`store.writer.ArticleWriter.delete`), then the dedup
index (memory or Redis); ``forget`` (the story step's) drops them from the seeds it keeps in
memory. Deleting an id that is not there is a no-op, so a redelivered
tombstone does no harm.

It runs first among the per-batch steps: an article published after its own delete (or a copy
of a deleted text) is then checked and indexed against stores that no longer hold the deleted
one, as the log order says. Outages are retried with capped exponential backoff until ``stop``
(never a drop, never the DLQ). The failpoint ``after_delete`` lets the fault tests kill the
worker between this acknowledgement and the commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from consumers.dedup_stage import Deduplicator
from consumers.failpoints import failpoint
from consumers.item import Batch
from consumers.retry import retry_transient
from core.metrics import STAGE_SECONDS, Stage


class DeleteArticles:
    """The delete step (see the module docstring)."""

    def __init__(
        self,
        delete: Callable[[list[str]], object],
        dedup: Deduplicator,
        *,
        forget: Callable[[list[str]], object] | None = None,
        stop: threading.Event,
        max_backoff_s: float,
    ) -> None:
        self._delete = delete
        self._dedup = dedup
        self._forget = forget
        self._stop = stop
        self._max_backoff_s = max_backoff_s

    def __call__(self, batch: Batch) -> Batch:
        ids = batch.deleted_ids
        if not ids:
            return batch
        started = time.monotonic()
        retry_transient(
            lambda: self._delete(ids),
            dependency="milvus",
            stop=self._stop,
            max_backoff_s=self._max_backoff_s,
        )
        retry_transient(
            lambda: self._dedup.remove(ids),
            dependency="dedup",
            stop=self._stop,
            max_backoff_s=self._max_backoff_s,
        )
        if self._forget is not None:
            self._forget(ids)  # in memory: the story step's candidate seeds
        STAGE_SECONDS.labels(Stage.DELETE).observe(time.monotonic() - started)
        failpoint("after_delete")
        return batch
