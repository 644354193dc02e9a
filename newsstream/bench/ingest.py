"""`newsstream bench ingest`: end-to-end ingest rate and time-to-searchable.

What it does: starts its own local broker (Tansu) and local Milvus (``local_milvus``: the
default store of `newsstream up`), runs one real worker
(arroyo, dedup, embedding with the configured backend, Milvus upserts) on a thread, and
measures three scenarios:

- ``feeds``: every item of the 15 shared news feeds (title + description + full content as
  published) published at once; articles/s from the first publish to the last outcome;
- ``backfill``: the 2,225 bbc-news articles with their full text;
- ``tts``: bbc-news items offered at a fixed rate (default 20/s) for a fixed time; p50, p95 and
  p99 of time-to-searchable (``produced_at`` header to the acknowledged upsert) as the worker
  measured it.

Prints a table and returns the figures, with the worker's time per stage in the ``feeds`` and
``backfill`` runs (from the ``newsstream_stage_seconds`` histogram of the in-process worker:
per-message stages summed over messages, per-batch stages over batches; the ledger stage is the
write of every id's outcome, acknowledged, before each commit).
"""

from __future__ import annotations

import csv
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from consumers.worker import Worker, build_worker
from core.article import Article
from core.ids import article_id
from core.kafka import ensure_topics
from core.metrics import STAGE_SECONDS
from core.settings import Settings
from embedding.embedder import Embedder
from newsstream.stack.launchers import (
    free_port,
    tansu_command,
    throwaway_milvus,
    wait_for_port,
)
from newsstream.stack.proctree import stop_process
from producers.feeds import feed_id
from producers.parser import parse_feed
from producers.publisher import Publisher


def _feed_articles(data_dir: Path) -> list[Article]:
    articles: list[Article] = []
    for path in sorted((data_dir / "feeds" / "news").glob("*.xml")):
        url = f"https://replay.example/{path.name}"
        articles += parse_feed(path.read_bytes(), feed_url=url, feed_id=feed_id(url)).articles
    return list({a.id: a for a in articles}.values())


def bbc_articles(data_dir: Path, full: bool, prefix: str) -> list[Article]:
    root = data_dir / "eval" / "bbc-news"
    now = int(time.time())
    out = []
    with open(root / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            text = (root / row["path"]).read_bytes().decode("utf-8", "replace")
            body = " ".join(p.strip() for p in text.split("\n")[1:] if p.strip())
            url = f"https://{prefix}.bbc.example/{row['doc_id']}"
            out.append(
                Article(
                    id=article_id(link=url),
                    url=url,
                    title=row["title"],
                    summary=body[:600],
                    content=body if full else "",
                    source="bbc.example",
                    feed_id="bbc",
                    published_at=now - 3600,
                    fetched_at=now,
                )
            )
    return out


def _wait_outcomes(worker: Worker, expected: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snap = worker.tally.snapshot()
        done = snap["indexed"] + snap["duplicate"] + snap["rejected"] + snap["dlq"]
        if done >= expected:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"only part of {expected} messages reached an outcome in {timeout_s} s")


def run_ingest_bench(
    data_dir: Path,
    *,
    settings: Settings | None = None,
    rate: float = 20.0,
    tts_seconds: float = 30.0,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the three scenarios (see the module docstring) and return their figures."""
    console = console or Console()
    kafka_port = free_port()
    store = (settings or Settings()).local_milvus
    broker = subprocess.Popen(
        tansu_command(kafka_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    results: dict[str, Any] = {"store": store}
    stack = ExitStack()
    try:
        milvus_uri = stack.enter_context(throwaway_milvus(kind=store))
        if not wait_for_port(kafka_port, 30):
            raise RuntimeError("the local broker did not start")
        base = (settings or Settings()).model_copy(
            update={
                "kafka_bootstrap": f"127.0.0.1:{kafka_port}",
                "milvus_uri": milvus_uri,
                "kafka_max_poll_interval_ms": 10_000,
                "kafka_session_timeout_ms": 6_000,
                "data_dir": (settings or Settings()).data_dir,
            }
        )
        embedder = Embedder(base)
        scenarios = [
            ("feeds", _feed_articles(data_dir)),
            ("backfill", bbc_articles(data_dir, full=True, prefix="full")),
        ]
        for name, articles in scenarios:
            run = base.model_copy(
                update={
                    "kafka_topic": f"bench.{name}",
                    "kafka_group_id": f"bench-{name}",
                    "milvus_collection": f"bench_{name}",
                }
            )
            results[name] = _throughput(run, embedder, articles, console, name)
        results["tts"] = _tts(
            base.model_copy(
                update={
                    "kafka_topic": "bench.tts",
                    "kafka_group_id": "bench-tts",
                    "milvus_collection": "bench_tts",
                }
            ),
            embedder,
            bbc_articles(data_dir, full=False, prefix="tts"),
            rate,
            tts_seconds,
            console,
        )
        results["backend"] = embedder.backend if hasattr(embedder, "backend") else "torch"
    finally:
        stop_process(broker, grace_s=10)
        stack.close()
    table = Table(title=f"ingest (embedding backend: {results.get('backend')}, Milvus: {store})")
    for column in (
        "scenario",
        "articles",
        "seconds",
        "articles/s",
        "indexed",
        "duplicate",
        "rejected",
    ):
        table.add_column(column, justify="right")
    for name in ("feeds", "backfill"):
        r = results[name]
        table.add_row(
            name,
            str(r["articles"]),
            f"{r['seconds']:.1f}",
            f"{r['per_s']:.1f}",
            str(r["indexed"]),
            str(r["duplicate"]),
            str(r["rejected"]),
        )
    console.print(table)
    stages = Table(title="worker time per stage (ms per article)")
    stages.add_column("stage")
    for name in ("feeds", "backfill"):
        stages.add_column(name, justify="right")
    for stage in results["feeds"]["stages_s"]:
        stages.add_row(
            stage,
            *(
                f"{1000 * results[n]['stages_s'].get(stage, 0.0) / results[n]['articles']:.2f}"
                for n in ("feeds", "backfill")
            ),
        )
    console.print(stages)
    t = results["tts"]
    console.print(
        f"time-to-searchable at {rate:.0f}/s offered for {tts_seconds:.0f} s ({t['samples']} samples): "
        f"p50 {t['p50_s']:.2f} s, p95 {t['p95_s']:.2f} s, p99 {t['p99_s']:.2f} s"
    )
    return results


def _run_worker(
    settings: Settings, embedder: Embedder
) -> tuple[Worker, threading.Thread, threading.Event]:
    stop = threading.Event()
    worker = build_worker(settings, stop, embedder=embedder)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread, stop


def _stage_seconds() -> dict[str, float]:
    """Seconds spent so far in each worker stage (the histogram's sums, this process)."""
    totals: dict[str, float] = {}
    for family in STAGE_SECONDS.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                totals[sample.labels["stage"]] = sample.value
    return totals


def _throughput(
    settings: Settings, embedder: Embedder, articles: list[Article], console: Console, name: str
) -> dict[str, Any]:
    ensure_topics(settings)
    before = _stage_seconds()
    worker, thread, _stop = _run_worker(settings, embedder)
    publisher = Publisher(settings)
    time.sleep(12)  # the local broker completes the group join after the rebalance timeout
    console.print(f"[dim]{name}: publishing {len(articles)} articles[/dim]")
    started = time.monotonic()
    delivered = publisher.publish(articles, timeout_s=120)
    ended = _wait_outcomes(worker, len(delivered), 1800)
    publisher.close()
    snap = worker.tally.snapshot()
    worker.signal_shutdown()
    thread.join(30)
    seconds = ended - started
    return {
        "articles": len(delivered),
        "seconds": seconds,
        "per_s": len(delivered) / seconds,
        "indexed": snap["indexed"],
        "duplicate": snap["duplicate"],
        "rejected": snap["rejected"],
        "stages_s": {
            stage: seconds - before.get(stage, 0.0) for stage, seconds in _stage_seconds().items()
        },
    }


def _tts(
    settings: Settings,
    embedder: Embedder,
    articles: list[Article],
    rate: float,
    seconds: float,
    console: Console,
) -> dict[str, Any]:
    ensure_topics(settings)
    worker, thread, _stop = _run_worker(settings, embedder)
    publisher = Publisher(settings)
    time.sleep(12)
    count = min(len(articles), int(rate * seconds))
    console.print(f"[dim]tts: offering {count} articles at {rate:.0f}/s[/dim]")
    started = time.monotonic()
    for n, article in enumerate(articles[:count]):
        target = started + n / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        publisher.publish([article], timeout_s=30)
    _wait_outcomes(worker, count, 600)
    publisher.close()
    snap = worker.tally.snapshot()
    worker.signal_shutdown()
    thread.join(30)
    return {
        "offered_per_s": rate,
        "samples": snap["tts_samples"],
        "p50_s": snap["tts_p50_s"],
        "p95_s": snap["tts_p95_s"],
        "p99_s": snap["tts_p99_s"],
    }
