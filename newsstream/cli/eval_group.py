"""The ``newsstream eval`` command group, shared by every evaluation command module.

Modules call :func:`attach` from their ``register(app)``, then add their commands to
:data:`eval_app` (``eval_app.command("dedup")(eval_dedup)``), so the commands follow the order
of registration; ``attach`` adds the group to the CLI once, however many modules call it.
The evaluations that read the shared data take it through :data:`DataOption` and check it with
:func:`require_eval_data` before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsstream.cli.common import err_console

#: The shared data beside the project checkout (see ../shared/data/README.md).
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

DataOption = Annotated[
    Path, typer.Option(help="The shared data directory (holds eval/ and feeds/).")
]
OutputOption = Annotated[
    Path | None, typer.Option(help="Write the full results as JSON to this file.")
]

eval_app = typer.Typer(
    help="Measure quality against the shared evaluation data.", no_args_is_help=True
)

_ATTACHED = "_newsstream_eval_attached"


def attach(app: typer.Typer) -> None:
    """Add :data:`eval_app` to ``app`` as ``eval`` (idempotent)."""
    if getattr(app, _ATTACHED, False):
        return
    app.add_typer(eval_app, name="eval")
    setattr(app, _ATTACHED, True)


def require_eval_data(data: Path, *needed: str) -> None:
    """Return when every path of ``needed`` (relative to ``data``) exists; else print one line
    naming the first one missing and exit with code 2 (the data is configuration)."""
    for path in needed:
        if not (data / path).exists():
            err_console.print(f"[red]error:[/red] no evaluation data at {data} (expected {path})")
            raise typer.Exit(2)
