"""The ``newsstream eval`` command group, shared by every evaluation command module.

Modules call :func:`attach` from their ``register(app)``, then add their commands to
:data:`eval_app` (``eval_app.command("dedup")(eval_dedup)``), so the commands follow the order
of registration; ``attach`` adds the group to the CLI once, however many modules call it.
"""

from __future__ import annotations

import typer

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
