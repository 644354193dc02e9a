"""``GET /stats``: the workers' outcome counters, per worker and in total.

What goes in: the latest status snapshot of each worker (``core.status.read_status``). What comes
out: ``{"total": {...}, "workers": [...], "conservation_ok": bool}``, where a worker's counters
add up when ``consumed`` equals the sum of the outcomes of :class:`core.metrics.Outcome`
(indexed, duplicate, rejected, dlq, deleted, expired; it can differ by the batch in
flight at the moment of the snapshot).
"""

from __future__ import annotations

from typing import Any

from core.metrics import Outcome

#: Every outcome a consumed message can end in, in the order the API lists them.
OUTCOMES = tuple(o.value for o in Outcome)


def stats_response(workers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over workers, each worker's counters, and the conservation check."""
    total: dict[str, Any] = {"consumed": 0, **{o: 0 for o in OUTCOMES}, "rejected_by_reason": {}}
    rows: list[dict[str, Any]] = []
    for worker_id, snapshot in sorted(workers.items()):
        row: dict[str, Any] = {"worker": worker_id, "consumed": int(snapshot.get("consumed", 0))}
        for outcome in OUTCOMES:
            row[outcome] = int(snapshot.get(outcome, 0))
            total[outcome] += row[outcome]
        total["consumed"] += row["consumed"]
        reasons = snapshot.get("rejected_by_reason") or {}
        row["rejected_by_reason"] = dict(reasons)
        for reason, count in reasons.items():
            total["rejected_by_reason"][reason] = total["rejected_by_reason"].get(reason, 0) + count
        row["at"] = snapshot.get("at")
        row["in_flight"] = row["consumed"] - sum(row[o] for o in OUTCOMES)
        rows.append(row)
    total["in_flight"] = total["consumed"] - sum(total[o] for o in OUTCOMES)
    return {"total": total, "workers": rows, "conservation_ok": total["in_flight"] == 0}
