"""``newsstream retention``: delete articles older than their feed's retention window.

- ``newsstream retention sweep [--dry-run] [--json]``: one sweep now
  (:mod:`newsstream.ops.retention`): the expired ids of each window, and their tombstones
  (reason ``expired``) acknowledged by the broker; with ``--dry-run`` only counted.
- ``newsstream retention run``: a sweep every ``NEWSSTREAM_RETENTION_SWEEP_S`` until stopped
  (``newsstream up`` runs it), the first one a minute after start.

Windows: ``NEWSSTREAM_RETENTION_DAYS`` for every feed, a feed's own window from
``newsstream feeds update --retention-days``. Addresses as for ``reconcile``: from the settings,
else from the `newsstream up` running with the same data dir. Exit codes: 0 done, 1 Kafka or
Milvus failed (what was acknowledged is deleted; a second run continues), 2 bad configuration.
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from core.errors import NewsstreamError
from newsstream.cli.common import console, fail, settings_or_exit
from newsstream.cli.logs import configure_logging
from newsstream.cli.ops import _addresses, _progress


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def register(app: typer.Typer) -> None:
    """Add the ``retention`` command group to ``app``."""
    retention = typer.Typer(
        help="Delete articles older than their feed's retention window.", no_args_is_help=True
    )

    @retention.command("sweep")
    def sweep(
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Count the expired articles; delete nothing.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Tombstone every article older than its feed's window (the worker deletes them)."""
        from newsstream.ops.retention import sweep as run_sweep

        settings = _addresses(settings_or_exit(), milvus=True)
        phases = {"found": "expired articles found", "sent": "tombstones acknowledged"}
        try:
            with _progress(not as_json, phases) as advance:

                def progress(event: str, n: int) -> None:
                    if event in phases:
                        advance(event, n)

                report = run_sweep(settings, dry_run=dry_run, progress=progress)
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            print(json.dumps(report.as_json(), indent=2))
            return
        if not report.windows:
            console.print(
                "retention is off: NEWSSTREAM_RETENTION_DAYS is 0 and no feed has a window of "
                "its own (`newsstream feeds update URL --retention-days N`)"
            )
            return
        table = Table(title=f"retention sweep at {_when(report.now)} UTC")
        for column in ("window", "feeds", "expired before", "expired"):
            table.add_column(column)
        table.add_column("would delete" if dry_run else "tombstones", justify="right")
        for window in report.windows:
            table.add_row(
                f"{window.days} d",
                window.feeds,
                _when(window.cutoff),
                str(window.expired),
                str(window.expired if dry_run else window.tombstones),
            )
        console.print(table)
        if report.skipped_recent:
            console.print(f"{report.skipped_recent} expired ids were tombstoned moments ago")

    @retention.command("run")
    def run() -> None:
        """Sweep every NEWSSTREAM_RETENTION_SWEEP_S seconds until SIGTERM or Ctrl-C."""
        from newsstream.ops.retention import run_sweeps

        settings = settings_or_exit()
        configure_logging(settings, "retention")
        stop = threading.Event()

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        run_sweeps(settings, stop)

    app.add_typer(retention, name="retention")
