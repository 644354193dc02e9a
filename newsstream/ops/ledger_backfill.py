"""Ledger backfill: an ``indexed`` record for every stored row the ledger has never heard of.

Why: an index that was filled before the ledger existed (or restored from a Milvus backup) holds
rows with no record on ``news.ledger``. ``newsstream explain`` then answers "no record" for
articles that are searchable, and ``newsstream reconcile`` cannot check them (it expects in
Milvus exactly the ids whose latest record says ``indexed``). The backfill gives each such row
the record a worker would have written.

What goes in: the ledger topic (read to its true end: every id with any record), the rows of
the collection written by a worker at least ``grace_s`` ago (``ingested_at``; a younger row may
still be waiting for its worker's record, which is written after the upsert and before the
commit). What comes out: a :class:`BackfillReport`; unless ``dry_run``, one ``indexed`` record
per row without one (``worker = "backfill"``, the row's url, feed and ``ingested_at`` as the
acknowledgement time; the fetch and produce times are unknown and left out), acknowledged by
the broker (``acks=all``, the record's own partition: :class:`consumers.ledger.LedgerWriter`).

Guarantees: never overwrites a worker's decision. Right before writing, the records that
arrived on the ledger since the first read are read too, and every id among them is left out
(an id deleted meanwhile keeps its ``deleted`` record as the last word). Idempotent: a second
run finds every row recorded and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pymilvus import MilvusClient, MilvusException

from consumers.ledger import LedgerWriter
from core.errors import TransientError
from core.ledger import LedgerOutcome, LedgerRecord
from core.settings import Settings
from newsstream.ops.topic_scan import scan_consumer, scan_topic
from store.client import milvus_client, row_pages

#: Rows read from Milvus per page, and records sent per acknowledged write.
PAGE = 1000
#: Rows younger than this (by ``ingested_at``) are left to their worker's own record.
DEFAULT_GRACE_S = 600.0
#: The ``worker`` field of a backfilled record.
BACKFILL_WORKER = "backfill"

#: ``progress(phase, n)``: phase "read" (ledger records read), "scanned" (rows read from
#: Milvus) or "written" (records acknowledged).
Progress = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class StoredRow:
    """What a backfilled record says of a row: its id, url, feed and write time."""

    article_id: str
    url: str
    feed_id: str
    ingested_at: int


@dataclass
class BackfillReport:
    """What a backfill found and did."""

    dry_run: bool
    ledger_ids: int = 0
    rows_scanned: int = 0
    too_young: int = 0
    unrecorded: int = 0
    recorded_meanwhile: int = 0
    written: int = 0


def recorded_ids(
    settings: Settings, start: dict[int, int] | None = None
) -> tuple[set[str], dict[int, int]]:
    """The ids with a record on the ledger from ``start`` (default: the beginning) to its true
    end, and where the read ended (partition -> the offset after the last record read)."""
    ids: set[str] = set()
    ends = dict(start or {})
    consumer = scan_consumer(settings)
    try:
        for message in scan_topic(consumer, settings.kafka_ledger_topic, start):
            ends[message.partition] = max(ends.get(message.partition, 0), message.offset + 1)
            if message.key is not None:
                ids.add(message.key.decode("ascii", "replace"))
    finally:
        consumer.close()
    return ids, ends


def stored_rows(client: MilvusClient, collection: str) -> Iterator[list[StoredRow]]:
    """Every row of ``collection``, one page at a time (only one page held)."""
    fields = ["id", "url", "feed_id", "ingested_at"]
    for rows in row_pages(client, collection, fields, batch=PAGE):
        yield [
            StoredRow(
                str(row["id"]),
                str(row.get("url") or ""),
                str(row.get("feed_id") or ""),
                int(row.get("ingested_at") or 0),
            )
            for row in rows
        ]


def backfill_record(row: StoredRow, now_ms: int) -> LedgerRecord:
    """The ``indexed`` record a backfill writes for ``row`` at ``now_ms``."""
    return LedgerRecord(
        article_id=row.article_id,
        outcome=LedgerOutcome.INDEXED,
        decided_at_ms=now_ms,
        worker=BACKFILL_WORKER,
        url=row.url,
        feed_id=row.feed_id,
        indexed_at_ms=row.ingested_at * 1000 if row.ingested_at else None,
    )


def unrecorded_rows(
    pages: Iterator[list[StoredRow]],
    recorded: set[str],
    cutoff_s: float,
    report: BackfillReport,
    progress: Progress | None = None,
) -> list[StoredRow]:
    """The rows of ``pages`` written before ``cutoff_s`` whose id is not in ``recorded``."""
    wanted: list[StoredRow] = []
    for page in pages:
        report.rows_scanned += len(page)
        for row in page:
            if row.article_id in recorded:
                continue
            if row.ingested_at >= cutoff_s:
                report.too_young += 1
                continue
            wanted.append(row)
        if progress is not None:
            progress("scanned", len(page))
    report.unrecorded = len(wanted)
    return wanted


def backfill(
    settings: Settings,
    *,
    dry_run: bool = False,
    grace_s: float = DEFAULT_GRACE_S,
    now: float | None = None,
    progress: Progress | None = None,
) -> BackfillReport:
    """Record the rows the ledger has never heard of (see the module docstring).

    Raises :class:`TransientError` when Kafka or Milvus fails; records already acknowledged
    stay, and running again writes only what is still missing.
    """
    report = BackfillReport(dry_run=dry_run)
    moment = time.time() if now is None else now
    recorded, ends = recorded_ids(settings)
    report.ledger_ids = len(recorded)
    if progress is not None:
        progress("read", len(recorded))
    client = milvus_client(settings)
    try:
        if not client.has_collection(settings.milvus_collection):
            return report
        wanted = unrecorded_rows(
            stored_rows(client, settings.milvus_collection),
            recorded,
            moment - grace_s,
            report,
            progress,
        )
    except MilvusException as exc:
        raise TransientError(f"Milvus failed during the ledger backfill: {exc}") from exc
    finally:
        client.close()
    if dry_run or not wanted:
        return report
    meanwhile, _ = recorded_ids(settings, ends)
    rows = [row for row in wanted if row.article_id not in meanwhile]
    report.recorded_meanwhile = len(wanted) - len(rows)
    writer = LedgerWriter(settings)
    try:
        now_ms = int(time.time() * 1000)
        for start in range(0, len(rows), PAGE):
            chunk = rows[start : start + PAGE]
            writer.send([backfill_record(row, now_ms) for row in chunk])
            report.written += len(chunk)
            if progress is not None:
                progress("written", len(chunk))
    finally:
        writer.close()
    return report
