"""``newsstream search``: query a running API and print the top results.

The API is the one of the `newsstream up` running with the same data dir, else
``NEWSSTREAM_API_HOST``/``PORT`` (or ``--api``). Exit codes: 0 results, 1 the API answered
with anything but results (one line on stderr), 2 nothing answers.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from core.errors import NewsstreamError
from newsstream.cli.api_options import ApiKeyOption, ApiOption, JsonOption, api_base, minute
from newsstream.cli.common import console, fail


def search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option(help="Number of results.")] = 10,
    mode: Annotated[str | None, typer.Option(help="semantic, keyword or hybrid.")] = None,
    api: ApiOption = None,
    as_json: JsonOption = False,
    api_key: ApiKeyOption = None,
) -> None:
    """Search a running API and print the top results.

    Any answer other than results (401, 429, 503, a proxy's page) is one line on stderr and a
    non-zero exit code: 1 for an API error, 2 when nothing answers.
    """
    from newsstream.ops.api_client import search as search_api

    base = api_base(api)
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
        table.add_row(
            str(rank),
            hit["title"],
            hit["source"],
            minute(hit.get("published_at")),
            f"{hit['score']:.3f}",
            hit["url"],
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``search`` to ``app``."""
    app.command()(search)
