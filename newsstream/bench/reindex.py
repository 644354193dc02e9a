"""`newsstream bench reindex`: a reindex under search load, cold and with a warm cache.

In: a row count, a local store (:data:`newsstream.stack.local_stores.STORES`, default the
``milvus 2.3.5`` server `up` starts), the shared data dir (its news feeds give the texts) and
the settings (the embedding model). Out: one dict: the reindex time and rows/s with an empty
embedding cache (every text embedded) and again with the cache warm (nothing embedded), the
search p50/p99 (semantic, through :class:`search_api.searcher.Searcher` and the alias) before
the reindex and within one second of each swap, and the searches that failed or came back empty
(both must be 0).

The rows are filled in bulk (texts from the feeds, each made distinct, synthetic vectors). Both
reindexes embed through the cache, never reusing stored vectors (which a reindex with the same
model and backend does by default, embedding nothing at all). The first reindex swaps the alias onto an
install whose name was a real collection (the rename path); its previous collection is dropped
before the warm run, which takes the same path as any later reindex (one ``alter_alias``).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from core.metrics import SearchMode
from core.settings import Settings
from embedding.embedder import Embedder
from newsstream.bench.search import _texts
from newsstream.bench.stores import percentile
from newsstream.stack.local_stores import STORES, running_store
from search_api.filters import SearchFilters
from search_api.searcher import Searcher
from store.client import connect
from store.embed_cache import EmbeddingCache
from store.reindex import Reindexer, ReindexProgress, drop_old
from store.row import encode_sources
from store.schema import VECTOR_FIELD
from store.writer import ArticleWriter

COLLECTION = "bench_reindex"
BATCH = 2_000
QUERIES = ["election results", "storm damage", "interest rates", "football final", "vaccine"]


class SearchLoad:
    """One client searching in a loop, recording (start time, latency, ok, empty) per search."""

    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher
        self.samples: list[tuple[float, float, bool, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-search", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            ok, empty = True, False
            try:
                hits = self._searcher.search(
                    QUERIES[n % len(QUERIES)],
                    k=10,
                    mode=SearchMode.SEMANTIC,
                    filters=SearchFilters(),
                )
                empty = not hits
            except Exception:  # counted: a failed search is what this bench looks for
                ok = False
            self.samples.append((started, time.monotonic() - started, ok, empty))
            n += 1

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Latency figures of the searches started in [start, end]."""
        picked = [s for s in self.samples if start <= s[0] <= end]
        latencies = sorted(s[1] * 1000 for s in picked if s[2])
        return {
            "searches": len(picked),
            "p50_ms": round(percentile(latencies, 0.5), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "failed": sum(1 for s in picked if not s[2]),
            "empty": sum(1 for s in picked if s[3]),
        }


def _fill(settings: Settings, client: Any, rows: int, texts: list[str], dim: int) -> None:
    writer = ArticleWriter.open(client, settings, dim)
    rng = np.random.default_rng(7)
    for start in range(0, rows, BATCH):
        count = min(BATCH, rows - start)
        vectors = rng.normal(size=(count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        entities = []
        for i in range(count):
            n = start + i
            text = f"{texts[n % len(texts)][:1500]} ({n})"  # distinct: one vector per row
            entities.append(
                {
                    "id": f"{n:032x}",
                    VECTOR_FIELD: vectors[i].tolist(),
                    "title": text[:120],
                    "text": text,
                    "url": f"https://bench.example/{n}",
                    "source": "bench.example",
                    "feed_id": "bench",
                    "language": "en",
                    "published_at": 1_760_000_000 + n,
                    "ingested_at": 1_760_000_000,
                    "story_id": f"{n:032x}",
                    "model": "bench",
                    "content_hash": "",
                    "also_reported_by": encode_sources([]),
                }
            )
        writer.upsert(entities)
    writer.close()


def _timed_reindex(
    settings: Settings, client: Any, embedder: Embedder, cache: EmbeddingCache
) -> tuple[ReindexProgress, dict[str, float]]:
    """One reindex that embeds through the cache (stored vectors never reused: the first run
    finds the bench's synthetic ones, the second the model's own, which it would reuse)."""
    marks: dict[str, float] = {}

    def mark(progress: ReindexProgress) -> None:
        marks.setdefault(progress.phase, time.monotonic())

    started = time.monotonic()
    result = Reindexer(
        settings, client, embedder, cache, on_progress=mark, reuse_vectors=False
    ).run()
    marks["end"] = time.monotonic()
    marks["start"] = started
    return result, marks


def run_reindex_bench(
    rows: int, data_dir: Path, *, settings: Settings, store: str, console: Console
) -> dict[str, Any]:
    """Fill ``rows`` rows into ``store``, then reindex twice under search load (see the module
    docstring); returns the figures."""
    texts = _texts(data_dir)
    embedder = Embedder(settings)
    with running_store(STORES[store], None) as running, tempfile.TemporaryDirectory() as tmp:
        bench = settings.model_copy(
            update={
                "milvus_uri": running.uri,
                "milvus_collection": COLLECTION,
                "data_dir": Path(tmp),
                "milvus_search_consistency": "Bounded",
            }
        )
        client = connect(running.uri)
        console.print(f"filling {rows} rows into {STORES[store].label} ...")
        _fill(bench, client, rows, texts, embedder.dimension)
        searcher = Searcher(bench, client, embedder)
        cache = EmbeddingCache(Path(tmp) / "cache.sqlite")
        filters = SearchFilters()
        for _ in range(600):  # until the filled rows are searchable (Bounded reads lag)
            if searcher.search(QUERIES[0], k=10, mode=SearchMode.SEMANTIC, filters=filters):
                break
            time.sleep(0.1)
        load = SearchLoad(searcher)
        load.start()
        time.sleep(5)
        before = load.window(0, time.monotonic())
        console.print("reindex, cold cache ...")
        cold, cold_marks = _timed_reindex(bench, client, embedder, cache)
        time.sleep(1)
        drop_old(client, bench)
        console.print("reindex, warm cache ...")
        warm, warm_marks = _timed_reindex(bench, client, embedder, cache)
        time.sleep(1)
        load.stop()
        cache.close()
        swaps = [
            load.window(marks["swapping"] - 1, marks["done"] + 1)
            for marks in (cold_marks, warm_marks)
        ]
        everything = load.window(0, time.monotonic())
    return {
        "rows": rows,
        "store": STORES[store].label,
        "model": embedder.model_name,
        "backend": embedder.backend,
        "cold": _summary(cold, cold_marks),
        "warm": _summary(warm, warm_marks),
        "search_before": before,
        "search_during_first_swap": swaps[0],
        "search_during_second_swap": swaps[1],
        "search_all": everything,
    }


def _summary(result: ReindexProgress, marks: dict[str, float]) -> dict[str, Any]:
    seconds = marks["end"] - marks["start"]
    copy_s = marks.get("catching up", marks["end"]) - marks.get("copying", marks["start"])
    return {
        "seconds": round(seconds, 1),
        "copy_seconds": round(copy_s, 1),
        "rows_per_s": round(result.total / seconds, 1) if seconds else None,
        "copy_rows_per_s": round(result.total / copy_s, 1) if copy_s else None,
        "embedded": result.embedded,
        "cached": result.cached,
    }
