"""``newsstream bench workers``: articles/s with 1, 2, 3 ... worker processes in one group.

What it does: a local broker and a throwaway local Milvus of their own; for each worker count
N, a fresh topic (``partitions`` partitions), group and collection; the bbc-news articles of the
shared data (full texts) published first; then N ``newsstream consume`` processes started at
once, each with ``cores // N`` embedding threads (at least one), as a deployment would size
them. Timed from the start of the processes to the group's lag reaching 0 (every offset
committed: every article decided and acknowledged), so the figure includes the workers' start
(model load, group join) as well as their work; the start alone is reported too (the first
committed offset).

What bounds it is printed with it: the cores of the machine (two workers on two cores share
them with Milvus and the broker).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

from core.kafka import LIBRDKAFKA_LOGGER, ensure_topics
from core.settings import Settings
from newsstream.bench.delete import child_env
from newsstream.bench.ingest import bbc_articles
from newsstream.stack.launchers import free_port, tansu_command, throwaway_milvus, wait_for_port
from newsstream.stack.proctree import stop_process
from producers.publisher import Publisher


def _offsets_reader(settings: Settings) -> Consumer:
    """A consumer of the workers' group that only reads offsets (it never joins the group)."""
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap or "",
            "group.id": settings.kafka_group_id,
            "enable.auto.commit": False,
            "logger": LIBRDKAFKA_LOGGER,
        }
    )


def committed_and_ends(consumer: Consumer, topic: str) -> tuple[int, int]:
    """(offsets the group committed, messages in ``topic``), summed over the partitions."""
    parts = [
        TopicPartition(topic, p)
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ]
    committed = sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    ends = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)
    return committed, ends


def _one_count(
    base: Settings, count: int, articles: list[Any], logs: Path, console: Console
) -> dict[str, Any]:
    run = base.model_copy(
        update={
            "kafka_topic": f"bench.workers{count}",
            "kafka_dlq_topic": f"bench.workers{count}.dlq",
            "kafka_ledger_topic": f"bench.workers{count}.ledger",
            "kafka_group_id": f"bench-workers{count}",
            "milvus_collection": f"bench_workers{count}",
        }
    )
    ensure_topics(run)
    publisher = Publisher(run, client_id="bench-workers")
    delivered = publisher.publish(articles, timeout_s=120)
    publisher.close()
    threads = max(1, (os.cpu_count() or 1) // count)
    console.print(
        f"[dim]{count} worker(s), {threads} embedding thread(s) each: "
        f"{len(delivered)} articles waiting[/dim]"
    )
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "newsstream", "consume"],
            env=child_env(
                run.model_copy(
                    update={
                        "embedding_threads": threads,
                        "log_file": logs / f"workers{count}-{n}.log",
                    }
                )
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(count)
    ]
    first_commit: float | None = None
    at_first_commit = 0
    reader = _offsets_reader(run)
    try:
        deadline = started + 1800
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers did not reach lag 0 within 30 minutes")
            dead = [w.returncode for w in workers if w.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker exited with {dead[0]} (logs in {logs})")
            committed, ends = committed_and_ends(reader, run.kafka_topic)
            if committed and first_commit is None:
                first_commit, at_first_commit = time.monotonic(), committed
            if ends and committed >= ends:
                break
            time.sleep(0.2)
        ended = time.monotonic()
    finally:
        reader.close()
        for worker in workers:
            stop_process(worker, grace_s=15)
    seconds = ended - started
    start_s = (first_commit or ended) - started
    return {
        "workers": count,
        "threads_each": threads,
        "articles": len(delivered),
        "seconds": seconds,
        "per_s": len(delivered) / seconds,
        "first_commit_s": start_s,
        # the articles committed after the first commit, over the time they took
        "per_s_after_first_commit": (len(delivered) - at_first_commit)
        / max(ended - (first_commit or started), 1e-9),
    }


def run_workers_bench(
    data_dir: Path,
    counts: list[int],
    *,
    settings: Settings | None = None,
    limit: int = 2000,
    console: Console | None = None,
) -> dict[str, Any]:
    """Articles/s for each worker count of ``counts`` (see the module docstring)."""
    console = console or Console()
    base_settings = settings or Settings()
    articles = bbc_articles(data_dir, full=True, prefix="workers")[:limit]
    kafka_port = free_port()
    broker = subprocess.Popen(
        tansu_command(kafka_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    logs = base_settings.data_dir / "bench-workers-logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "store": base_settings.local_milvus,
        "backend": base_settings.embedding_backend,
        "runs": [],
    }
    stack = ExitStack()
    try:
        milvus_uri = stack.enter_context(throwaway_milvus(kind=base_settings.local_milvus))
        if not wait_for_port(kafka_port, 30):
            raise RuntimeError("the local broker did not start")
        base = base_settings.model_copy(
            update={
                "kafka_bootstrap": f"127.0.0.1:{kafka_port}",
                "milvus_uri": milvus_uri,
                "kafka_partitions": max(6, max(counts)),
                "kafka_max_poll_interval_ms": 10_000,
                "kafka_session_timeout_ms": 6_000,
            }
        )
        for count in counts:
            results["runs"].append(_one_count(base, count, articles, logs, console))
    finally:
        stop_process(broker, grace_s=10)
        stack.close()
    table = Table(
        title=f"workers ({results['cores']} cores, embedding backend {results['backend']}, "
        f"Milvus: {results['store']})"
    )
    for column in (
        "workers",
        "threads each",
        "articles",
        "seconds",
        "articles/s",
        "start (first commit)",
        "articles/s after it",
    ):
        table.add_column(column, justify="right")
    for r in results["runs"]:
        table.add_row(
            str(r["workers"]),
            str(r["threads_each"]),
            str(r["articles"]),
            f"{r['seconds']:.1f}",
            f"{r['per_s']:.1f}",
            f"{r['first_commit_s']:.1f} s",
            f"{r['per_s_after_first_commit']:.1f}",
        )
    console.print(table)
    return results
