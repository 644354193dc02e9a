"""Test probes: wait for the worker group to catch up, count rows in Milvus, bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from pymilvus import MilvusClient

from core.errors import TransientError
from core.kafka import group_lag
from core.settings import Settings

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.5
) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def total_lag(settings: Settings) -> int | None:
    try:
        lag = group_lag(settings)
    except TransientError:
        return None
    return sum(lag.values()) if lag else None


def wait_for_lag_zero(settings: Settings, timeout_s: float = 120) -> None:
    wait_until(lambda: total_lag(settings) == 0, timeout_s, "the worker group to reach lag 0")


def milvus_count(settings: Settings) -> int:
    """Rows in the test collection at Strong consistency."""
    client = MilvusClient(uri=settings.milvus_uri or "")
    try:
        if not client.has_collection(settings.milvus_collection):
            return 0
        rows = client.query(
            settings.milvus_collection,
            filter="",
            output_fields=["count(*)"],
            consistency_level="Strong",
        )
        return int(rows[0]["count(*)"])
    finally:
        client.close()


def milvus_ids(settings: Settings) -> set[str]:
    """Every id in the test collection at Strong consistency."""
    client = MilvusClient(uri=settings.milvus_uri or "")
    try:
        ids: set[str] = set()
        iterator = client.query_iterator(
            settings.milvus_collection,
            batch_size=1000,
            filter="",
            output_fields=["id"],
            consistency_level="Strong",
        )
        while True:
            batch = iterator.next()
            if not batch:
                iterator.close()
                break
            ids.update(row["id"] for row in batch)
        return ids
    finally:
        client.close()
