"""``newsstream feeds``: the feed registry from the command line.

``add URL [--name --tags --retention-days]``, ``update URL|ID [--retention-days N |
--default-retention]``, ``remove URL|ID``, ``list`` (with each feed's poll status),
``import FILE.opml``, ``export [--output FILE]`` and ``snapshot DIR`` (save every feed's current
document for a later ``newsstream up --replay DIR``). The local registry lives in the data dir's
``producer.sqlite3``; how it merges with the feeds file is documented in
:mod:`producers.registry`. Changes are also written to the feeds topic (on the configured Kafka,
or the broker of a running `newsstream up`), from which running producers pick them up at once.
``add``, ``update``, ``remove`` and ``import`` record each change in the audit as ``cli:<user>``
before making it (:mod:`newsstream.ops.feed_admin`; `newsstream audit` lists them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.errors import NewsstreamError
from core.settings import Settings
from newsstream.cli.common import console, err_console, fail, settings_or_exit
from producers.feeds import FeedSpec
from producers.registry import (
    FeedRegistry,
    feed_statuses,
    resolve_feeds,
    state_path,
    to_opml,
)
from producers.state import ProducerState


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _polled_feeds(settings: Settings) -> list[FeedSpec]:
    """Every feed the producer polls: the feeds file's (or the packaged list) and the registry's."""
    registry = FeedRegistry(state_path(settings.data_dir))
    try:
        return [r.spec for r in resolve_feeds(settings.feeds_file, registry)]
    except NewsstreamError as exc:
        raise fail(exc) from None
    finally:
        registry.close()


def _unrecorded(recorded: bool) -> None:
    """Say on stderr that a change has no audit record (no broker was known)."""
    from newsstream.ops.operator_audit import UNRECORDED_NOTE

    if not recorded:
        err_console.print(f"[yellow]note:[/yellow] {UNRECORDED_NOTE}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``feeds`` command group to ``app``."""
    feeds = typer.Typer(help="Manage the feed registry.", no_args_is_help=True)

    @feeds.command("add")
    def add(
        url: Annotated[str, typer.Argument(help="The feed's http(s) URL.")],
        name: Annotated[str, typer.Option(help="A display name.")] = "",
        tags: Annotated[
            list[str] | None, typer.Option("--tags", help="Tags (repeat or comma-separate).")
        ] = None,
        retention_days: Annotated[
            int | None,
            typer.Option(min=0, help="This feed's retention window in days (0 = keep forever)."),
        ] = None,
    ) -> None:
        """Add a feed (or update its name and tags); recorded in the audit (`newsstream audit`)."""
        from newsstream.ops.feed_admin import cli_feed_admin

        try:
            with cli_feed_admin(settings_or_exit()) as (admin, audit, by):
                done = admin.add(audit, by, url, name, tuple(tags or ()), retention_days)
        except NewsstreamError as exc:
            raise fail(exc) from None
        _unrecorded(done.audit_id is not None)
        spec, new = done.feed, done.created
        console.print(f"{'added' if new else 'updated'} {spec.id} {spec.url}")

    @feeds.command("update")
    def update(
        target: Annotated[str, typer.Argument(help="The feed's URL or id.")],
        retention_days: Annotated[
            int | None,
            typer.Option(min=0, help="This feed's retention window in days (0 = keep forever)."),
        ] = None,
        default_retention: Annotated[
            bool,
            typer.Option("--default-retention", help="Follow NEWSSTREAM_RETENTION_DAYS again."),
        ] = False,
    ) -> None:
        """Change a registry feed's retention window (the next retention sweep applies it)."""
        if (retention_days is None) == (not default_retention):
            raise typer.BadParameter("give exactly one of --retention-days and --default-retention")
        from newsstream.ops.feed_admin import cli_feed_admin

        try:
            with cli_feed_admin(settings_or_exit()) as (admin, audit, by):
                done = admin.set_retention(audit, by, target, retention_days)
        except NewsstreamError as exc:
            raise fail(exc) from None
        _unrecorded(done.audit_id is not None)
        spec = done.feed
        window = "the global window" if spec.retention_days is None else f"{spec.retention_days} d"
        console.print(f"updated {spec.id} {spec.url}: retention {window}")

    @feeds.command("remove")
    def remove(target: Annotated[str, typer.Argument(help="The feed's URL or id.")]) -> None:
        """Remove a registry feed (its poll state is kept); recorded in the audit."""
        from newsstream.ops.feed_admin import cli_feed_admin

        try:
            with cli_feed_admin(settings_or_exit()) as (admin, audit, by):
                done = admin.remove(audit, by, target)
        except NewsstreamError as exc:
            raise fail(exc) from None
        _unrecorded(done.audit_id is not None)
        removed = done.feed
        console.print(f"removed {removed.id} {removed.url}")

    @feeds.command("list")
    def list_feeds() -> None:
        """Every feed polled, with its status."""
        settings = settings_or_exit()
        path = state_path(settings.data_dir)
        registry, state = FeedRegistry(path), ProducerState(path)
        try:
            rows = feed_statuses(settings.feeds_file, registry, state)
        except NewsstreamError as exc:
            raise fail(exc) from None
        finally:
            registry.close()
            state.close()
        table = Table(title=f"{len(rows)} feeds")
        for column in ("id", "name", "url", "origin", "retention", "last fetch", "result", "items"):
            table.add_column(column, overflow="fold")
        table.add_column("next poll")
        table.add_column("errors", justify="right")
        for row in rows:
            st = row.state
            result = st.last_result or "never polled"
            if st.last_error:
                result = f"{result}: {st.last_error[:80]}"
            table.add_row(
                row.spec.id,
                row.spec.name,
                row.spec.url,
                str(row.origin),
                "-" if row.spec.retention_days is None else f"{row.spec.retention_days} d",
                _when(st.last_fetch_at),
                result,
                str(st.items),
                _when(st.next_poll_at) if st.last_fetch_at else "now",
                str(st.error_streak),
            )
        console.print(table)

    @feeds.command("import")
    def import_opml(
        file: Annotated[Path, typer.Argument(help="An OPML file.", exists=True, dir_okay=False)],
    ) -> None:
        """Add every feed of an OPML file to the registry (each recorded in the audit)."""
        from newsstream.ops.feed_admin import cli_feed_admin

        try:
            with cli_feed_admin(settings_or_exit()) as (admin, audit, by):
                done = admin.import_opml(audit, by, file)
        except NewsstreamError as exc:
            raise fail(exc) from None
        _unrecorded(done.recorded)
        for problem in done.problems:
            err_console.print(f"[yellow]skipped:[/yellow] {problem}")
        console.print(
            f"{done.feeds} feeds in {file}: {done.added} added, {done.existing} already there"
        )

    @feeds.command("export")
    def export_opml(
        output: Annotated[
            Path | None, typer.Option(help="Write here instead of standard output.")
        ] = None,
    ) -> None:
        """Every polled feed (file and registry) as OPML."""
        specs = _polled_feeds(settings_or_exit())
        document = to_opml(specs)
        if output is None:
            typer.echo(document, nl=False)
        else:
            output.write_text(document, encoding="utf-8")
            console.print(f"wrote {len(specs)} feeds to {output}")

    @feeds.command("snapshot")
    def snapshot(
        directory: Annotated[
            Path, typer.Argument(help="Where to save the feeds (created if missing).")
        ],
    ) -> None:
        """Save every polled feed's current document into DIR, for `newsstream up --replay DIR`.

        Exits 1 when no feed could be saved; feeds that fail are listed with their reason.
        """
        from newsstream.stack.feed_snapshot import SnapshotResult, snapshot_feeds
        from producers.fetcher import Fetcher

        settings = settings_or_exit()
        specs = _polled_feeds(settings)
        fetcher = Fetcher(
            deadline_s=settings.fetch_timeout_s,
            max_bytes=settings.fetch_max_bytes,
            allow_networks=settings.fetch_allow_networks,
            user_agent=settings.fetch_user_agent,
        )
        done = 0

        def progress(result: SnapshotResult) -> None:
            nonlocal done
            done += 1
            where = f"[{done}/{len(specs)}] {result.feed.url}"
            if result.ok:
                console.print(f"{where} -> {result.path} ({result.size:,} bytes)")
            else:
                err_console.print(f"{where} [red]failed[/red]: {result.error}")

        try:
            results = snapshot_feeds(specs, fetcher, directory, progress)
        finally:
            fetcher.close()
        saved = sum(r.ok for r in results)
        console.print(f"saved {saved} of {len(results)} feeds in {directory}")
        if not saved:
            raise typer.Exit(1)

    app.add_typer(feeds, name="feeds")
