"""`newsstream bench search`: search latency and QPS at N articles, and recall@10 vs exact.

What it does: starts the configured local Milvus on a fresh data dir (or uses ``--milvus-uri``),
fills a collection with ``n`` rows made of the shared news texts repeated with distinct ids and
slightly perturbed vectors (fine for latency), waits for the index and for the compaction of the
bulk load, serves the real API (``newsstream serve``) in a process of its own, as deployed, and
measures ``GET /search`` (query embedding included) from this process with 1 and 4 concurrent
clients: p50, p95, p99 and QPS. Recall@10 of the engine's top 10 against exact (numpy
brute-force) cosine search on the same vectors is measured on the query set (with this many
near-copies it says little; ``bench stores`` measures recall). Prints a table and the memory of
the API and of the server it started, returns the figures.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from core.settings import Settings
from embedding.embedder import Embedder
from newsstream.stack.launchers import free_port, throwaway_milvus_process, wait_for_port
from newsstream.stack.proctree import format_mib, stop_process, tree_memory
from store.client import connect
from store.compaction import compact_and_wait, wait_for_index
from store.row import encode_sources
from store.schema import VECTOR_FIELD
from store.writer import ArticleWriter

QUERIES = [
    "election results",
    "floods",
    "central bank interest rates",
    "wildfire",
    "football match",
    "climate summit",
    "earthquake",
    "stock markets fall",
    "peace talks",
    "new smartphone",
    "hospital strike",
    "refugees at the border",
    "oil prices",
    "court ruling",
    "space launch",
    "heatwave",
    "protests in the capital",
    "trade deal",
    "vaccine",
    "artificial intelligence",
]


def _texts(data_dir: Path) -> list[str]:
    from consumers.clean import clean_article
    from producers.parser import parse_feed

    texts: list[str] = []
    for path in sorted((data_dir / "feeds" / "news").glob("*.xml")):
        parsed = parse_feed(path.read_bytes(), feed_url=f"https://x/{path.name}", feed_id="b")
        texts += [clean_article(a.model_copy(update={"content": ""})).text for a in parsed.articles]
    return [t for t in texts if t]


def _perturbed(base: np.ndarray, picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors: ``base[picks]`` plus small Gaussian noise (distinct rows, same topics)."""
    chunk: np.ndarray = base[picks] + rng.normal(0, 0.02, (len(picks), base.shape[1])).astype(
        np.float32
    )
    chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
    return chunk


def _rows(
    start: int,
    chunk: np.ndarray,
    picks: np.ndarray,
    texts: list[str],
    also_reported_by: list[Any] | dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Article rows ``start, start + 1, ...`` of the bench collection for vectors ``chunk``.

    ``also_reported_by`` is the empty value written to that JSON field (what the indexer
    writes when None).
    """
    empty = encode_sources([]) if also_reported_by is None else also_reported_by
    return [
        {
            "id": f"{start + i:032x}",
            VECTOR_FIELD: chunk[i].tolist(),
            "title": texts[picks[i]][:120],
            "text": texts[picks[i]][:2000],
            "url": f"https://bench.example/{start + i}",
            "source": "bench.example",
            "feed_id": "bench",
            "language": "en",
            "published_at": 1_760_000_000 + start + i,
            "ingested_at": 1_760_000_000,
            "story_id": f"{start + i:032x}",
            "model": "bench",
            "content_hash": "",
            "also_reported_by": empty,
        }
        for i in range(len(chunk))
    ]


def _fill(
    writer: ArticleWriter,
    base: np.ndarray,
    texts: list[str],
    n: int,
    console: Console,
) -> np.ndarray:
    rng = np.random.default_rng(7)
    vectors = np.empty((n, base.shape[1]), dtype=np.float32)
    batch = 2_000
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"inserting {n} rows", total=n)
        for start in range(0, n, batch):
            count = min(batch, n - start)
            picks = np.arange(start, start + count) % len(base)
            chunk = _perturbed(base, picks, rng)
            vectors[start : start + count] = chunk
            writer.upsert(_rows(start, chunk, picks, texts))
            progress.advance(task, count)
    return vectors


def _measure(base_url: str, clients: int, seconds: float, mode: str) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(worker: int) -> None:
        with httpx.Client(timeout=30) as http:
            n = worker
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = http.get(
                    f"{base_url}/search",
                    params={"q": QUERIES[n % len(QUERIES)], "k": 10, "mode": mode},
                )
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed)
                n += clients

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    wall = time.monotonic() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "clients": clients,
        "requests": len(ordered),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(ordered) * 1000,
        "qps": len(ordered) / wall,
    }


@contextmanager
def _api_process(settings: Settings, port: int, timeout_s: float = 120) -> Iterator[int]:
    """``newsstream serve`` on ``port`` for the bench collection (no rate limit, no search
    events), stopped on exit; gives its pid."""
    env = {
        **os.environ,
        "NEWSSTREAM_MILVUS_URI": settings.milvus_uri or "",
        "NEWSSTREAM_MILVUS_COLLECTION": settings.milvus_collection,
        "NEWSSTREAM_DATA_DIR": str(settings.data_dir),
        "NEWSSTREAM_API_RATE_LIMIT_PER_MINUTE": "0",
        "NEWSSTREAM_API_SEARCH_EVENTS": "false",
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "newsstream", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
    )
    try:
        if not wait_for_port(port, timeout_s):
            raise RuntimeError(f"the API did not listen on port {port} within {timeout_s:.0f} s")
        yield api.pid
    finally:
        stop_process(api)


def run_search_bench(
    n: int,
    data_dir: Path,
    *,
    seconds: float = 20.0,
    milvus_uri: str | None = None,
    mode: str = "semantic",
    console: Console | None = None,
) -> dict[str, Any]:
    """Fill, serve, measure; see the module docstring."""
    console = console or Console()
    store = Settings().local_milvus
    with throwaway_milvus_process(milvus_uri, kind=store) as (milvus_uri, server_pid):
        settings = Settings(
            milvus_uri=milvus_uri,
            milvus_collection=f"bench_{n}",
            data_dir=Settings().data_dir,
            api_rate_limit_per_minute=0,
            api_search_events=False,
        )
        embedder = Embedder(settings)
        texts = _texts(data_dir)
        base = embedder.embed(texts)
        client = connect(milvus_uri)
        writer = ArticleWriter.fresh(client, settings, embedder.dimension)
        started = time.monotonic()
        vectors = _fill(writer, base, texts, n, console)
        client.flush(settings.milvus_collection)
        fill_s = time.monotonic() - started
        # Searching while the index is still being built scans unindexed segments, and the
        # server merges the bulk load's small segments a minute later: wait for both.
        indexed = wait_for_index(client, settings.milvus_collection, n, 1800)
        index_s = time.monotonic() - started - fill_s
        settled = compact_and_wait(client, settings.milvus_collection, n, 1800)
        compact_s = time.monotonic() - started - fill_s - index_s
        client.load_collection(settings.milvus_collection)
        # Recall@10 of the engine against exact cosine search, on the query set.
        query_vectors = embedder.embed(QUERIES)
        recalls = []
        for vector in query_vectors:
            exact = set(np.argsort(-(vectors @ vector))[:10].tolist())
            hits = client.search(
                settings.milvus_collection,
                data=[vector.tolist()],
                anns_field=VECTOR_FIELD,
                limit=10,
                search_params={
                    "metric_type": "COSINE",
                    "params": {"ef": settings.milvus_search_ef},
                },
            )
            found = {int(h["id"], 16) for h in hits[0]}
            recalls.append(len(exact & found) / 10)
        api_port = free_port()
        base_url = f"http://127.0.0.1:{api_port}"
        with _api_process(settings, api_port) as api_pid:
            for _ in range(5):  # warm-up
                httpx.get(f"{base_url}/search", params={"q": "warm up", "mode": mode}, timeout=60)
            one = _measure(base_url, 1, seconds, mode)
            four = _measure(base_url, 4, seconds, mode)
            memory = {"api": tree_memory(api_pid)}
            if server_pid is not None:
                memory["milvus"] = tree_memory(server_pid)
        result = {
            "n": n,
            "mode": mode,
            "store": store,
            "fill_s": fill_s,
            "index_s": index_s,
            "indexed": indexed,
            "compacted": settled,
            "compact_s": compact_s,
            "inserts_per_s": n / fill_s,
            "recall_at_10": statistics.fmean(recalls),
            "one_client": one,
            "four_clients": four,
            "milvus_uri": milvus_uri,
            "memory_bytes": memory,
        }
        table = Table(
            title=f"search at {n} articles ({mode}, Milvus: {store}, query embedding included)"
        )
        for column in ("clients", "requests", "p50 ms", "p95 ms", "p99 ms", "QPS"):
            table.add_column(column, justify="right")
        for row in (one, four):
            table.add_row(
                str(row["clients"]),
                str(row["requests"]),
                f"{row['p50_ms']:.1f}",
                f"{row['p95_ms']:.1f}",
                f"{row['p99_ms']:.1f}",
                f"{row['qps']:.1f}",
            )
        console.print(table)
        console.print(
            f"recall@10 vs exact: {result['recall_at_10']:.3f}; fill {fill_s:.0f} s "
            f"({result['inserts_per_s']:.0f} rows/s), index build {index_s:.0f} s, "
            f"compaction and its index {compact_s:.0f} s"
        )
        for name, figures in memory.items():
            console.print(
                f"memory of the {name} after the runs: RSS {format_mib(figures['rss'])}, "
                f"PSS {format_mib(figures['pss'])}, anonymous {format_mib(figures['anon'])}"
            )
        return result
