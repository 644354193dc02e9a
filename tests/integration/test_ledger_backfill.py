"""The ledger backfill against the real local broker and Milvus: rows written before the ledger
existed get an `indexed` record, rows with a record keep theirs, young rows are left to their
worker, a second run writes nothing, and reconcile then expects every stored row."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from consumers.ledger import LedgerWriter
from core.kafka import ensure_topics
from core.ledger import LedgerOutcome, LedgerRecord, read_record
from newsstream.ops.ledger_backfill import BACKFILL_WORKER, backfill
from newsstream.ops.reconcile import reconcile
from store.client import connect
from store.schema import ensure_collection

from worker_procs import stored_row

pytestmark = pytest.mark.integration


def test_rows_without_a_record_get_one_once_and_reconcile_then_expects_them(
    make_settings: Any,
) -> None:
    settings = make_settings(kafka_partitions=2)
    ensure_topics(settings)
    old = int(time.time()) - 3600
    vectors = np.eye(8, dtype=np.float32)
    rows = [
        stored_row(f"https://old.example/{n}", f"Old {n}", f"Old text {n}.", vectors[n], "m")
        | {"ingested_at": old}
        for n in range(4)
    ]
    young = stored_row("https://new.example/0", "New", "New text.", vectors[5], "m")
    client = connect(settings.milvus_uri or "")
    ensure_collection(client, settings, 8)
    client.upsert(settings.milvus_collection, [*rows, young])
    client.close()
    # One old row was decided by a worker: a rejected re-publication it must keep.
    now_ms = int(time.time() * 1000)
    writer = LedgerWriter(settings)
    writer.send([LedgerRecord(rows[0]["id"], LedgerOutcome.REJECTED, now_ms, "w1", reason="x")])
    writer.close()

    dry = backfill(settings, dry_run=True)
    assert (dry.rows_scanned, dry.unrecorded, dry.too_young, dry.written) == (5, 3, 1, 0)
    report = backfill(settings)
    assert (report.unrecorded, report.written) == (3, 3)
    for row in rows[1:]:
        record = read_record(settings, row["id"])
        assert record is not None and record.outcome is LedgerOutcome.INDEXED
        assert record.worker == BACKFILL_WORKER and record.url == row["url"]
        assert record.indexed_at_ms == old * 1000
    kept = read_record(settings, rows[0]["id"])
    assert kept is not None and kept.outcome is LedgerOutcome.REJECTED  # never overwritten
    assert read_record(settings, young["id"]) is None  # left to its worker

    assert backfill(settings).written == 0  # idempotent
    checked = reconcile(settings, dry_run=True)
    assert checked.expected == 3 and checked.missing == []
