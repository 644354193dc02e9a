"""Outcome counters of the workers, per worker and in total, with the conservation check.

What goes in: the worker status snapshots of :func:`core.status.read_status` (the newest per
worker id; cumulative since that worker process started). What comes out: one
:class:`WorkerCounts` per worker plus a total, as a rich table or JSON.

The conservation check: ``consumed == indexed + duplicate + rejected + dlq + deleted + expired``.
A stopped worker's last snapshot must balance. A running worker's snapshot is up to a few seconds
old and may be taken while a batch is in flight (consumed, outcome not yet known); that
difference is shown as "in flight", never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.table import Table


@dataclass(frozen=True)
class WorkerCounts:
    """One worker's counters (or the total over workers)."""

    worker: str
    consumed: int = 0
    indexed: int = 0
    duplicate: int = 0
    rejected: int = 0
    dlq: int = 0
    deleted: int = 0
    expired: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    at: float | None = None

    @property
    def outcomes(self) -> int:
        """Messages that reached an outcome."""
        return (
            self.indexed + self.duplicate + self.rejected + self.dlq + self.deleted + self.expired
        )

    @property
    def in_flight(self) -> int:
        """Consumed minus outcomes: 0 when the conservation check holds."""
        return self.consumed - self.outcomes

    @property
    def balanced(self) -> bool:
        return self.in_flight == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "consumed": self.consumed,
            "indexed": self.indexed,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "dlq": self.dlq,
            "deleted": self.deleted,
            "expired": self.expired,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "at": self.at,
            "balanced": self.balanced,
            "in_flight": self.in_flight,
        }


def _int(snapshot: dict[str, Any], name: str) -> int:
    value = snapshot.get(name, 0)
    return int(value) if isinstance(value, int | float) else 0


def worker_counts(snapshots: dict[str, dict[str, Any]]) -> list[WorkerCounts]:
    """One :class:`WorkerCounts` per snapshot, sorted by worker id."""
    rows = []
    for worker, snapshot in sorted(snapshots.items()):
        reasons = snapshot.get("rejected_by_reason") or {}
        rows.append(
            WorkerCounts(
                worker=worker,
                consumed=_int(snapshot, "consumed"),
                indexed=_int(snapshot, "indexed"),
                duplicate=_int(snapshot, "duplicate"),
                rejected=_int(snapshot, "rejected"),
                dlq=_int(snapshot, "dlq"),
                deleted=_int(snapshot, "deleted"),
                expired=_int(snapshot, "expired"),
                rejected_by_reason={str(k): int(v) for k, v in reasons.items()},
                at=float(snapshot["at"]) if isinstance(snapshot.get("at"), int | float) else None,
            )
        )
    return rows


def total(rows: list[WorkerCounts]) -> WorkerCounts:
    """The sum over workers (snapshots are cumulative per process, so sums are totals)."""
    reasons: dict[str, int] = {}
    for row in rows:
        for reason, count in row.rejected_by_reason.items():
            reasons[reason] = reasons.get(reason, 0) + count
    return WorkerCounts(
        worker="total",
        consumed=sum(r.consumed for r in rows),
        indexed=sum(r.indexed for r in rows),
        duplicate=sum(r.duplicate for r in rows),
        rejected=sum(r.rejected for r in rows),
        dlq=sum(r.dlq for r in rows),
        deleted=sum(r.deleted for r in rows),
        expired=sum(r.expired for r in rows),
        rejected_by_reason=reasons,
        at=max((r.at for r in rows if r.at is not None), default=None),
    )


def stats_json(rows: list[WorkerCounts]) -> dict[str, Any]:
    """``{"workers": [...], "total": {...}}``."""
    return {"workers": [r.as_json() for r in rows], "total": total(rows).as_json()}


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%H:%M:%S") if stamp else "-"


def _check(row: WorkerCounts) -> str:
    if row.balanced:
        return "[green]ok[/green]"
    if row.in_flight > 0:
        return f"[yellow]{row.in_flight} in flight[/yellow]"
    return f"[red]{-row.in_flight} outcomes too many[/red]"


def stats_table(rows: list[WorkerCounts]) -> Table:
    """A rich table: one line per worker, the total last. The deleted and expired columns show
    only when some worker has applied a delete (most indexes never do; the table stays narrow)."""
    all_rows = [*rows, total(rows)]
    outcomes = ["indexed", "duplicate", "rejected", "dlq"]
    outcomes += [name for name in ("deleted", "expired") if any(getattr(r, name) for r in all_rows)]
    table = Table(title=f"worker outcomes (consumed = {' + '.join(outcomes)})")
    for column in ("worker", "consumed", *outcomes):
        table.add_column(column, justify="left" if column == "worker" else "right")
    table.add_column("rejected by reason", overflow="fold")
    table.add_column("check")
    table.add_column("snapshot (UTC)")
    for row in all_rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(row.rejected_by_reason.items()))
        table.add_row(
            f"[bold]{row.worker}[/bold]" if row.worker == "total" else row.worker,
            str(row.consumed),
            *(str(getattr(row, name)) for name in outcomes),
            reasons or "-",
            _check(row),
            _when(row.at),
        )
    return table
