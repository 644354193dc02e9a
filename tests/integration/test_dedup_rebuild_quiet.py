"""A worker start reads its dedup window back from Milvus one hour slice at a time; pymilvus'
"failed to get mvccTs" warning (one per query iterator on servers without MVCC timestamps) must
not reach the terminal once per slice. Other pymilvus warnings, and this one outside the
rebuild, still show."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from consumers.dedup_stage import REBUILD_SLICE_S, _recent_rows
from core.kafka import ensure_topics
from store.client import MVCC_FALLBACK_WARNING, connect
from store.row import encode_sources
from store.schema import VECTOR_FIELD
from store.writer import ArticleWriter

from probes import wait_until
from running import running_worker

pytestmark = pytest.mark.integration

SLICES = 12


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@contextmanager
def pymilvus_records() -> Iterator[Collect]:
    """Every record of the pymilvus loggers (they do not propagate to the root logger)."""
    handler = Collect()
    logger = logging.getLogger("pymilvus")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_a_worker_start_over_many_hour_slices_logs_no_mvcc_warning(
    make_settings: Any, embedder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(dedup_window_hours=float(SLICES + 2))
    ensure_topics(settings)
    client = connect(settings.milvus_uri)
    writer = ArticleWriter.open(client, settings, embedder.dimension)
    now = int(time.time())
    texts = [" ".join(f"slice{n}word{j}" for j in range(40)) for n in range(SLICES)]
    vectors = embedder.embed(texts)
    rows = [
        {
            "id": f"{n + 1:032x}",
            VECTOR_FIELD: np.asarray(vectors[n]).tolist(),
            "title": f"slice {n}",
            "text": texts[n],
            "url": f"https://slices.example/{n}",
            "source": "slices.example",
            "feed_id": "slices",
            "language": "en",
            "published_at": now - n * REBUILD_SLICE_S - 60,
            "ingested_at": now - n * REBUILD_SLICE_S - 60,  # one row in each of 12 slices
            "story_id": f"{n + 1:032x}",
            "model": embedder.model_name,
            "content_hash": "",
            "also_reported_by": encode_sources([]),
        }
        for n in range(SLICES)
    ]
    assert writer.upsert(rows) == SLICES
    since = now - (SLICES + 2) * 3600
    wait_until(
        lambda: sum(1 for _ in _recent_rows(client, settings, since)) == SLICES,
        60,
        "the rows visible to a query iterator",
    )

    # The control: this server has no MVCC timestamps, so a query iterator opened outside the
    # rebuild does warn (otherwise this test could not fail).
    with pymilvus_records() as outside:
        iterator = client.query_iterator(settings.milvus_collection, batch_size=10, filter="")
        iterator.close()
    assert MVCC_FALLBACK_WARNING in outside.messages()

    caplog.set_level(logging.INFO)
    caplog.clear()  # the control's warning reached the root logger too
    with pymilvus_records() as during, running_worker(settings, embedder):
        pass
    rebuilt = [r.getMessage() for r in caplog.records if r.name == "consumers.dedup_stage"]
    assert f"dedup index rebuilt from Milvus: {SLICES} articles in the window" in rebuilt
    warned = [m for m in during.messages() + caplog.messages if "mvccTs" in m]
    assert warned == [], f"{len(warned)} mvccTs warnings at worker start"
    client.close()
