"""`newsstream bench delete`: delete-to-invisible through the whole stack.

In: an article count ``n``, the shared data dir (its bbc-news articles are the ones indexed)
and the settings (embedding backend, worker batching, search consistency: what a user runs).
Steps, each bounded in time:

1. A local broker (Tansu) and the configured local Milvus on a throw-away data dir; a worker
   (``newsstream consume``) and the API (``newsstream serve``) as processes of their own, as
   `newsstream up` runs them.
2. ``n`` articles published to the articles topic; the bench waits until ``GET
   /articles/{id}`` finds each (those the worker rejected or found duplicate are left out).
3. One at a time: ``DELETE /articles/{id}``, then ``GET /articles/{id}`` every 20 ms until it
   answers 404 (the delete reached the index), then ``GET /search`` with the article's title
   every 20 ms until the article is not among the results.

Out: a dict (JSON-able) with p50/p95/max of the DELETE answer (audit record and tombstone
acknowledged by the broker), of delete-to-invisible (DELETE sent to the first 404) and of
delete-to-gone-from-search, and a table. Everything started is stopped and the data dir deleted
on exit, whatever happened.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from core.article import Article
from core.kafka import ensure_topics
from core.settings import Settings
from newsstream.bench.ingest import bbc_articles
from newsstream.stack.launchers import free_port, tansu_command, throwaway_milvus, wait_for_port
from newsstream.stack.proctree import stop_process
from producers.publisher import Publisher

#: Seconds between two looks at an article while it is being deleted.
POLL_S = 0.02
#: Seconds a delete may take to become invisible before the bench gives up on the run.
INVISIBLE_TIMEOUT_S = 60.0


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and max of ``values`` (nearest rank), and their count; empty input gives 0s."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50": 0.0, "p95": 0.0, "max": 0.0}

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    return {"count": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "max": ordered[-1]}


def child_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a ``newsstream`` child process load exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        if isinstance(value, list | dict):
            text = json.dumps(value, default=_plain)
        else:
            text = _plain(value)
        env[f"NEWSSTREAM_{name.upper()}"] = text
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _plain(value: Any) -> str:
    secret = getattr(value, "get_secret_value", None)
    return str(secret() if secret is not None else value)


@contextmanager
def service(command: list[str], settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m newsstream COMMAND`` with ``settings``, its output in ``log``; stopped on
    exit."""
    handle = open(log, "ab")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [sys.executable, "-m", "newsstream", *command],
        env=child_env(settings),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        stop_process(process, grace_s=30)
        handle.close()


def _check_alive(processes: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    for name, process in processes.items():
        if process.poll() is not None:
            tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the {name} exited with {process.returncode}:\n{tail}")


def wait_visible(
    http: httpx.Client,
    articles: list[Article],
    alive: Any,
    timeout_s: float,
    settle_s: float = 20.0,
) -> list[Article]:
    """The articles ``GET /articles/{id}`` finds, once all are found or none more was found for
    ``settle_s`` (the worker rejects or drops some as duplicates). Raises RuntimeError when
    none is found within ``timeout_s``."""
    missing = {a.id: a for a in articles}
    found: list[Article] = []
    deadline = time.monotonic() + timeout_s
    last_progress = time.monotonic()
    while missing and time.monotonic() < deadline:
        alive()
        for ident in list(missing):
            if http.get(f"/articles/{ident}").status_code == 200:
                found.append(missing.pop(ident))
                last_progress = time.monotonic()
        if found and time.monotonic() - last_progress > settle_s:
            break
        time.sleep(0.5)
    if not found:
        raise RuntimeError(f"no article became visible within {timeout_s:.0f} s")
    return found


def delete_one(http: httpx.Client, article: Article) -> dict[str, float]:
    """DELETE ``article`` and time it until invisible (see step 3 of the module docstring)."""
    started = time.perf_counter()
    answer = http.delete(f"/articles/{article.id}", params={"reason": "bench"})
    answered = time.perf_counter()
    if answer.status_code != 202:
        raise RuntimeError(f"DELETE answered {answer.status_code}: {answer.text[:200]}")
    deadline = started + INVISIBLE_TIMEOUT_S
    while http.get(f"/articles/{article.id}").status_code != 404:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{article.id} still visible {INVISIBLE_TIMEOUT_S:.0f} s after")
        time.sleep(POLL_S)
    invisible = time.perf_counter()
    while True:
        page = http.get("/search", params={"q": article.title, "k": 10})
        page.raise_for_status()
        if article.id not in {r["id"] for r in page.json()["results"]}:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{article.id} still found by search {INVISIBLE_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    return {
        "answer_s": answered - started,
        "invisible_s": invisible - started,
        "search_gone_s": time.perf_counter() - started,
    }


def run_delete_bench(
    n: int, data: Path, *, settings: Settings, console: Console | None = None
) -> dict[str, Any]:
    """Steps 1-3 of the module docstring."""
    console = console or Console()
    articles = bbc_articles(data, full=False, prefix="delete")[:n]
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="newsstream-delete-")))
        kafka_port, api_port = free_port(), free_port()
        broker = subprocess.Popen(
            tansu_command(kafka_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        stack.callback(stop_process, broker, 10)
        milvus_uri = stack.enter_context(throwaway_milvus(kind=settings.local_milvus))
        if not wait_for_port(kafka_port, 30):
            raise RuntimeError("the local broker did not start")
        run = settings.model_copy(
            update={
                "data_dir": tmp,
                # The exported model of the user's data dir, not a new export per run.
                "embedding_cache_dir": settings.model_cache_dir,
                "kafka_bootstrap": f"127.0.0.1:{kafka_port}",
                "milvus_uri": milvus_uri,
                "kafka_max_poll_interval_ms": 10_000,
                "kafka_session_timeout_ms": 6_000,
                "api_port": api_port,
                "api_host": "127.0.0.1",
                "api_read_keys": [],
                "api_admin_keys": [],
                "api_rate_limit_per_minute": 0,
                "api_search_events": False,
                "metrics_port": 0,
                "log_file": None,
            }
        )
        ensure_topics(run)
        processes = {
            "worker": stack.enter_context(service(["consume"], run, tmp / "worker.log")),
            "api": stack.enter_context(service(["serve"], run, tmp / "api.log")),
        }

        def alive() -> None:
            _check_alive(processes, tmp)

        if not wait_for_port(api_port, 180):
            alive()
            raise RuntimeError("the API did not listen within 180 s")
        publisher = Publisher(run)
        delivered = publisher.publish(articles, timeout_s=60)
        publisher.close()
        console.print(f"[dim]{len(delivered)} articles published; waiting until indexed[/dim]")
        http = stack.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
        )
        visible = wait_visible(http, [a for a in articles if a.id in delivered], alive, 900)
        console.print(f"[dim]{len(visible)} visible; deleting them one at a time[/dim]")
        samples = []
        for article in visible:
            alive()
            samples.append(delete_one(http, article))
        return {
            "articles": len(visible),
            "published": len(delivered),
            "store": settings.local_milvus,
            "consistency": settings.milvus_search_consistency,
            "worker_batch_time_s": settings.worker_batch_time_s,
            "poll_s": POLL_S,
            "answer": percentiles([s["answer_s"] for s in samples]),
            "invisible": percentiles([s["invisible_s"] for s in samples]),
            "search_gone": percentiles([s["search_gone_s"] for s in samples]),
            "load_average_end": os.getloadavg(),
        }


def delete_table(result: dict[str, Any]) -> Table:
    """The figures of :func:`run_delete_bench` as a table (milliseconds)."""
    table = Table(
        title=f"delete-to-invisible, {result['articles']} articles one at a time "
        f"(Milvus {result['store']}, {result['consistency']} reads, "
        f"worker batches of {result['worker_batch_time_s']} s)"
    )
    for column in ("measure", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for key, label in (
        ("answer", "DELETE answered (audit + tombstone acknowledged)"),
        ("invisible", "DELETE sent to GET /articles/{id} 404"),
        ("search_gone", "DELETE sent to gone from search"),
    ):
        figures = result[key]
        table.add_row(label, *(f"{figures[p] * 1000:.0f}" for p in ("p50", "p95", "max")))
    return table
