"""The ``bench dedup`` scenario: what dedup costs per article, in time and in index memory.

What goes in: ``n`` (articles put through the index) and an optional Redis URL (the Redis
backend is measured only when given). What comes out: a JSON-able dict per backend with

- ``ms_per_article``: the worker's full dedup work for one article (normalise, shingle,
  MinHash, claim, exact lookup, LSH query, confirm, record = LSH insert), averaged over ``n``
  synthetic feed items (a title-sized and one to two sentences: 25 to 60 words, Zipf-distributed
  over a 20,000-word vocabulary, 10% of them near copies of an earlier one);
- ``bytes_per_article``: index memory per recorded article (in-memory: Python allocations
  traced with ``tracemalloc``, without the arrays' unused growth headroom, reported apart;
  Redis: the growth of ``used_memory``), and ``bytes_at_1m``, its extrapolation to 1M articles
  (every structure is per article, so the figure scales linearly; the in-memory one adds the
  headroom that 1M slots leave in a 2**20 capacity; Redis band hashes get denser, hence
  cheaper per entry, as ``n`` grows, so the extrapolation is an upper bound).

The Redis run uses a throw-away basename and deletes its keys afterwards.
"""

from __future__ import annotations

import time
import tracemalloc
import uuid
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from dedup.index import DedupIndex, IndexParams
from dedup.memory_backend import MemoryBackend

VOCABULARY = 20_000
NEAR_COPY_SHARE = 0.1
TARGET_MS = 2.0
TARGET_BYTES = 2048


def synthetic_items(n: int, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` ``(article id, text)`` feed-item-sized texts, 10% near copies of earlier ones."""
    rng = np.random.default_rng(seed)
    words = [f"w{i:x}" for i in range(VOCABULARY)]
    ranks = rng.zipf(1.3, size=n * 60) % VOCABULARY
    lengths = rng.integers(25, 61, size=n)
    items: list[tuple[str, str]] = []
    cursor = 0
    for i in range(n):
        if i > 10 and rng.random() < NEAR_COPY_SHARE:
            base = items[int(rng.integers(0, i))][1].split(" ")
            base[int(rng.integers(0, len(base)))] = "changed"
            text = "Update 1: " + " ".join(base)
        else:
            length = int(lengths[i])
            text = " ".join(words[r] for r in ranks[cursor : cursor + length])
            cursor += length
        items.append((uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i).hex, text))
    return items


def _run(index: DedupIndex, items: list[tuple[str, str]]) -> tuple[float, int]:
    """Check and record every item; returns (seconds, duplicates found)."""
    duplicates = 0
    started = time.perf_counter()
    for number, (article_id, text) in enumerate(items):
        now = 1_700_000_000.0 + number
        verdict = index.check(article_id, text, now)
        if verdict.is_duplicate:
            duplicates += 1
        else:
            index.record(article_id, verdict, now)
    return time.perf_counter() - started, duplicates


def bench_memory_backend(items: list[tuple[str, str]], params: IndexParams) -> dict[str, Any]:
    """Time and traced memory of the in-memory backend over ``items``."""
    index = DedupIndex(MemoryBackend(params), params)
    seconds, duplicates = _run(index, items)
    size = index.size()
    # Memory: a second, traced run (tracing slows the timed one down).
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    backend = MemoryBackend(params)
    traced = DedupIndex(backend, params)
    _run(traced, items)
    held = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    # Arrays grow by doubling: count the headroom apart, and add the headroom that 1M
    # articles would have (capacity 2**20) to the 1M figure.
    headroom = backend.unused_capacity_bytes()
    per_article = (held - headroom) / max(1, traced.size())
    headroom_at_1m = (2**20 - 1_000_000) * backend.slot_bytes()
    return {
        "backend": "memory",
        "articles": len(items),
        "recorded": size,
        "duplicates": duplicates,
        "ms_per_article": round(seconds * 1000 / len(items), 3),
        "bytes_per_article": round(per_article),
        "headroom_bytes_per_article": round(headroom / max(1, traced.size())),
        "bytes_at_1m": round(per_article * 1_000_000 + headroom_at_1m),
    }


def bench_redis_backend(
    items: list[tuple[str, str]], params: IndexParams, redis_url: str
) -> dict[str, Any]:
    """Time and ``used_memory`` growth of the Redis backend over ``items``."""
    import redis

    from dedup.redis_backend import RedisBackend

    client = redis.Redis.from_url(redis_url)
    backend = RedisBackend(params, client, basename=f"bench:{uuid.uuid4().hex[:8]}")
    try:
        before = int(client.info("memory")["used_memory"])
        index = DedupIndex(backend, params)
        seconds, duplicates = _run(index, items)
        after = int(client.info("memory")["used_memory"])
        size = index.size()
    finally:
        backend.clear()
    per_article = (after - before) / max(1, size)
    return {
        "backend": "redis",
        "articles": len(items),
        "recorded": size,
        "duplicates": duplicates,
        "ms_per_article": round(seconds * 1000 / len(items), 3),
        "bytes_per_article": round(per_article),
        "bytes_at_1m": round(per_article * 1_000_000),
    }


def run_dedup_bench(
    n: int, redis_url: str | None, params: IndexParams | None = None
) -> dict[str, Any]:
    """Measure both backends (Redis only with ``redis_url``) on ``n`` synthetic items."""
    if n < 100:
        raise ValueError(f"n must be at least 100 for a meaningful average, got {n}")
    params = params or IndexParams()
    items = synthetic_items(n)
    results = [bench_memory_backend(items, params)]
    if redis_url:
        results.append(bench_redis_backend(items, params, redis_url))
    return {
        "n": n,
        "params": {**params.stored(), "threshold": params.lsh.threshold},
        "targets": {"ms_per_article": TARGET_MS, "bytes_per_article": TARGET_BYTES},
        "extrapolated_to_1m": n < 1_000_000,
        "backends": results,
    }


def print_dedup_bench(result: dict[str, Any], console: Console) -> None:
    """Print the bench result as a table."""
    how = "extrapolated" if result["extrapolated_to_1m"] else "measured"
    table = Table(title=f"Dedup cost ({result['n']} articles; 1M memory {how})")
    for column in ("backend", "ms/article", "bytes/article", "MB at 1M", "duplicates"):
        table.add_column(column, justify="right")
    for row in result["backends"]:
        table.add_row(
            row["backend"],
            f"{row['ms_per_article']:.3f}",
            str(row["bytes_per_article"]),
            f"{row['bytes_at_1m'] / 1e6:.0f}",
            str(row["duplicates"]),
        )
    console.print(table)
