"""`newsstream bench retention`: a soak in compressed time that shows the index stays flat.

What it does: starts its own local broker (Tansu) and local Milvus (``local_milvus``, the store
`newsstream up` starts), runs one real worker process (`newsstream consume`, its metrics on a
free port), and feeds distinct bbc-news articles whose publish dates are spread over ``days``
simulated days (``per_day`` a day, evenly through the day, the last one a minute ago), in date
order, one simulated day at a time. After each day it waits until the worker committed
everything, runs the retention sweep (:func:`newsstream.ops.retention.sweep`, window
``retention_days``) with "now" = the latest publish date fed, waits until the worker applied
the tombstones, then records the rows in Milvus, the worker's resident memory (VmRSS), its
dedup index size, and the Milvus server's memory.

What comes out: one printed line per simulated day, a dict of the figures (the CLI writes it as
JSON) and :func:`soak_chart`'s SVG. Once the window is full, rows should stay within one day's
articles of ``retention_days * per_day`` and memory should stop growing.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from core.article import Article
from core.ids import article_id
from core.kafka import ensure_topics, group_lag
from core.settings import Settings
from embedding.embedder import choose_backend
from newsstream.bench.svg_chart import Panel, Series, line_chart
from newsstream.ops.retention import RecentTombstones, sweep
from newsstream.stack.launchers import (
    free_port,
    tansu_command,
    throwaway_milvus_process,
    wait_for_port,
)
from newsstream.stack.proctree import stop_process
from producers.publisher import Publisher
from producers.retention import DAY_S
from store.client import connect

#: How long the worker may take to commit one simulated day (model load and group join
#: included on the first).
DRAIN_TIMEOUT_S = 300.0


def bbc_texts(data_dir: Path) -> list[tuple[str, str, str]]:
    """(doc id, title, first paragraphs) of the bbc-news articles outside the near-duplicate
    pairs, so every one is a distinct story for dedup."""
    root = data_dir / "eval" / "bbc-news"
    skip: set[str] = set()
    with open(root / "near_duplicate_pairs_computed.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            skip.update((row["doc_a"], row["doc_b"]))
    with open(root / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["doc_id"] not in skip]
    texts = []
    for row in rows:
        text = (root / row["path"]).read_bytes().decode("utf-8", "replace")
        paragraphs = [p.strip() for p in text.split("\n") if p.strip()]
        texts.append((row["doc_id"], row["title"], " ".join(paragraphs[1:4])[:600]))
    return texts


def soak_days(
    texts: list[tuple[str, str, str]], days: int, per_day: int, end: int
) -> list[list[Article]]:
    """The articles of each simulated day, oldest day first; the last publish date is ``end``."""
    if len(texts) < days * per_day:
        raise ValueError(
            f"{days} days of {per_day} need {days * per_day} texts, {len(texts)} found"
        )
    start = end - days * DAY_S + DAY_S // per_day
    schedule: list[list[Article]] = []
    for day in range(days):
        batch = []
        for slot in range(per_day):
            doc_id, title, summary = texts[day * per_day + slot]
            url = f"https://soak.example/{doc_id}"
            published = start + day * DAY_S + slot * (DAY_S // per_day)
            batch.append(
                Article(
                    id=article_id(link=url),
                    url=url,
                    title=title,
                    summary=summary,
                    feed_id="soak",
                    feed_url="https://soak.example/rss",
                    source="soak.example",
                    published_at=published,
                    fetched_at=int(time.time()),
                )
            )
        schedule.append(batch)
    return schedule


def _rss_mb(pid: int | None) -> float:
    """VmRSS of ``pid`` in MB (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _metric(port: int, name: str) -> float:
    """Sum of the samples of metric ``name`` at ``127.0.0.1:port/metrics`` (0 when absent)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def _drain(settings: Settings, worker: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the worker group committed every message of the articles topic."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}; see {log}")
        lag = group_lag(settings)
        if lag and sum(lag.values()) == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"the worker did not catch up within {DRAIN_TIMEOUT_S:.0f} s; see {log}")


def _worker_env(settings: Settings, metrics_port: int, log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
    values = {
        "DATA_DIR": settings.data_dir,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "KAFKA_TOPIC": settings.kafka_topic,
        "KAFKA_DLQ_TOPIC": settings.kafka_dlq_topic,
        "KAFKA_GROUP_ID": settings.kafka_group_id,
        "KAFKA_MAX_POLL_INTERVAL_MS": settings.kafka_max_poll_interval_ms,
        "KAFKA_SESSION_TIMEOUT_MS": settings.kafka_session_timeout_ms,
        "MILVUS_URI": settings.milvus_uri,
        "MILVUS_COLLECTION": settings.milvus_collection,
        "EMBEDDING_CACHE_DIR": settings.model_cache_dir.resolve(),
        "EMBEDDING_BACKEND": settings.embedding_backend,
        "RETENTION_DAYS": settings.retention_days,
        "METRICS_PORT": metrics_port,
        "LOG_FILE": log,
    }
    env.update({f"NEWSSTREAM_{k}": str(v) for k, v in values.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_retention_soak(
    settings: Settings,
    data_dir: Path,
    *,
    days: int = 60,
    per_day: int = 30,
    retention_days: int = 14,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the soak (see the module docstring); returns its figures, one row per day."""
    console = console or Console()
    backend = choose_backend(settings)  # what `auto` means on this machine, for the record
    schedule = soak_days(bbc_texts(data_dir), days, per_day, int(time.time()) - 60)
    kafka_port = free_port()
    broker = subprocess.Popen(
        tansu_command(kafka_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stack = ExitStack()
    rows: list[dict[str, Any]] = []
    worker: subprocess.Popen[bytes] | None = None
    try:
        milvus_uri, milvus_pid = stack.enter_context(
            throwaway_milvus_process(kind=settings.local_milvus)
        )
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="newsstream-soak-")))
        if not wait_for_port(kafka_port, 30):
            raise RuntimeError("the local broker did not start")
        run = settings.model_copy(
            update={
                "data_dir": work,
                "embedding_cache_dir": settings.model_cache_dir.resolve(),
                "kafka_bootstrap": f"127.0.0.1:{kafka_port}",
                "kafka_topic": "soak.articles",
                "kafka_dlq_topic": "soak.dlq",
                "kafka_group_id": "soak-workers",
                "kafka_max_poll_interval_ms": 10_000,
                "kafka_session_timeout_ms": 6_000,
                "milvus_uri": milvus_uri,
                "milvus_collection": "soak_articles",
                "retention_days": retention_days,
            }
        )
        ensure_topics(run)
        metrics_port = free_port()
        log = work / "worker.log"
        with open(work / "worker.out", "ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "newsstream", "consume"],
                env=_worker_env(run, metrics_port, log),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        publisher = Publisher(run, client_id="newsstream-soak")
        client = connect(milvus_uri)
        recent = RecentTombstones(ttl_s=3600)
        console.print(
            f"soak: {days} days x {per_day} articles, retention {retention_days} days, "
            f"Milvus {settings.local_milvus}, embedding backend {backend}"
        )
        started = time.monotonic()
        try:
            for day, batch in enumerate(schedule, start=1):
                delivered = publisher.publish(batch, 120)
                if len(delivered) != len(batch):
                    raise RuntimeError(f"day {day}: {len(delivered)} of {len(batch)} delivered")
                _drain(run, worker, log)
                now = max(a.published_at or 0 for a in batch)
                report = sweep(run, now=now, feeds=[], recent=recent)
                _drain(run, worker, log)
                count = client.query(
                    run.milvus_collection,
                    filter="",
                    output_fields=["count(*)"],
                    consistency_level="Strong",
                )[0]["count(*)"]
                row = {
                    "day": day,
                    "now": datetime.fromtimestamp(now, UTC).isoformat(),
                    "fed": day * per_day,
                    "tombstones": report.tombstones,
                    "rows": int(count),
                    "worker_rss_mb": round(_rss_mb(worker.pid), 1),
                    "dedup_entries": int(_metric(metrics_port, "newsstream_dedup_index_size")),
                    "milvus_rss_mb": round(_rss_mb(milvus_pid), 1),
                    "elapsed_s": round(time.monotonic() - started, 1),
                }
                rows.append(row)
                console.print(
                    f"day {day:>3}: fed {row['fed']:>5}  tombstones {row['tombstones']:>4}  "
                    f"rows {row['rows']:>5}  worker RSS {row['worker_rss_mb']:>6.1f} MB  "
                    f"dedup entries {row['dedup_entries']:>5}  "
                    f"Milvus RSS {row['milvus_rss_mb']:>6.1f} MB",
                    soft_wrap=True,
                )
        finally:
            publisher.close()
            client.close()
    finally:
        if worker is not None:
            stop_process(worker, grace_s=10)
        stop_process(broker, grace_s=10)
        stack.close()
    return {
        "days": days,
        "per_day": per_day,
        "retention_days": retention_days,
        "store": settings.local_milvus,
        "embedding_backend": backend,
        "expected_full_window_rows": retention_days * per_day,
        "per_day_rows": rows,
        "summary": soak_summary(rows, retention_days),
    }


def soak_summary(rows: list[dict[str, Any]], retention_days: int) -> dict[str, Any]:
    """Rows and memory once the window is full (from day ``retention_days + 1``)."""
    full = [r for r in rows if r["day"] > retention_days]
    if not full:
        return {}
    first, last = full[0], full[-1]
    return {
        "rows_min": min(r["rows"] for r in full),
        "rows_max": max(r["rows"] for r in full),
        "worker_rss_mb_first_full_day": first["worker_rss_mb"],
        "worker_rss_mb_last_day": last["worker_rss_mb"],
        "worker_rss_mb_max": max(r["worker_rss_mb"] for r in full),
        "dedup_entries_max": max(r["dedup_entries"] for r in full),
        "milvus_rss_mb_first_full_day": first["milvus_rss_mb"],
        "milvus_rss_mb_last_day": last["milvus_rss_mb"],
    }


def soak_chart(result: dict[str, Any]) -> str:
    """The soak's rows and memory per simulated day, as SVG."""
    rows = result["per_day_rows"]
    days = [r["day"] for r in rows]
    return line_chart(
        f"Retention soak: {result['retention_days']}-day window, {result['per_day']} "
        f"articles a day, {result['days']} simulated days ({result['embedding_backend']})",
        "simulated day",
        days,
        [
            Panel(
                "articles",
                [
                    Series("rows in Milvus", [r["rows"] for r in rows]),
                    Series("dedup index entries", [r["dedup_entries"] for r in rows]),
                    Series("articles fed", [r["fed"] for r in rows]),
                ],
            ),
            Panel(
                "resident memory (MB)",
                [
                    Series("worker RSS", [r["worker_rss_mb"] for r in rows]),
                    Series("Milvus server RSS", [r["milvus_rss_mb"] for r in rows]),
                ],
            ),
        ],
    )
