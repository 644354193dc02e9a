"""The retention soak's schedule (dates spread over the days, in order, ending at "now"), its
summary once the window is full, and its chart (one line per series, well-formed SVG)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from newsstream.bench.retention import soak_chart, soak_days, soak_summary
from producers.retention import DAY_S

END = 1_800_000_000


def test_publish_dates_spread_over_the_days_in_order_ending_at_now() -> None:
    texts = [(str(n), f"title {n}", f"text {n}") for n in range(40)]
    days = soak_days(texts, days=6, per_day=5, end=END)
    dates = [a.published_at or 0 for day in days for a in day]
    assert [len(day) for day in days] == [5] * 6
    assert dates == sorted(dates) and dates[-1] == END
    assert END - dates[0] < 6 * DAY_S
    for number, day in enumerate(days):  # each day's articles fall inside that day
        start = END - (6 - number) * DAY_S
        assert all(start < (a.published_at or 0) <= start + DAY_S for a in day)
    assert len({a.id for day in days for a in day}) == 30
    with pytest.raises(ValueError, match="need 35 texts"):
        soak_days(texts[:30], days=7, per_day=5, end=END)


def _row(day: int, rows: int, rss: float) -> dict[str, float]:
    return {
        "day": day,
        "fed": day * 10,
        "rows": rows,
        "worker_rss_mb": rss,
        "dedup_entries": rows,
        "milvus_rss_mb": 300.0,
    }


def test_the_summary_and_chart_cover_the_days_after_the_window_filled() -> None:
    rows = [_row(d, min(d, 3) * 10, 500.0 + d) for d in range(1, 7)]
    summary = soak_summary(rows, retention_days=3)
    assert (summary["rows_min"], summary["rows_max"]) == (30, 30)
    assert summary["worker_rss_mb_first_full_day"] == 504.0
    assert summary["worker_rss_mb_last_day"] == 506.0
    result = {
        "days": 6,
        "per_day": 10,
        "retention_days": 3,
        "embedding_backend": "torch",
        "per_day_rows": rows,
    }
    svg = ET.fromstring(soak_chart(result))
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 5
    assert all(len(line.get("points", "").split()) == 6 for line in lines)
