"""``GET /trends``: the trends app's latest snapshot of a window, in the API's shape.

Input: the settings and a window name (``1h`` or ``24h``). Output::

    {"window": "1h",
     "top_queries": [{"query", "count"}],
     "rising_queries": [{"query", "count", "previous", "growth"}],
     "top_stories": [{"story_id", "title", "sources": [...], "source_count"}],
     "updated_at": epoch seconds of the snapshot, or None when none was published yet}

The snapshots come from the compacted status topic (kind ``trends``, keys ``1h`` and ``24h``,
published by :mod:`trends.app`). Reading that topic opens a Kafka consumer, so
answers are cached for :data:`CACHE_TTL_S` seconds per status topic: a burst of ``/trends``
requests costs one read. Raises :class:`core.errors.InvalidRequest` for an unknown window and
:class:`core.errors.TransientError` when the broker does not answer.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from core.errors import InvalidRequest
from core.settings import Settings
from core.status import read_status

TREND_WINDOWS = ("1h", "24h")
CACHE_TTL_S = 2.0

_cache_lock = threading.Lock()
_cache: dict[tuple[str, str], tuple[float, dict[str, dict[str, Any]]]] = {}


def _snapshots(settings: Settings) -> dict[str, dict[str, Any]]:
    key = (settings.kafka_bootstrap or "", settings.kafka_status_topic)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
    snapshots = read_status(settings, "trends")
    with _cache_lock:
        _cache[key] = (time.monotonic(), snapshots)
    return snapshots


def _rows(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def trends_response(settings: Settings, window: str) -> dict[str, Any]:
    """The latest trends of ``window`` (empty lists and ``updated_at: None`` before the first
    snapshot)."""
    if window not in TREND_WINDOWS:
        raise InvalidRequest(f"window must be one of {', '.join(TREND_WINDOWS)}; got {window!r}")
    snapshot = _snapshots(settings).get(window)
    if snapshot is None:
        return {
            "window": window,
            "top_queries": [],
            "rising_queries": [],
            "top_stories": [],
            "updated_at": None,
        }
    return {
        "window": window,
        "top_queries": [
            {"query": q.get("query"), "count": q.get("count")}
            for q in _rows(snapshot.get("top_queries"))
        ],
        "rising_queries": [
            {
                "query": r.get("query"),
                "count": r.get("count"),
                "previous": r.get("previous"),
                "growth": r.get("growth"),
            }
            for r in _rows(snapshot.get("rising_queries"))
        ],
        "top_stories": [
            {
                "story_id": s.get("story_id"),
                "title": s.get("title"),
                "sources": _strings(s.get("sources")),
                "source_count": s.get("source_count"),
            }
            for s in _rows(snapshot.get("top_stories"))
        ],
        "updated_at": snapshot.get("at"),
    }
