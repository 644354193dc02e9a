"""Stage 6, embed: the batch's survivors (only they) become rows with their vectors.

In: a batch after the dedup step. Out: the same batch with ``rows``, typed
:class:`store.row.ArticleRow` values (one per survivor whose vector is usable, in survivor
order, each its own story until the story step; its content hash is the dedup verdict's, or
:func:`dedup.index.text_hash` of its text for an item the dedup step did not see) and
``indexed`` (their items). One embedder call per batch.
A vector that is not a finite vector of the collection's dimension is poison: its item joins
the batch's poison (written to the DLQ by the next step) and the rest of the batch goes on.
The failpoint ``during_embed`` lets the fault tests kill the worker here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from consumers.dlq import dlq_reason
from consumers.failpoints import failpoint
from consumers.item import Batch, Item
from consumers.quality import detect_language
from core.errors import InvalidMessage
from core.metrics import STAGE_SECONDS, Stage
from dedup.index import text_hash
from store.row import ArticleRow, truncate_utf8
from store.schema import LANGUAGE_MAX, TEXT_MAX, TITLE_MAX


class TextEmbedder(Protocol):
    """What the step needs from :class:`embedding.embedder.Embedder`."""

    model_name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class Embed:
    """The embed step (see the module docstring)."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self._embedder = embedder

    def __call__(self, batch: Batch) -> Batch:
        if not batch.survivors:
            return batch
        started = time.monotonic()
        failpoint("during_embed")
        vectors = self._embedder.embed([i.clean.text for i in batch.survivors if i.clean])
        STAGE_SECONDS.labels(Stage.EMBED).observe(time.monotonic() - started)
        for item, vector in zip(batch.survivors, vectors, strict=True):
            problem = self._vector_problem(vector)
            if problem is not None:
                batch.poison.append((item, dlq_reason(Stage.EMBED, InvalidMessage(problem))))
                continue
            batch.rows.append(self._row(item, vector))
            batch.indexed.append(item)
        return batch

    def _vector_problem(self, vector: np.ndarray) -> str | None:
        if vector.shape != (self._embedder.dimension,):
            return f"embedding has shape {vector.shape}, expected ({self._embedder.dimension},)"
        if not np.all(np.isfinite(vector)):
            return "embedding holds NaN or infinite values"
        return None

    def _row(self, item: Item, vector: np.ndarray) -> ArticleRow:
        assert item.clean is not None
        article = item.clean.article
        text = item.clean.text
        return ArticleRow(
            id=article.id,
            embedding=vector.tolist(),
            title=truncate_utf8(item.clean.title, TITLE_MAX),
            text=truncate_utf8(text, TEXT_MAX),
            url=article.url,
            source=article.source,
            feed_id=article.feed_id,
            language=(article.language or detect_language(text))[:LANGUAGE_MAX],
            published_at=int(article.published_at or 0),
            ingested_at=int(time.time()),
            model=self._embedder.model_name,
            content_hash=item.verdict.content_hash if item.verdict else text_hash(text),
        )
