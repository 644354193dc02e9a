"""The pure parts of the ledger backfill: which rows get a record, and what it says."""

from __future__ import annotations

from core.ledger import LedgerOutcome, LedgerRecord
from newsstream.ops.ledger_backfill import (
    BACKFILL_WORKER,
    BackfillReport,
    StoredRow,
    backfill_record,
    unrecorded_rows,
)


def _row(n: int, ingested_at: int) -> StoredRow:
    return StoredRow(f"{n:032x}", f"https://a.example/{n}", "feed0", ingested_at)


def test_only_old_rows_without_a_record_are_chosen_and_each_is_counted() -> None:
    pages = iter([[_row(1, 100), _row(2, 100)], [_row(3, 100), _row(4, 990), _row(5, 1000)]])
    report = BackfillReport(dry_run=False)
    seen: list[int] = []
    chosen = unrecorded_rows(pages, {f"{2:032x}"}, 900.0, report, lambda phase, n: seen.append(n))
    assert [row.article_id for row in chosen] == [f"{1:032x}", f"{3:032x}"]
    assert (report.rows_scanned, report.too_young, report.unrecorded) == (5, 2, 2)
    assert seen == [2, 3]  # progress per page read


def test_the_record_is_an_indexed_outcome_a_reader_understands() -> None:
    record = backfill_record(_row(7, 1_700_000_000), 1_700_000_500_000)
    again = LedgerRecord.from_bytes(record.to_bytes())
    assert again.outcome is LedgerOutcome.INDEXED and again.worker == BACKFILL_WORKER
    assert (again.url, again.feed_id) == ("https://a.example/7", "feed0")
    assert again.indexed_at_ms == 1_700_000_000_000 and again.decided_at_ms == 1_700_000_500_000
    assert again.produced_at_ms is None and again.fetched_at is None  # unknown, not invented
    assert backfill_record(_row(8, 0), 1).indexed_at_ms is None
