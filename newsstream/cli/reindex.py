"""``newsstream reindex``: rebuild the collection from its stored rows and swap it in.

- ``newsstream reindex [--model M] [--backend B]``: build ``<name>_v<N>`` from the rows stored
  now (see :mod:`store.reindex`), with a progress bar and ETA, then swap the alias
  ``<name>`` to it; workers keep indexing into both meanwhile. Vectors come from the embedding
  cache under ``<data dir>/embed-cache`` when the same text was embedded by the same model
  before (a re-run, or a retry after a rollback, embeds nothing again).
- ``newsstream reindex --rollback``: serve the previous collection again (kept current).
- ``newsstream reindex --drop-old``: drop the collection kept for a rollback.
- ``newsstream reindex --status``: what the name serves, and what it mirrors into.

Each change is recorded in the audit (action ``reindex``) before it is made. The Milvus address
comes from the settings, else from the `newsstream up` running with the same data dir. Exit
codes: 0 done, 1 Milvus or the broker failed, 2 bad configuration.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from core.errors import NewsstreamError
from core.settings import Settings
from newsstream.cli.common import (
    console,
    err_console,
    fail,
    settings_or_exit,
    with_running_milvus,
)


def register(app: typer.Typer) -> None:
    """Add the ``reindex`` command to ``app``."""

    @app.command("reindex")
    def reindex(
        model: Annotated[
            str | None, typer.Option("--model", help="Embedding model of the new collection.")
        ] = None,
        backend: Annotated[
            str | None,
            typer.Option("--backend", help="Embedding backend: torch, onnx-int8, openvino-int8."),
        ] = None,
        rollback: Annotated[
            bool, typer.Option("--rollback", help="Serve the previous collection again.")
        ] = False,
        drop_old: Annotated[
            bool, typer.Option("--drop-old", help="Drop the collection kept for a rollback.")
        ] = False,
        show: Annotated[bool, typer.Option("--status", help="Show what is served.")] = False,
        reason: Annotated[str | None, typer.Option("--reason", help="Why, for the audit.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Rebuild the collection from its stored rows and swap it in without downtime."""
        from store import reindex as ops
        from store.client import milvus_client

        overrides: dict[str, Any] = {}
        if model:
            overrides["embedding_model"] = model
        if backend:
            overrides["embedding_backend"] = backend
        settings = with_running_milvus(settings_or_exit(**overrides))
        try:
            client = milvus_client(settings)
            name = settings.milvus_collection
            if show:
                _print(ops.status(client, name), as_json)
                return
            action = "rollback" if rollback else "drop-old" if drop_old else "build"
            details: dict[str, Any] = {"step": action}
            if action == "build":
                details.update(model=settings.embedding_model, backend=settings.embedding_backend)
            _audit(settings, name, reason, details)
            if rollback:
                _print({"serving": ops.rollback(client, name)}, as_json)
            elif drop_old:
                _print({"dropped": ops.drop_old(client, settings)}, as_json)
            else:
                _print(_build(settings, client).to_json(), as_json)
        except NewsstreamError as exc:
            raise fail(exc) from None


def _audit(settings: Settings, name: str, reason: str | None, details: dict[str, Any]) -> None:
    from newsstream.ops.operator_audit import UNRECORDED_NOTE, cli_audit, cli_identity

    with cli_audit(settings) as audit:
        if audit is None:
            err_console.print(UNRECORDED_NOTE)
        else:
            audit.record("reindex", name, cli_identity(), reason, details)


def _build(settings: Settings, client: Any) -> Any:
    """Run a reindex with a progress bar and ETA on stderr."""
    from embedding.embedder import Embedder
    from store.embed_cache import EmbeddingCache
    from store.reindex import Reindexer, ReindexProgress, embedding_cache_path

    embedder = Embedder(settings)
    cache = EmbeddingCache(embedding_cache_path(settings))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task("preparing", total=None)

        def show(progress: ReindexProgress) -> None:
            label = f"{progress.phase} {progress.target}"
            bar.update(task, description=label, completed=progress.done, total=progress.total)

        try:
            return Reindexer(settings, client, embedder, cache, on_progress=show).run()
        finally:
            cache.close()


def _print(value: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(value))
        return
    for key, item in value.items():
        console.print(f"{key}: {item}")
