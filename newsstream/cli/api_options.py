"""What the commands that call a running API share: the ``--api``, ``--api-key`` and ``--json``
options, the base URL they resolve to, and how an article's time is printed.

Where the API is: ``--api`` when given, else the API of the `newsstream up` running with the
same data dir, else ``NEWSSTREAM_API_HOST``/``PORT``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from newsstream.cli.common import running_api, settings_or_exit

ApiOption = Annotated[str | None, typer.Option(help="API base URL (default: the running `up`).")]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="NEWSSTREAM_API_KEY",
        show_envvar=True,
        help="API key, sent as X-API-Key (prefer the variable: options show in `ps`).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON.")]


def api_base(api: str | None) -> str:
    """The API base URL: ``api`` when given, else the running `up`'s, else the settings'
    (invalid settings exit with code 2)."""
    settings = settings_or_exit()
    return api or running_api(settings) or settings.api_base_url


def minute(epoch: Any) -> str:
    """``epoch`` (seconds) as ``YYYY-MM-DD HH:MM`` UTC; empty when it is missing or 0."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M") if epoch else ""
