"""Every outcome of the worker counts in the conservation check of `/stats`, the dashboard and
`newsstream stats`: a worker that applied deletes and expiries still balances."""

from __future__ import annotations

from typing import Any

from core.metrics import Outcome
from newsstream.ops.stats import stats_json, worker_counts
from search_api.dashboard_view import worker_totals
from search_api.stats_view import stats_response

#: A stopped worker's last snapshot: 10 consumed, every one in an outcome.
SNAPSHOT: dict[str, Any] = {
    "consumed": 10,
    "indexed": 4,
    "duplicate": 1,
    "rejected": 1,
    "dlq": 1,
    "deleted": 2,
    "expired": 1,
    "rejected_by_reason": {"too_short": 1},
    "at": 1_700_000_000.0,
}


def test_the_snapshot_covers_every_outcome() -> None:
    """The fixture above must hold every outcome, or the checks below prove nothing."""
    assert {o.value for o in Outcome} <= SNAPSHOT.keys()
    assert sum(SNAPSHOT[o.value] for o in Outcome) == SNAPSHOT["consumed"]


def test_stats_route_counts_deletes_and_expiries() -> None:
    answer = stats_response({"w1": SNAPSHOT})
    assert answer["conservation_ok"]
    assert answer["total"]["deleted"] == 2 and answer["total"]["expired"] == 1
    assert answer["workers"][0]["in_flight"] == 0


def test_dashboard_totals_count_deletes_and_expiries() -> None:
    totals = worker_totals({"w1": SNAPSHOT, "w2": SNAPSHOT})
    assert totals["in_flight"] == 0
    assert totals["deleted"] == 4 and totals["expired"] == 2


def test_stats_command_counts_deletes_and_expiries() -> None:
    result = stats_json(worker_counts({"w1": SNAPSHOT}))
    assert result["total"]["balanced"]
    assert result["total"]["deleted"] == 2 and result["total"]["expired"] == 1


def _rendered(snapshot: dict[str, Any]) -> str:
    from rich.console import Console

    from newsstream.ops.stats import stats_table

    console = Console(width=200, record=True)
    console.print(stats_table(worker_counts({"w1": snapshot})))
    return console.export_text()


def test_the_stats_table_shows_deletes_only_where_there_are_some() -> None:
    with_deletes = _rendered(SNAPSHOT)
    assert "deleted" in with_deletes and "expired" in with_deletes and "ok" in with_deletes
    without = {**SNAPSHOT, "deleted": 0, "expired": 0, "consumed": 7}
    plain = _rendered(without)
    assert "deleted" not in plain and "expired" not in plain and "ok" in plain
