"""Waiting for the vector index and for compaction after a bulk load (benchmarks, evaluations).

What goes in: a client, a collection name and the rows loaded. What comes out: whether the
index (and, where the server can, the merged segments) covers them in time. The service never
waits on these: its searches read whatever is indexed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pymilvus import MilvusClient, MilvusException

from store.schema import VECTOR_FIELD


def index_done(info: dict[str, Any], rows: int) -> bool:
    """Whether ``describe_index`` output says the index covers the data: ``rows`` indexed, or
    nothing pending (FLAT in Milvus Lite 2.5 reports 0 of 0), or no progress figures at all."""
    if "indexed_rows" not in info:
        return True
    indexed = int(info["indexed_rows"])
    pending = int(info.get("pending_index_rows", 0))
    return indexed >= rows or (pending == 0 and indexed >= int(info.get("total_rows", 0)))


def wait_for_index(client: MilvusClient, name: str, rows: int, timeout_s: float) -> bool:
    """True once the vector index covers the rows, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if index_done(client.describe_index(name, VECTOR_FIELD) or {}, rows):
            return True
        time.sleep(2)
    return False


def serving_segments(
    loaded: Sequence[tuple[int, bool]], persistent: Sequence[int]
) -> frozenset[int] | None:
    """The ids of the sealed segments a collection is served from, when that set is final: every
    flushed segment (``persistent``) is loaded and indexed and no other is loaded (``loaded``
    holds (segment id, has an index) pairs). None while a merged segment waits to be loaded, an
    old one is still served, or a loaded one has no index yet."""
    ids = frozenset(segment for segment, _ in loaded)
    if ids != frozenset(persistent) or not all(indexed for _, indexed in loaded):
        return None
    return ids


def _serving_segments(client: MilvusClient, name: str) -> frozenset[int] | None:
    loaded = client.list_loaded_segments(name)
    persistent = client.list_persistent_segments(name)
    return serving_segments(
        [(segment.segment_id, segment.index_id != 0) for segment in loaded],
        [segment.segment_id for segment in persistent],
    )


def compact_and_wait(
    client: MilvusClient, name: str, rows: int, timeout_s: float, quiet_s: float = 75.0
) -> bool:
    """After a bulk load: wait for the vector index, merge the collection's small segments (a
    manual compaction), then wait until the segments served are final; True when all of it
    finished within ``timeout_s``.

    Final means :func:`serving_segments` gave the same set for ``quiet_s`` seconds: the server
    also merges small segments on its own (its trigger runs about once a minute, so the manual
    compaction may find them already taken and return at once), and it serves the old segments
    until the merged one is indexed and loaded. Measuring before that measures the server's
    merge and index rebuild, which use both cores. A store that cannot compact or list its
    segments (Milvus Lite) only waits for the index."""
    deadline = time.monotonic() + timeout_s
    if not wait_for_index(client, name, rows, timeout_s):
        return False
    try:
        job = client.compact(name)
    except MilvusException:
        return True
    while client.get_compaction_state(job) != "Completed":
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)
    settled: frozenset[int] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            current = _serving_segments(client, name)
        except MilvusException:
            return wait_for_index(client, name, rows, deadline - time.monotonic())
        if current is None or current != settled:
            settled, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return True
        time.sleep(2)
    return False
