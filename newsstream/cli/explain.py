"""``newsstream explain URL|ID``: is this article searchable, and if not, why.

Reads the article's latest record in the ledger (one partition of ``news.ledger``), asks Milvus
whether it holds the row now (Strong) and, where search uses it, the keyword index
(:mod:`newsstream.ops.explain`); prints one plain sentence and the record's times, or JSON with
``--json``. Addresses as for ``reconcile``: from the settings, else from the `newsstream up`
running with the same data dir. Exit codes: 0 answered (searchable or not), 1 the broker or
Milvus failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from core.errors import NewsstreamError
from newsstream.cli.admin import article_target
from newsstream.cli.common import console, fail, settings_or_exit
from newsstream.cli.ops import _addresses


def _when_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def register(app: typer.Typer) -> None:
    """Add ``explain`` to ``app``."""

    @app.command()
    def explain(
        target: Annotated[str, typer.Argument(help="The article's URL or id.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Say whether an article is searchable, and if not, why (from the ledger)."""
        from newsstream.ops.explain import explain as run_explain

        ident = article_target(target)
        settings = _addresses(settings_or_exit(), milvus=True)
        try:
            answer = run_explain(settings, ident)
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            print(json.dumps(answer.as_json(), indent=2))
            return
        console.print(f"{ident}: {escape(answer.sentence)}")
        record = answer.record
        if record is None:
            return
        table = Table(show_header=False, box=None)
        table.add_column("")
        table.add_column("")
        fetched = record.fetched_at * 1000 if record.fetched_at else None
        rows = [
            ("outcome", record.outcome.value),
            ("url", record.url or "-"),
            ("feed", record.feed_id or "-"),
            ("fetched", _when_ms(fetched)),
            ("produced", _when_ms(record.produced_at_ms)),
            ("indexed (Milvus acknowledged)", _when_ms(record.indexed_at_ms)),
            ("visible to Bounded search by (bound)", _when_ms(record.visible_by_ms)),
            ("decided by", f"{record.worker} at {_when_ms(record.decided_at_ms)}"),
        ]
        if record.source is not None:
            source = record.source
            rows.append(("message", f"{source.topic} [{source.partition}] @ {source.offset}"))
        for name, value in rows:
            table.add_row(name, escape(value))
        console.print(table)
