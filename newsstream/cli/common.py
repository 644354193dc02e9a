"""What every command shares: the consoles, loading the settings, failing with an exit code, and
finding the API of a running `newsstream up`.

Exit codes, the same for every command: 0 done, 1 a dependency or the input failed (the error
is one line on stderr), 2 bad configuration or usage (invalid ``NEWSSTREAM_*`` settings, a
:class:`~core.errors.ConfigurationError`, nothing answering where the settings point).
"""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from core.errors import ConfigurationError
from core.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)


def settings_or_exit(**overrides: object) -> Settings:
    """The settings from ``NEWSSTREAM_*`` variables, with the options that were given (not
    None) on top. Invalid settings print one line per bad variable (what was expected and what
    was found) and exit with code 2."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [
            f"  NEWSSTREAM_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']} "
            f"(found {e.get('input')!r})"
            for e in exc.errors()
        ]
        err_console.print("[red]invalid settings:[/red]\n" + "\n".join(lines))
        raise typer.Exit(2) from None


def fail(exc: Exception) -> typer.Exit:
    """Print ``exc`` as one error line on stderr and return the exit to raise: code 2 for a
    configuration error, 1 for anything else."""
    # soft_wrap: one line whatever the terminal width; escape: the message is text, not markup
    # (it may quote a server or a feed).
    err_console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigurationError) else 1)


def running_api(settings: Settings) -> str | None:
    """The API URL of the `newsstream up` running with this data dir, if any."""
    from newsstream.stack.up_marker import running_up

    running = running_up(settings.data_dir)
    return running.api if running is not None else None


def with_running_milvus(settings: Settings) -> Settings:
    """``settings`` with the Milvus URI of the `newsstream up` running with the same data dir
    when the settings leave it unset; exits with code 2 and a message when there is none."""
    from newsstream.stack.up_marker import running_up

    if settings.milvus_uri:
        return settings
    running = running_up(settings.data_dir)
    if running is None or not running.milvus_uri:
        raise fail(
            ConfigurationError(
                "no Milvus address: NEWSSTREAM_MILVUS_URI is not set and no `newsstream up` is "
                f"running with data dir {settings.data_dir.resolve()}; expected a Milvus URI "
                "such as http://127.0.0.1:19530"
            )
        )
    return settings.model_copy(update={"milvus_uri": running.milvus_uri})
