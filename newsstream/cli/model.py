"""``newsstream model``: which embedding model made the collection's vectors.

- ``newsstream model``: the fingerprint recorded beside the collection
  (``NEWSSTREAM_MILVUS_COLLECTION``; see :mod:`store.fingerprint`): model name, weights hash,
  backend, token limit, dimension, normalisation.
- ``newsstream model --check``: also loads the configured model and says whether workers and the
  API with these settings may use the collection (the rule of :mod:`embedding.fingerprint`).

The Milvus address comes from the settings, else from the `newsstream up` running with the same
data dir. Exit codes: 0 shown (and, with ``--check``, accepted), 1 Milvus unreachable, 2 bad
configuration or, with ``--check``, a model the collection refuses.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from core.errors import NewsstreamError
from newsstream.cli.common import (
    console,
    err_console,
    fail,
    settings_or_exit,
    with_running_milvus,
)

#: Rows of the table, in this order (the JSON form's fields).
FIELDS = ("model", "weights_sha256", "backend", "max_tokens", "dimension", "normalization")


def register(app: typer.Typer) -> None:
    """Add the ``model`` command to ``app``."""

    @app.command("model")
    def model(
        check: Annotated[
            bool,
            typer.Option(
                "--check", help="Load the configured model and say whether it may use it."
            ),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Show the embedding model fingerprint recorded beside the collection."""
        from store.client import milvus_client
        from store.fingerprint import recorded_fingerprint

        settings = with_running_milvus(settings_or_exit())
        collection = settings.milvus_collection
        try:
            client = milvus_client(settings)
            exists = client.has_collection(collection)
            recorded = recorded_fingerprint(client, collection) if exists else None
        except NewsstreamError as exc:
            raise fail(exc) from None
        report: dict[str, Any] = {"collection": collection, "exists": exists, "recorded": recorded}
        reason: str | None = None
        if check:
            from embedding.embedder import Embedder

            try:
                mine = Embedder(settings).fingerprint
            except NewsstreamError as exc:
                raise fail(exc) from None
            report["configured"] = mine.to_json()
            reason = mine.refusal(recorded) if recorded is not None else None
            report["accepted"] = reason is None
            report["reason"] = reason
        if as_json:
            console.print_json(json.dumps(report))
        else:
            _print(report)
        if reason is not None:
            err_console.print(f"[red]refused:[/red] {reason}", soft_wrap=True, markup=True)
            raise typer.Exit(2)


def _print(report: dict[str, Any]) -> None:
    collection = report["collection"]
    recorded = report["recorded"]
    if not report["exists"]:
        console.print(
            f"collection {collection!r} does not exist yet: the first worker or API to open it "
            "records its model"
        )
    elif recorded is None:
        console.print(
            f"collection {collection!r} has no model fingerprint yet (made by an older "
            "version): the next worker or API adopts its model if the rows name it"
        )
    if recorded is None and "configured" not in report:
        return
    # Plain lines, not a table: a 64-digit hash must stay whole on a narrow terminal.
    console.print(f"embedding model of {collection!r}:", soft_wrap=True)
    for field in FIELDS:
        line = f"  {field}: {(recorded or {}).get(field, '-')}"
        if "configured" in report:
            line += f"  (configured here: {report['configured'].get(field, '-')})"
        console.print(line, soft_wrap=True, markup=False)
    if report.get("accepted") and recorded is not None:
        console.print("accepted: workers and the API with these settings may use it")
