"""`newsstream bench stores`: the local Milvus stores side by side, on our real schema.

In: a row count, the stores to compare (:data:`newsstream.stack.local_stores.STORES`), the
shared data dir (its news feeds give the texts) and the newsstream data dir (where the side
venvs of the stores that cannot share ``.venv`` live). Out: one dict per store with upserts/s,
flush and index wait, search p50/p99 with 1 client and QPS with 4 client threads (top-10,
vectors only: no query embedding), recall@10 against exact numpy search, the peak RSS of the
store's server process tree, and the features probed on it (BM25, hybrid_search, group_by, JSON
lists); a rich table with the stores as columns.

Each store is started by :func:`newsstream.stack.local_stores.running_store` (throw-away data
dir, whole process tree killed on exit, also on Ctrl-C and SIGTERM). Every loop is bounded by a
count and a time limit; a store whose fill would take longer than ``max_fill_s`` is stopped and
reported as skipped.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import AnnSearchRequest, MilvusClient, RRFRanker
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from core.settings import Settings
from newsstream.bench.search import QUERIES, _perturbed, _rows, _texts
from newsstream.stack.local_stores import STORES, StoreSpec, running_store, side_venv
from newsstream.stack.proctree import format_mib
from store.client import connect
from store.compaction import compact_and_wait, wait_for_index
from store.schema import SPARSE_FIELD, VECTOR_FIELD, ensure_collection

K = 10
BATCH = 2_000
COLLECTION = "bench_stores"
PROBE_COLLECTION = "bench_probe"


# ---------------------------------------------------------------------------------------------
# Pure helpers


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank ``p`` quantile (0..1) of ascending ``ordered``; NaN when empty."""
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(np.ceil(p * len(ordered))) - 1))
    return float(ordered[index])


def latency_summary(latencies_s: Sequence[float], wall_s: float, clients: int) -> dict[str, Any]:
    """Requests, p50/p99/mean in ms and QPS from per-request seconds and the wall time."""
    ordered = sorted(latencies_s)
    return {
        "clients": clients,
        "requests": len(ordered),
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "mean_ms": (sum(ordered) / len(ordered) * 1000) if ordered else float("nan"),
        "qps": len(ordered) / wall_s if wall_s > 0 else float("nan"),
    }


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> list[set[int]]:
    """Row numbers of the ``k`` highest dot products per query (cosine for unit vectors)."""
    out: list[set[int]] = []
    for start in range(0, len(queries), 16):
        scores = queries[start : start + 16] @ vectors.T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        out += [set(row.tolist()) for row in top]
    return out


def recall_at_k(exact: Sequence[set[int]], found: Sequence[set[int]], k: int = K) -> float:
    """Mean of |exact ∩ found| / k over queries; NaN with no query."""
    if not exact:
        return float("nan")
    return float(np.mean([len(e & f) / k for e, f in zip(exact, found, strict=True)]))


def projected_s(done: int, elapsed_s: float, total: int) -> float:
    """Seconds the whole of ``total`` would take at the rate of ``done`` in ``elapsed_s``."""
    if done <= 0:
        return float("inf")
    return elapsed_s * total / done


# ---------------------------------------------------------------------------------------------
# Measurements


def probe_features(client: MilvusClient, settings: Settings, dim: int) -> dict[str, Any]:
    """BM25, hybrid_search, group_by and JSON-list support, tried on a 6-row probe collection.

    group_by counts only when it really collapses (Milvus 2.3.5 accepts and ignores it);
    hybrid_search is tried with two dense requests, so it does not depend on BM25.
    """
    probe = settings.model_copy(update={"milvus_collection": PROBE_COLLECTION})
    features: dict[str, Any] = {"bm25": ensure_collection(client, probe, dim)}
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(6, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = ["floods in the north", "election results", "football match"] * 2
    rows = _rows(0, vectors, np.arange(6), texts, [])  # a bare list: the feature probed
    for i, row in enumerate(rows):
        row["story_id"] = f"story-{i % 3}"
    try:
        client.upsert(PROBE_COLLECTION, rows)
        features["json_list"] = True
    except Exception:  # a server that takes only JSON objects in a JSON field
        features["json_list"] = False
        client.upsert(PROBE_COLLECTION, _rows(0, vectors, np.arange(6), texts))
    client.flush(PROBE_COLLECTION)
    dense = {"metric_type": "COSINE"}
    query = [vectors[0].tolist()]
    if features["bm25"]:
        try:
            hits = client.search(
                PROBE_COLLECTION, data=["election"], anns_field=SPARSE_FIELD, limit=2,
                search_params={"metric_type": "BM25"}, consistency_level="Strong",
            )  # fmt: skip
            features["bm25"] = bool(hits[0]) and hits[0][0]["id"] in {rows[1]["id"], rows[4]["id"]}
        except Exception:
            features["bm25"] = False
    try:
        requests = [AnnSearchRequest(query, VECTOR_FIELD, dense, 3) for _ in range(2)]
        hits = client.hybrid_search(PROBE_COLLECTION, requests, RRFRanker(), limit=3)
        features["hybrid_search"] = len(hits[0]) > 0
    except Exception:
        features["hybrid_search"] = False
    try:
        hits = client.search(
            PROBE_COLLECTION, data=query, anns_field=VECTOR_FIELD, limit=6,
            group_by_field="story_id", output_fields=["story_id"], search_params=dense,
            consistency_level="Strong",
        )  # fmt: skip
        stories = [h["entity"]["story_id"] for h in hits[0]]
        features["group_by"] = len(stories) == 3 and len(set(stories)) == 3
    except Exception:
        features["group_by"] = False
    client.drop_collection(PROBE_COLLECTION)
    return features


def _search_params(settings: Settings) -> dict[str, Any]:
    if settings.milvus_index_type == "HNSW":
        return {"metric_type": "COSINE", "params": {"ef": settings.milvus_search_ef}}
    return {"metric_type": "COSINE"}


def _search_ids(client: MilvusClient, settings: Settings, vector: np.ndarray) -> set[int]:
    hits = client.search(
        settings.milvus_collection, data=[vector.tolist()], anns_field=VECTOR_FIELD, limit=K,
        search_params=_search_params(settings),
    )  # fmt: skip
    return {int(h["id"], 16) for h in hits[0]}


def timed_searches(
    client: MilvusClient,
    settings: Settings,
    queries: np.ndarray,
    clients: int,
    max_requests: int,
    max_seconds: float,
) -> dict[str, Any]:
    """Top-10 searches from ``clients`` threads over ``queries`` in turn, until ``max_requests``
    are done or ``max_seconds`` have passed; a :func:`latency_summary`."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds
    counter = iter(range(max_requests))

    def loop(_: int) -> None:
        while time.monotonic() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            started = time.perf_counter()
            _search_ids(client, settings, queries[n % len(queries)])
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    return latency_summary(latencies, time.monotonic() - started, clients)


def _fill(
    client: MilvusClient,
    settings: Settings,
    base: np.ndarray,
    texts: list[str],
    rows: int,
    max_fill_s: float,
    console: Console,
) -> tuple[np.ndarray, float, str | None]:
    """Upsert ``rows`` rows in batches; (vectors, seconds, reason if stopped early).

    Stops when the rate so far projects the whole fill past ``max_fill_s`` (checked after
    10 s, so the first batches' warm-up does not decide).
    """
    rng = np.random.default_rng(7)
    vectors = np.empty((rows, base.shape[1]), dtype=np.float32)
    started = time.monotonic()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"upserting {rows} rows", total=rows)
        for start in range(0, rows, BATCH):
            picks = np.arange(start, min(rows, start + BATCH)) % len(base)
            chunk = _perturbed(base, picks, rng)
            vectors[start : start + len(chunk)] = chunk
            client.upsert(settings.milvus_collection, _rows(start, chunk, picks, texts))
            progress.advance(task, len(chunk))
            elapsed = time.monotonic() - started
            done = start + len(chunk)
            projection = projected_s(done, elapsed, rows)
            if done < rows and elapsed > 10 and projection > max_fill_s:
                reason = (
                    f"fill stopped at {done} rows: {done / elapsed:.0f} upserts/s projects "
                    f"{projection / 60:.0f} min for {rows} (limit {max_fill_s / 60:.0f} min)"
                )
                return vectors[:done], elapsed, reason
    return vectors, time.monotonic() - started, None


def run_store(
    spec: StoreSpec,
    rows: int,
    base: np.ndarray,
    texts: list[str],
    queries: np.ndarray,
    *,
    venv: Path | None,
    seconds: float,
    max_fill_s: float,
    console: Console,
) -> dict[str, Any]:
    """Start ``spec``, probe features, fill ``rows`` rows, flush, measure; the figures dict."""
    result: dict[str, Any] = {"store": spec.key, "label": spec.label, "rows": rows}
    result["index_type"] = spec.index_type
    with running_store(spec, venv) as store:
        result["start_rss_bytes"] = store.rss.sample()
        client = connect(store.uri, timeout=600)
        settings = Settings(
            milvus_uri=store.uri,
            milvus_collection=COLLECTION,
            milvus_index_type=spec.index_type,
            data_dir=Settings().data_dir,
        )
        try:
            result["features"] = probe_features(client, settings, base.shape[1])
            ensure_collection(client, settings, base.shape[1])
            vectors, fill_s, stopped = _fill(
                client, settings, base, texts, rows, max_fill_s, console
            )
            result["fill_s"] = fill_s
            result["upserts_per_s"] = len(vectors) / fill_s
            if stopped:
                result["skipped"] = stopped
                return result
            started = time.monotonic()
            client.flush(COLLECTION)
            result["flush_s"] = time.monotonic() - started
            started = time.monotonic()
            result["indexed"] = wait_for_index(client, COLLECTION, rows, max_fill_s)
            result["index_wait_s"] = time.monotonic() - started
            started = time.monotonic()
            result["compacted"] = compact_and_wait(client, COLLECTION, rows, max_fill_s)
            result["compact_s"] = time.monotonic() - started
            client.load_collection(COLLECTION)
            result["after_fill_rss_bytes"] = store.rss.sample()
            for vector in queries[:5]:  # warm-up
                _search_ids(client, settings, vector)
            exact = exact_top_k(vectors, queries)
            found = [_search_ids(client, settings, q) for q in queries]
            result["recall_at_10"] = recall_at_k(exact, found)
            limit = max(len(queries), 1) * 5
            result["one_client"] = timed_searches(client, settings, queries, 1, limit, seconds)
            result["four_clients"] = timed_searches(client, settings, queries, 4, limit, seconds)
            if spec.index_type == "HNSW":
                result["ef_sweep"] = ef_sweep(client, settings, queries, exact, limit, seconds)
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
            if not store.alive():
                result["error"] += f"\nserver died:\n{store.log_tail()}"
        finally:
            store.rss.sample()
            result["peak_rss_bytes"] = store.rss.peak
            client.close()
    return result


#: Search-time HNSW ef values measured beside the configured one (recall against latency).
EF_SWEEP = (128, 256)


def ef_sweep(
    client: MilvusClient,
    settings: Settings,
    queries: np.ndarray,
    exact: list[set[int]],
    max_requests: int,
    max_seconds: float,
) -> dict[str, dict[str, float]]:
    """Recall@10 and one-client latency at each ef of :data:`EF_SWEEP`, by ef."""
    figures: dict[str, dict[str, float]] = {}
    for ef in EF_SWEEP:
        tuned = settings.model_copy(update={"milvus_search_ef": ef})
        found = [_search_ids(client, tuned, q) for q in queries]
        timed = timed_searches(client, tuned, queries, 1, max_requests, max_seconds)
        figures[str(ef)] = {
            "recall_at_10": recall_at_k(exact, found),
            "p50_ms": timed["p50_ms"],
            "p99_ms": timed["p99_ms"],
        }
    return figures


def query_vectors(embedded: np.ndarray, base: np.ndarray, count: int) -> np.ndarray:
    """``count`` unit query vectors: the embedded :data:`QUERIES` first, then news vectors with
    more noise than the stored rows (near the data, never equal to a row)."""
    rng = np.random.default_rng(11)
    extra = max(0, count - len(embedded))
    picks = rng.integers(0, len(base), extra)
    noisy = base[picks] + rng.normal(0, 0.05, (extra, base.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return np.concatenate([embedded, noisy])[:count].astype(np.float32)


def run_store_bench(
    rows: int,
    stores: Sequence[str],
    shared_data: Path,
    *,
    queries: int = 200,
    seconds: float = 20.0,
    max_fill_s: float = 1200.0,
    console: Console | None = None,
) -> dict[str, Any]:
    """Every store of ``stores`` in turn (see the module docstring); prints the table."""
    from embedding.embedder import Embedder

    console = console or Console()
    settings = Settings()
    embedder = Embedder(settings)
    texts = _texts(shared_data)
    base = embedder.embed(texts)
    query_set = query_vectors(embedder.embed(QUERIES), base, queries)
    results: list[dict[str, Any]] = []
    load_at_start = os.getloadavg()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # so the servers are killed on SIGTERM
    # pymilvus logs each refused call (the probes expect some) with a traceback.
    pymilvus_log = logging.getLogger("pymilvus")
    level = pymilvus_log.level
    pymilvus_log.setLevel(logging.CRITICAL)
    try:
        _run_each(
            stores, rows, base, texts, query_set, settings, seconds, max_fill_s, results, console
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        pymilvus_log.setLevel(level)
    result = {
        "rows": rows,
        "queries": len(query_set),
        "top_k": K,
        "load_average_start": load_at_start,
        "load_average_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "stores": results,
    }
    console.print(stores_table(result))
    for figures in results:
        for ef, row in figures.get("ef_sweep", {}).items():
            console.print(
                f"{figures.get('label', figures.get('store'))} at ef {ef}: recall@10 {row['recall_at_10']:.3f}, "
                f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms (1 client)"
            )
    return result


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_each(
    stores: Sequence[str],
    rows: int,
    base: np.ndarray,
    texts: list[str],
    query_set: np.ndarray,
    settings: Settings,
    seconds: float,
    max_fill_s: float,
    results: list[dict[str, Any]],
    console: Console,
) -> None:
    for key in stores:
        spec = STORES[key]
        console.print(f"[bold]{spec.label}[/bold]: {rows} rows")
        try:
            venv = (
                side_venv(spec, settings.data_dir.resolve(), console) if spec.requirements else None
            )
            figures = run_store(
                spec, rows, base, texts, query_set, venv=venv, seconds=seconds,
                max_fill_s=max_fill_s, console=console,
            )  # fmt: skip
        except Exception as exc:  # a store that cannot start must not hide the others
            figures = {"store": key, "label": spec.label, "rows": rows, "error": str(exc)[:2000]}
        results.append(figures)
        if "error" in figures:
            console.print(f"[red]{key}: {figures['error']}[/red]")


def stores_table(result: dict[str, Any]) -> Table:
    """The figures of :func:`run_store_bench` as a table, one column per store."""
    table = Table(title=f"local Milvus stores at {result['rows']} rows (384-d, top-{K})")
    table.add_column("")
    for figures in result["stores"]:
        table.add_column(figures["label"], justify="right")

    def cell(figures: dict[str, Any], *path: str, fmt: str = "{:.1f}") -> str:
        value: Any = figures
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return "-"
            value = value[key]
        return fmt.format(value) if isinstance(value, int | float) else str(value)

    def yes(figures: dict[str, Any], name: str) -> str:
        value = figures.get("features", {}).get(name)
        return "-" if value is None else ("yes" if value else "no")

    stores = result["stores"]
    lines: list[tuple[str, Any]] = [
        ("index", lambda f: cell(f, "index_type")),
        ("upserts/s", lambda f: cell(f, "upserts_per_s", fmt="{:.0f}")),
        ("flush + index + compaction s", lambda f: _flush_cell(f)),
        ("p50 ms (1 client)", lambda f: cell(f, "one_client", "p50_ms")),
        ("p99 ms (1 client)", lambda f: cell(f, "one_client", "p99_ms")),
        ("QPS (1 client)", lambda f: cell(f, "one_client", "qps")),
        ("QPS (4 clients)", lambda f: cell(f, "four_clients", "qps")),
        ("p50/p99 ms (4 clients)", lambda f: _pair(f, "four_clients")),
        ("recall@10", lambda f: cell(f, "recall_at_10", fmt="{:.3f}")),
        ("peak RSS", lambda f: format_mib(f.get("peak_rss_bytes"))),
        ("BM25", lambda f: yes(f, "bm25")),
        ("hybrid_search", lambda f: yes(f, "hybrid_search")),
        ("group_by", lambda f: yes(f, "group_by")),
        ("JSON list values", lambda f: yes(f, "json_list")),
        ("note", lambda f: (f.get("skipped") or f.get("error") or "")[:60]),
    ]
    for label, render in lines:
        table.add_row(label, *(render(f) for f in stores))
    return table


def _flush_cell(figures: dict[str, Any]) -> str:
    if "flush_s" not in figures:
        return "-"
    return (
        f"{figures['flush_s']:.1f} + {figures.get('index_wait_s', 0):.1f}"
        f" + {figures.get('compact_s', 0):.1f}"
    )


def _pair(figures: dict[str, Any], key: str) -> str:
    row = figures.get(key)
    return f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f}" if isinstance(row, dict) else "-"
