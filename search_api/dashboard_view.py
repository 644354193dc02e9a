"""The dashboard's pure computations: ingest rate from samples, quantiles, rankings, feed health.

What goes in: status snapshots (``core.status.read_status``), Prometheus histogram samples and
Milvus rows, as plain values. What comes out: JSON-ready values for ``GET /dashboard/data``.
No I/O here; :mod:`search_api.dashboard` gathers the inputs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.metrics import Outcome

OUTCOMES = tuple(o.value for o in Outcome)
#: Feed rows sent to the page at most (failing feeds first); the counts cover every feed.
MAX_FEED_ROWS = 40
MAX_ERROR_CHARS = 200
MAX_LABEL_CHARS = 300


@dataclass(frozen=True)
class Sample:
    """Worker totals as of ``t`` (epoch s: the newest ``at`` among the worker snapshots)."""

    t: float
    consumed: int
    indexed: int
    duplicate: int
    rejected: int
    dlq: int
    deleted: int = 0
    expired: int = 0


def worker_totals(workers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Sums of the workers' cumulative counters, and the rejections by reason."""
    total: dict[str, Any] = {"consumed": 0, **{o: 0 for o in OUTCOMES}}
    reasons: Counter[str] = Counter()
    for snapshot in workers.values():
        total["consumed"] += _int(snapshot.get("consumed"))
        for outcome in OUTCOMES:
            total[outcome] += _int(snapshot.get(outcome))
        for reason, count in (snapshot.get("rejected_by_reason") or {}).items():
            reasons[str(reason)] += _int(count)
    total["rejected_by_reason"] = dict(reasons.most_common())
    total["in_flight"] = total["consumed"] - sum(total[o] for o in OUTCOMES)
    total["workers"] = len(workers)
    return total


def sample_from_workers(workers: Mapping[str, Mapping[str, Any]]) -> Sample | None:
    """One sample of the totals, timed by the newest snapshot (``None`` without snapshots)."""
    times = [float(s["at"]) for s in workers.values() if isinstance(s.get("at"), int | float)]
    if not times:
        return None
    total = worker_totals(workers)
    return Sample(t=max(times), **{k: total[k] for k in ("consumed", *OUTCOMES)})


def rate_series(samples: Sequence[Sample], field: str = "indexed") -> list[list[float]]:
    """``[[t, per_second], ...]`` between successive samples of ``field``.

    Samples with the same or an older time than the previous one are skipped (the workers
    publish every few seconds; the dashboard samples more often). A decrease (a broker that
    lost its status topic) counts as zero rather than a negative rate.
    """
    series: list[list[float]] = []
    previous: Sample | None = None
    for sample in samples:
        if previous is not None and sample.t <= previous.t:
            continue
        if previous is not None:
            delta = getattr(sample, field) - getattr(previous, field)
            series.append([sample.t, max(0, delta) / (sample.t - previous.t)])
        previous = sample
    return series


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper_bound, count), ...]``.

    Linear interpolation inside the bucket, as Prometheus' ``histogram_quantile`` does; a
    quantile in the ``+Inf`` bucket answers the highest finite bound. ``None`` without data.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def latency_summary(bucket_samples: Iterable[tuple[Mapping[str, str], float]]) -> dict[str, Any]:
    """p50, p95 and count from the ``_bucket`` samples of a histogram, summed over labels."""
    by_bound: dict[float, float] = {}
    for labels, value in bucket_samples:
        bound = float(labels["le"])
        by_bound[bound] = by_bound.get(bound, 0.0) + value
    buckets = sorted(by_bound.items())
    count = int(buckets[-1][1]) if buckets else 0
    return {
        "p50_s": histogram_quantile(0.5, buckets),
        "p95_s": histogram_quantile(0.95, buckets),
        "count": count,
    }


def tts_summary(workers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Time-to-searchable over the workers that report it, else ``None``.

    A worker reports ``tts_p50_s``, ``tts_p95_s`` and ``tts_samples`` (its recent articles;
    a nested ``"tts": {"p50_s", "p95_s", "n"}`` is accepted too). Across workers, p50 is the
    mean weighted by the sample count (an approximation) and p95 the largest (the
    conservative choice for an alert-like figure).
    """
    reports = []
    for snapshot in workers.values():
        nested = snapshot.get("tts")
        tts: Mapping[str, Any] = (
            nested
            if isinstance(nested, Mapping)
            else {
                "p50_s": snapshot.get("tts_p50_s"),
                "p95_s": snapshot.get("tts_p95_s"),
                "n": snapshot.get("tts_samples"),
            }
        )
        if _is_number(tts.get("p50_s")) and _is_number(tts.get("p95_s")):
            reports.append((float(tts["p50_s"]), float(tts["p95_s"]), max(1, _int(tts.get("n")))))
    if not reports:
        return None
    n = sum(r[2] for r in reports)
    return {
        "p50_s": sum(r[0] * r[2] for r in reports) / n,
        "p95_s": max(r[1] for r in reports),
        "n": n,
    }


def count_sources(rows: Iterable[Mapping[str, Any]], top: int = 10) -> list[list[Any]]:
    """``[[source, rows], ...]``, most rows first (ties by name), at most ``top``."""
    counts = Counter(str(r.get("source") or "unknown") for r in rows)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [[source, n] for source, n in ranked[:top]]


def ranked_items(items: Any, limit: int = 10) -> list[dict[str, Any]]:
    """Trend entries of any shape as ``{"label", "value", "url"}``.

    Accepts ``[label, value]`` pairs, plain strings and dicts (``title``/``query``/``label``/
    ``story_id`` for the label, ``count``/``n``/``score``/``articles`` for the value, ``url``).
    """
    out: list[dict[str, Any]] = []
    if not isinstance(items, list | tuple):
        return out
    for item in items[:limit]:
        label: Any = None
        value: Any = None
        url: Any = None
        if isinstance(item, list | tuple) and item:
            label = item[0]
            value = item[1] if len(item) > 1 else None
        elif isinstance(item, Mapping):
            label = _first(item, ("title", "query", "label", "story_id", "id"))
            value = _first(item, ("count", "n", "source_count", "articles", "score", "growth"))
            url = item.get("url")
        elif isinstance(item, str):
            label = item
        if label is None:
            continue
        out.append(
            {
                "label": str(label)[:MAX_LABEL_CHARS],
                "value": value if _is_number(value) else None,
                "url": url if isinstance(url, str) else None,
            }
        )
    return out


def trends_view(trends: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per window (``1h``, ``24h``, ...): top queries, rising queries and top stories."""
    view: dict[str, Any] = {}
    for window, body in sorted(trends.items(), key=lambda kv: _window_seconds(kv[0])):
        if not isinstance(body, Mapping):
            continue
        view[window] = {
            "top_queries": ranked_items(body.get("top_queries")),
            "rising_queries": ranked_items(body.get("rising_queries")),
            "top_stories": ranked_items(body.get("top_stories")),
            "searches": body.get("searches") if _is_number(body.get("searches")) else None,
            "at": body.get("at"),
        }
    return view


def feed_health(feeds: Mapping[str, Mapping[str, Any]], now: float) -> dict[str, Any]:
    """Counts of healthy and failing feeds and the rows to show (failing first)."""
    rows: list[dict[str, Any]] = []
    for feed_id, status in feeds.items():
        streak = _int(status.get("error_streak"))
        error = status.get("last_error")
        rows.append(
            {
                "id": str(feed_id),
                "name": str(status.get("name") or status.get("url") or feed_id)[:MAX_LABEL_CHARS],
                "url": str(status.get("url") or ""),
                "last_result": str(status.get("last_result") or "unknown"),
                "last_error": str(error)[:MAX_ERROR_CHARS] if error else None,
                "items": _int(status.get("items")),
                "error_streak": streak,
                "last_fetch_ago_s": _ago(status.get("last_fetch_at"), now),
                "next_poll_in_s": _until(status.get("next_poll_at"), now),
            }
        )
    rows.sort(key=lambda r: (-r["error_streak"], r["name"].lower()))
    failing = sum(1 for r in rows if r["error_streak"] > 0)
    return {
        "total": len(rows),
        "failing": failing,
        "healthy": len(rows) - failing,
        "rows": rows[:MAX_FEED_ROWS],
    }


def _first(item: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if item.get(key) is not None:
            return item[key]
    return None


def _window_seconds(window: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(window[:-1]) * units[window[-1]]
    except (ValueError, KeyError, IndexError):
        return math.inf


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> int:
    return int(value) if _is_number(value) else 0


def _ago(at: Any, now: float) -> float | None:
    return max(0.0, now - float(at)) if _is_number(at) else None


def _until(at: Any, now: float) -> float | None:
    return float(at) - now if _is_number(at) else None
