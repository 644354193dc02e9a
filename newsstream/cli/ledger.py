"""``newsstream backfill-ledger``: a ledger record for every stored row that has none.

Rows written before the ledger existed (or restored from a backup) have no record, so
``explain`` cannot answer for them and ``reconcile`` cannot check them; this command gives each
the ``indexed`` record a worker would have written (:mod:`newsstream.ops.ledger_backfill`).

Exit codes: 0 done, 1 a dependency failed (what was acknowledged stays; run it again), 2 bad
configuration.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from core.errors import NewsstreamError
from newsstream.cli.common import console, fail, settings_or_exit
from newsstream.cli.ops import _addresses, _progress


def register(app: typer.Typer) -> None:
    """Add ``backfill-ledger`` to ``app``."""

    @app.command("backfill-ledger")
    def backfill_ledger(
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Count the rows without a record; write none.")
        ] = False,
        grace_minutes: Annotated[
            float,
            typer.Option(
                min=0,
                help="Leave rows written less than this long ago to their worker's own record.",
            ),
        ] = 10.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Record `indexed` in the ledger for every stored row it has no record of."""
        from newsstream.ops.ledger_backfill import backfill

        settings = _addresses(settings_or_exit(), milvus=True)
        phases = {
            "read": "ids with a ledger record",
            "scanned": "rows read from Milvus",
            "written": "records written (acknowledged)",
        }
        try:
            with _progress(not as_json, phases) as advance:
                report = backfill(
                    settings, dry_run=dry_run, grace_s=grace_minutes * 60, progress=advance
                )
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            print(json.dumps(asdict(report), indent=2))
            return
        table = Table(title=f"{settings.milvus_collection} against {settings.kafka_ledger_topic}")
        table.add_column("")
        table.add_column("count", justify="right")
        table.add_row("ids with a ledger record", str(report.ledger_ids))
        table.add_row("rows in Milvus", str(report.rows_scanned))
        table.add_row("rows without a record", str(report.unrecorded))
        table.add_row("left to their worker (written within the grace)", str(report.too_young))
        if report.recorded_meanwhile:
            table.add_row("left out: recorded meanwhile", str(report.recorded_meanwhile))
        table.add_row(
            "would be recorded" if dry_run else "recorded `indexed`",
            str(report.unrecorded if dry_run else report.written),
        )
        console.print(table)
