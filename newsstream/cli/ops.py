"""Operator commands: ``stats``, ``dlq list``, ``dlq replay`` and ``reconcile``.

- ``newsstream stats [--json]``: outcome counters per worker and in total, with the
  conservation check (:mod:`newsstream.ops.stats`).
- ``newsstream dlq list [--limit N] [--json]``: the DLQ's messages and their headers.
- ``newsstream dlq replay [--stage S] [--dry-run]``: re-queue DLQ messages after a fix, once
  (:mod:`newsstream.ops.dlq`).
- ``newsstream reconcile [--dry-run] [--json]``: re-queue the articles the ledger says were
  indexed and Milvus lacks (:mod:`newsstream.ops.reconcile`).

Addresses: the broker (and, for ``reconcile``, Milvus) come from the settings; when they leave
one unset, from the `newsstream up` running with the same data dir (:mod:`newsstream.stack.up_marker`).

Exit codes: 0 done, 1 a dependency failed (nothing half-recorded), 2 bad configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import ConfigurationError, NewsstreamError
from core.settings import Settings
from newsstream.cli.common import console, err_console, fail, settings_or_exit

REQUEUE_NOTE = (
    "Only ids whose latest outcome in the ledger is `indexed` are expected in Milvus; "
    "duplicates, rejects, dead letters, deleted and expired ids are never re-queued "
    "(`newsstream explain ID` says why an id is not searchable)."
)


def _addresses(settings: Settings, *, milvus: bool = False) -> Settings:
    """``settings`` with the broker address (and the Milvus URI with ``milvus``) filled from a
    running `up` where the settings leave them unset; a clear error when neither has them."""
    from newsstream.stack.up_marker import running_up

    running = running_up(settings.data_dir)
    found: dict[str, str] = {}
    if running is not None:
        if not settings.kafka_bootstrap and running.kafka_bootstrap:
            found["kafka_bootstrap"] = running.kafka_bootstrap
        if milvus and not settings.milvus_uri and running.milvus_uri:
            found["milvus_uri"] = running.milvus_uri
    resolved = settings.model_copy(update=found)
    where = f"no `newsstream up` is running with data dir {settings.data_dir.resolve()}"
    if not resolved.kafka_bootstrap:
        raise fail(
            ConfigurationError(
                f"no broker address: NEWSSTREAM_KAFKA_BOOTSTRAP is not set and {where}; "
                "expected host:port of the broker the workers use, or `newsstream up` running "
                "with the same NEWSSTREAM_DATA_DIR"
            )
        )
    if milvus and not resolved.milvus_uri:
        raise fail(
            ConfigurationError(
                f"no Milvus address: NEWSSTREAM_MILVUS_URI is not set and {where}; expected a "
                "Milvus URI such as http://127.0.0.1:19530, or `newsstream up` running with "
                "the same NEWSSTREAM_DATA_DIR"
            )
        )
    return resolved


@contextmanager
def _progress(enabled: bool, phases: dict[str, str]) -> Iterator[Callable[[str, int], None]]:
    """A rich progress display with one counter per phase, on stderr (stdout stays clean)."""
    if not enabled:
        yield lambda _phase, _n: None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    tasks = {phase: progress.add_task(label, total=None) for phase, label in phases.items()}
    with progress:
        yield lambda phase, n: progress.advance(tasks[phase], n)


def register(app: typer.Typer) -> None:
    """Add ``stats``, ``dlq`` and ``reconcile`` to ``app``."""
    dlq = typer.Typer(help="Inspect and replay the dead-letter queue.", no_args_is_help=True)
    app.add_typer(dlq, name="dlq")

    @app.command()
    def stats(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Outcome counters per worker and in total, with the conservation check."""
        from core.status import read_status
        from newsstream.ops.stats import stats_json, stats_table, worker_counts

        settings = _addresses(settings_or_exit())
        try:
            rows = worker_counts(read_status(settings, "worker"))
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            print(json.dumps(stats_json(rows), indent=2))
            return
        if not rows:
            console.print(f"no worker has published its status on {settings.kafka_status_topic}")
            return
        console.print(stats_table(rows))
        console.print(
            "A running worker's snapshot is up to 5 s old and may be taken mid-batch "
            "('in flight'); a stopped worker's last snapshot must balance."
        )

    @dlq.command("list")
    def dlq_list(
        limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """DLQ messages with their headers (stage, error, original position)."""
        from newsstream.ops.dlq import read_dlq

        settings = _addresses(settings_or_exit())
        try:
            with _progress(not as_json, {"read": "reading the DLQ"}) as advance:
                entries = read_dlq(settings, progress=advance)
        except NewsstreamError as exc:
            raise fail(exc) from None
        shown = entries[:limit]
        if as_json:
            print(
                json.dumps(
                    {"total": len(entries), "messages": [e.as_json() for e in shown]}, indent=2
                )
            )
            return
        table = Table(title=f"{settings.kafka_dlq_topic}: {len(entries)} messages")
        for column in ("offset", "stage", "error class", "error message", "original", "key"):
            table.add_column(column, overflow="fold")
        for entry in shown:
            original = f"{entry.original_topic}[{entry.original_partition}]@{entry.original_offset}"
            key = entry.key.decode("utf-8", "replace") if entry.key is not None else "-"
            table.add_row(
                f"{entry.partition}:{entry.offset}",
                entry.stage,
                entry.error_class,
                entry.error_message,
                original,
                key,
            )
        console.print(table)
        if len(entries) > len(shown):
            console.print(f"{len(entries) - len(shown)} more; use --limit to see them")

    @dlq.command("replay")
    def dlq_replay(
        stage: Annotated[
            str | None, typer.Option(help="Only messages that failed at this stage.")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Count what would be sent; send nothing.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Re-queue DLQ messages not replayed before to the articles topic (after a fix)."""
        from newsstream.ops.dlq import replay_dlq

        settings = _addresses(settings_or_exit())
        phases = {"read": "reading the DLQ", "sent": "re-queued (acknowledged)"}
        try:
            with _progress(not as_json, phases) as advance:
                report = replay_dlq(settings, stage=stage, dry_run=dry_run, progress=advance)
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            print(json.dumps(report.as_json(), indent=2))
            return
        verb = "would re-queue" if dry_run else "re-queued"
        stages = ", ".join(f"{k} {v}" for k, v in sorted(report.by_stage.items())) or "none"
        console.print(
            f"read {report.read} DLQ messages; {report.already_replayed} replayed before, "
            f"{report.other_stage} of other stages; {verb} {report.replayed} to "
            f"{settings.kafka_topic} (by stage: {stages})"
        )

    @app.command()
    def reconcile(
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Report what is missing; re-queue nothing.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Re-queue the articles the ledger says were indexed and Milvus no longer holds."""
        from newsstream.ops.reconcile import reconcile as run_reconcile

        settings = _addresses(settings_or_exit(), milvus=True)
        phases = {
            "read": "reading the ledger",
            "checked": "ids checked in Milvus",
            "scanned": "latest messages of the missing ids",
            "sent": "re-queued (acknowledged)",
        }
        try:
            with _progress(not as_json, phases) as advance:
                report = run_reconcile(settings, dry_run=dry_run, progress=advance)
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            print(json.dumps({**report.as_json(), "note": REQUEUE_NOTE}, indent=2))
            return
        table = Table(title=f"{settings.kafka_ledger_topic} against {settings.milvus_collection}")
        table.add_column("")
        table.add_column("count", justify="right")
        table.add_row("ledger records read", str(report.ledger_records))
        for outcome, count in sorted(report.by_outcome.items()):
            table.add_row(f"ids whose latest outcome is {outcome}", str(count))
        table.add_row("expected in Milvus (indexed)", str(report.expected))
        table.add_row("in Milvus", str(report.in_milvus))
        table.add_row("missing from Milvus", str(len(report.missing)))
        table.add_row(
            "would be re-queued" if dry_run else "re-queued",
            str(len(report.missing) if dry_run else report.requeued),
        )
        if report.changed_since_scan:
            table.add_row("left out: deleted or changed meanwhile", str(report.changed_since_scan))
        if report.not_in_topic:
            table.add_row(
                "left out: no longer on the articles topic (retention)",
                str(len(report.not_in_topic)),
            )
        if report.unreadable:
            table.add_row("ledger records of an unknown version", str(report.unreadable))
        console.print(table)
        console.print(REQUEUE_NOTE)
