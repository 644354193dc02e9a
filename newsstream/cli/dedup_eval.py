"""``newsstream eval dedup`` (dedup and quality-gate evaluation) and
``newsstream rejects`` (the sample of items the quality gate rejected).

The evaluation logic lives in :mod:`newsstream.evals.dedup`; this module only parses options
and prints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from consumers.rejects import RejectSample, rejects_path
from core.metrics import RejectReason
from newsstream.cli.common import console, err_console, settings_or_exit
from newsstream.cli.eval_group import (
    DEFAULT_DATA,
    DataOption,
    OutputOption,
    attach,
    eval_app,
    require_eval_data,
)


def eval_dedup(
    data: DataOption = DEFAULT_DATA,
    output: OutputOption = None,
) -> None:
    """Precision and recall of exact and near-duplicate detection; quality-gate rejections."""
    from dedup.index import IndexParams
    from newsstream.evals.dedup import print_eval, run_eval

    require_eval_data(data, "eval/bbc-news")
    results = run_eval(data, IndexParams(), console=console)
    print_eval(results, console)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=1), encoding="utf-8")
        console.print(f"results written to {output}")


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def rejects(
    reason: Annotated[
        str | None,
        typer.Option(
            help=f"Only this reason: {', '.join(r.value for r in RejectReason if r is not RejectReason.NONE)}."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many items.")] = 50,
) -> None:
    """List the recent sample of items the quality gate rejected, newest first."""

    valid = {r.value for r in RejectReason} - {RejectReason.NONE.value}
    if reason is not None and reason not in valid:
        err_console.print(
            f"[red]error:[/red] unknown reason {reason!r}; expected one of {sorted(valid)}"
        )
        raise typer.Exit(2)
    path = rejects_path(settings_or_exit().data_dir)
    if not path.exists():
        console.print(f"no rejected items recorded yet ({path} does not exist)")
        return
    sample = RejectSample(path)
    try:
        items = sample.items(reason=reason, limit=limit)
    finally:
        sample.close()
    if not items:
        console.print("no rejected items" + (f" with reason {reason}" if reason else ""))
        return
    table = Table(title=f"Rejected items ({len(items)} newest)")
    for column in ("when", "reason", "id", "title", "url", "text"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(
            _when(item.rejected_at),
            item.reason,
            item.article_id,
            item.title,
            item.url,
            item.head[:120],
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``eval dedup`` (through the shared ``eval`` group) and ``rejects`` to ``app``."""
    attach(app)
    eval_app.command("dedup")(eval_dedup)
    app.command("rejects")(rejects)
