"""``newsstream search``: query a running API and print the top results.

The API is the one of the `newsstream up` running with the same data dir, else
``NEWSSTREAM_API_HOST``/``PORT`` (or ``--api``). Exit codes: 0 results, 1 the API answered
with anything but results (one line on stderr), 2 nothing answers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from core.errors import NewsstreamError
from newsstream.cli.common import console, fail, running_api, settings_or_exit


def search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option(help="Number of results.")] = 10,
    mode: Annotated[str | None, typer.Option(help="semantic, keyword or hybrid.")] = None,
    api: Annotated[
        str | None, typer.Option(help="API base URL (default: the running `up`).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="NEWSSTREAM_API_KEY",
            show_envvar=True,
            help="API key, sent as X-API-Key (prefer the variable: options show in `ps`).",
        ),
    ] = None,
) -> None:
    """Search a running API and print the top results.

    Any answer other than results (401, 429, 503, a proxy's page) is one line on stderr and a
    non-zero exit code: 1 for an API error, 2 when nothing answers.
    """
    from newsstream.ops.api_client import search as search_api

    settings = settings_or_exit()
    base = api or running_api(settings) or settings.api_base_url
    params: dict[str, str | int] = {"q": query, "k": k}
    if mode:
        params["mode"] = mode
    try:
        body = search_api(base, params, api_key or None)
    except NewsstreamError as exc:
        raise fail(exc) from None
    if as_json:
        console.print_json(json.dumps(body))
        return
    table = Table(title=f"{body['mode']} search: {body['query']}")
    for column in ("#", "title", "source", "date", "score", "url"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(body["results"], start=1):
        date = (
            datetime.fromtimestamp(hit["published_at"], UTC).strftime("%Y-%m-%d %H:%M")
            if hit.get("published_at")
            else ""
        )
        table.add_row(
            str(rank), hit["title"], hit["source"], date, f"{hit['score']:.3f}", hit["url"]
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``search`` to ``app``."""
    app.command()(search)
