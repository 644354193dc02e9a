"""``newsstream delete URL|ID`` and ``newsstream audit``: admin actions of a running API.

Both go through the API (``DELETE /articles/{id}``, ``GET /audit``), so the audit records who
asked (the fingerprint of the API key). The API is the one of the `newsstream up` running with
the same data dir, else ``NEWSSTREAM_API_HOST``/``PORT`` (or ``--api``); an admin key when the
API has keys (``--api-key`` or ``NEWSSTREAM_API_KEY``). Exit codes: 0 done, 1 the API refused
or failed, or a delete was not confirmed (one line on stderr), 2 bad usage or nothing answers.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from core.errors import NewsstreamError
from core.ids import article_id, is_article_id
from newsstream.cli.api_options import ApiKeyOption, ApiOption, JsonOption, api_base
from newsstream.cli.common import console, err_console, fail

#: The actions ``GET /audit`` filters by (kept in step with ``search_api.audit.ACTIONS``; the
#: API names them when given another).
AUDIT_ACTIONS = (
    "article.delete",
    "story.split",
    "feed.add",
    "feed.retention",
    "feed.remove",
    "dlq.replay",
    "reindex",
)


def article_target(text: str) -> str:
    """The article id ``text`` names: an id (32 lower-case hex characters) as it is, an
    http(s) URL by the id rule of :func:`core.ids.article_id` (canonical URL, SHA-256).

    Raises :class:`typer.BadParameter` for anything else.
    """
    value = text.strip()
    if is_article_id(value):
        return value
    if value.lower().startswith(("http://", "https://")):
        return article_id(link=value)
    raise typer.BadParameter(
        f"expected an article id (32 lower-case hex characters) or an http(s) URL, "
        f"found {value[:80]!r}"
    )


def stdin_is_terminal() -> bool:
    """True when a person can answer a question on stdin."""
    return sys.stdin.isatty()


def register(app: typer.Typer) -> None:
    """Add the ``delete`` and ``audit`` commands to ``app``."""

    @app.command("delete")
    def delete(
        article: Annotated[
            str, typer.Argument(help="The article's URL (as the feed linked it) or its id.")
        ],
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
        reason: Annotated[
            str | None, typer.Option(help="Why, for the audit (at most 500 characters).")
        ] = None,
        force: Annotated[
            bool,
            typer.Option(
                help="Publish the delete even when the index does not hold the article yet."
            ),
        ] = False,
        api: ApiOption = None,
        api_key: ApiKeyOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Delete an article from search: the index, the keyword index, the dedup index and
        every story's "also reported by" list. Goes through the API (an admin key when it has
        keys), which records the delete in the audit (`newsstream audit`) and publishes a
        tombstone on the articles topic; the workers apply it, and the article leaves search
        within about the time an article takes to become searchable. A URL becomes its article
        id by the id rule (canonical URL, SHA-256). Asks to confirm unless --yes (off a
        terminal, --yes is required)."""
        from newsstream.ops.api_client import delete_article

        target = article_target(article)
        named = target if target == article.strip() else f"{target} ({article.strip()})"
        if not yes:
            if not stdin_is_terminal():
                err_console.print(
                    "[red]error:[/red] not deleted: no terminal to confirm on; pass --yes",
                    soft_wrap=True,
                )
                raise typer.Exit(2)
            if not typer.confirm(f"Delete article {named} from every store?", default=False):
                err_console.print("not deleted")
                raise typer.Exit(1)
        try:
            body = delete_article(api_base(api), target, reason, force, api_key or None)
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            console.print_json(json.dumps(body))
            return
        note = "" if body.get("stored") is not False else " (the index did not hold it yet)"
        console.print(
            f"delete of {escape(named)} queued{note}; it leaves search once the workers apply "
            f"it (audit record {body.get('audit_id')})",
            soft_wrap=True,
        )

    @app.command("audit")
    def audit(
        action: Annotated[
            str | None, typer.Option(help=f"Only this action: {', '.join(AUDIT_ACTIONS)}.")
        ] = None,
        limit: Annotated[int, typer.Option(min=1, max=500, help="Records at most.")] = 50,
        before: Annotated[
            int | None, typer.Option(min=0, help="Older records: the position a page ends at.")
        ] = None,
        api: ApiOption = None,
        api_key: ApiKeyOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Admin actions that changed data (deletes, story splits, feed additions, retention
        changes and removals, DLQ replays, reindexes), newest first: when, what, to what, who (the API
        key's fingerprint, never the key; `cli:<user>` for a command run on the host) and why
        (an admin key)."""
        from newsstream.ops.api_client import audit as audit_page

        params: dict[str, str | int] = {"limit": limit}
        if action:
            params["action"] = action
        if before is not None:
            params["before"] = before
        try:
            body = audit_page(api_base(api), params, api_key or None)
        except NewsstreamError as exc:
            raise fail(exc) from None
        if as_json:
            console.print_json(json.dumps(body))
            return
        table = Table(title=f"audit: {len(body['entries'])} record(s), newest first")
        for column in ("when (UTC)", "action", "target", "by", "reason"):
            table.add_column(column, overflow="fold")
        for entry in body["entries"]:
            when = datetime.fromtimestamp(float(entry["at"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(
                when,
                escape(str(entry["action"])),
                escape(str(entry["target"])),
                escape(str(entry["by"])),
                escape(str(entry.get("reason") or "")),
            )
        console.print(table)
        if body.get("next_before") is not None:
            console.print(f"[dim]older records: --before {body['next_before']}[/dim]")
