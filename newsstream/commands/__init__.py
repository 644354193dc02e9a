"""CLI command groups beyond the core five; each module exposes ``register(app)``.

``newsstream.cli`` calls ``register`` of every module listed in :data:`MODULES`, so that a
command group lives in its own module and the CLI module stays small.
"""

from __future__ import annotations

import importlib

import typer

#: Modules under newsstream.commands that add commands to the CLI.
MODULES: tuple[str, ...] = (
    "feeds",
    "dedup_eval",
    "story_eval",
    "stories",
    "search_eval",
    "bench",
    "trends",
    "ops",
)


def register_all(app: typer.Typer) -> None:
    """Add every command group of :data:`MODULES` to ``app``."""
    for name in MODULES:
        module = importlib.import_module(f"newsstream.commands.{name}")
        module.register(app)
