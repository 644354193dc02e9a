"""The `newsstream` command line: the one place that composes the services.

Each command group lives in its own module of :mod:`newsstream.cli`, which exposes
``register(app)``; :data:`GROUPS` lists them in the order ``--help`` shows them. :func:`main` is
the console script's entry point (``python -m newsstream`` runs it too).
"""

from __future__ import annotations

import sys
import time
from types import ModuleType

import typer

from newsstream.cli import (
    admin,
    bench,
    dedup_eval,
    explain,
    feeds,
    ledger,
    model,
    ops,
    reindex,
    retention,
    search,
    search_eval,
    services,
    stories,
    story_eval,
    trends,
)
from newsstream.cli.common import err_console

#: Modules that add commands to the CLI, in the order of ``--help``.
GROUPS: tuple[ModuleType, ...] = (
    services,
    search,
    feeds,
    dedup_eval,
    story_eval,
    stories,
    admin,
    search_eval,
    bench,
    trends,
    ops,
    explain,
    ledger,
    retention,
    model,
    reindex,
)

#: Packages the container image leaves out (see .dockerignore): the commands that need them say
#: so instead of failing with a traceback.
LEFT_OUT_OF_IMAGE = ("newsstream.bench", "newsstream.evals")

app = typer.Typer(
    help="News feeds to a live semantic search index.",
    no_args_is_help=True,
    add_completion=False,
)
for group in GROUPS:
    group.register(app)


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print(f"interrupted after {time.monotonic() - started:.1f} s")
        sys.exit(130)
    except ModuleNotFoundError as exc:
        left_out = [p for p in LEFT_OUT_OF_IMAGE if (exc.name or "").startswith(p)]
        if not left_out:
            raise
        err_console.print(
            f"[red]error:[/red] {left_out[0]} is not installed here: the container image leaves "
            "the benchmarks and evaluations out; run them from a source checkout "
            "(`pip install -e .`)",
            soft_wrap=True,
        )
        sys.exit(2)
