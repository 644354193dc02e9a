"""``newsstream stories show ID`` and ``newsstream stories split ID ARTICLE_ID...``: the story
routes of a running API (``GET /stories/{id}``, ``POST /stories/{id}/split``).

The API is the one of the `newsstream up` running with the same data dir, else
``NEWSSTREAM_API_HOST``/``PORT`` (or ``--api``). A split needs an admin key when the API has
keys (``--api-key`` or ``NEWSSTREAM_API_KEY``). Exit codes: 0 done, 1 the API refused or
failed (one line on stderr), 2 nothing answers.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from core.errors import NewsstreamError
from newsstream.cli.api_options import ApiKeyOption, ApiOption, JsonOption, api_base, minute
from newsstream.cli.common import console, fail


def register(app: typer.Typer) -> None:
    """Add the ``stories`` command group to ``app``."""
    group = typer.Typer(help="Story timelines and story edits, through the API.")
    app.add_typer(group, name="stories")

    @group.command("show")
    def show(
        story_id: Annotated[str, typer.Argument(help="The story id (its first article's id).")],
        api: ApiOption = None,
        api_key: ApiKeyOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Print a story's articles in time order."""
        from newsstream.ops.api_client import story

        try:
            body = story(api_base(api), story_id, api_key or None)
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            console.print_json(json.dumps(body))
            return
        more = " (truncated)" if body.get("truncated") else ""
        table = Table(title=f"{body['title']}: {body['count']} article(s){more}")
        for column in ("date", "source", "title", "id"):
            table.add_column(column, overflow="fold")
        for article in body["articles"]:
            when = article.get("published_at") or article.get("ingested_at")
            table.add_row(minute(when), article["source"], article["title"], article["id"])
        console.print(table)

    @group.command("split")
    def split(
        story_id: Annotated[str, typer.Argument(help="The story the articles leave.")],
        article_ids: Annotated[
            list[str], typer.Argument(help="Articles that form a new story (not the first).")
        ],
        reason: Annotated[
            str | None, typer.Option(help="Why, for the record (at most 500 characters).")
        ] = None,
        api: ApiOption = None,
        api_key: ApiKeyOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Move articles out of a story into a new one (an admin key when the API has keys)."""
        from newsstream.ops.api_client import split_story

        try:
            body = split_story(api_base(api), story_id, article_ids, reason, api_key or None)
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            console.print_json(json.dumps(body))
            return
        console.print(
            f"moved {body['moved']} article(s) from story {body['story_id']} "
            f"({body['remaining']} left) to story {body['new_story_id']}",
            soft_wrap=True,
        )
