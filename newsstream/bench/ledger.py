"""The ledger's costs: the worker's write per batch, one id's look-up, and its size.

What it does: starts its own local broker (Tansu, in memory), creates a one-partition ledger
topic and fills it with ``records`` records shaped like the worker's (``indexed``, with url,
feed, every time and the source message; ids made by :func:`core.ids.article_id`) through the
worker's own :class:`consumers.ledger.LedgerWriter`, ``batch`` records per acknowledged write
(the ledger step of one batch). Then :func:`core.ledger.read_record` looks up ``lookups`` ids
spread over the partition (each reads the whole partition: the worst case of a look-up is every
look-up).

Out: the write cost per batch and per record (produce + flush, acknowledged), the look-up time
(median and max) for a partition of ``records`` records, and the ledger's bytes per million
articles (key + JSON value, before Kafka's per-record overhead and before lz4 compression, so an
upper bound of the payload). Run: ``python -m newsstream.bench.ledger [records] [batch]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from consumers.ledger import LedgerWriter
from core.ids import article_id
from core.kafka import ensure_topics
from core.ledger import LedgerOutcome, LedgerRecord, SourceMessage, read_record
from core.settings import Settings
from newsstream.stack.launchers import free_port, tansu_command, wait_for_port
from newsstream.stack.proctree import stop_process


def _record(n: int, now_ms: int) -> LedgerRecord:
    return LedgerRecord(
        article_id=article_id(link=f"https://news.example.com/2026/11/29/story-{n}"),
        outcome=LedgerOutcome.INDEXED,
        decided_at_ms=now_ms + 40,
        worker="worker-12345-ab12cd34",
        source=SourceMessage("news.articles", n % 6, n // 6),
        url=f"https://news.example.com/2026/11/29/story-{n}",
        feed_id="3f2a9c1b7e4d5a60",
        fetched_at=now_ms // 1000 - 5,
        produced_at_ms=now_ms - 4_000,
        indexed_at_ms=now_ms,
        visible_by_ms=now_ms + 5_000,
    )


def run_ledger_bench(records: int = 100_000, batch: int = 64, lookups: int = 5) -> dict[str, Any]:
    """Measure (see the module docstring) and return the figures."""
    port = free_port()
    broker = subprocess.Popen(
        tansu_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if not wait_for_port(port, 30):
            raise RuntimeError("the local broker did not start")
        settings = Settings(
            kafka_bootstrap=f"127.0.0.1:{port}",
            kafka_partitions=1,
            kafka_ledger_topic="bench.ledger",
        )
        ensure_topics(settings)
        writer = LedgerWriter(settings)
        now_ms = int(time.time() * 1000)
        all_records = [_record(n, now_ms) for n in range(records)]
        payload = sum(len(r.to_bytes()) + len(r.article_id) for r in all_records)
        writes: list[float] = []
        for start in range(0, records, batch):
            chunk = all_records[start : start + batch]
            began = time.perf_counter()
            writer.send(chunk)
            writes.append(time.perf_counter() - began)
        writer.close()
        picks = [all_records[(k * records) // lookups] for k in range(lookups)]
        times: list[float] = []
        for record in picks:
            began = time.perf_counter()
            found = read_record(settings, record.article_id)
            times.append(time.perf_counter() - began)
            if found != record:
                raise RuntimeError(f"look-up of {record.article_id} found {found}")
    finally:
        stop_process(broker, grace_s=10)
    return {
        "records": records,
        "batch": batch,
        "write_per_batch_ms_median": statistics.median(writes) * 1000,
        "write_per_record_us": sum(writes) / records * 1e6,
        "lookup_s_median": statistics.median(times),
        "lookup_s_max": max(times),
        "bytes_per_record": payload / records,
        "mb_per_million_articles": payload / records * 1e6 / 1e6,
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    for name, value in run_ledger_bench(*args).items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
