"""The `newsstream` command line: the one place that composes the services.

Subcommands: ``up`` (the whole stack), ``produce``, ``consume``, ``serve`` (one service each),
``search`` (query a running API). Settings come from ``NEWSSTREAM_*`` variables (see the
README); command-line options override them.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from core.errors import ConfigurationError, NewsstreamError
from core.settings import Settings, load_settings
from newsstream.commands import register_all
from newsstream.logs import configure_logging

app = typer.Typer(
    help="News feeds to a live semantic search index.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def _settings(**overrides: object) -> Settings:
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


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2 if isinstance(exc, ConfigurationError) else 1)


@app.command()
def up(
    replay: Annotated[
        Path | None,
        typer.Option(help="Serve the feed files of this directory on 127.0.0.1 and poll those."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="API port (0 picks a free one).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Directory for local state.")] = None,
) -> None:
    """Start the whole stack: local broker and Milvus when not configured, producer, worker, API."""
    from newsstream.stack import run_stack

    settings = _settings(data_dir=data_dir, api_port=port)
    configure_logging(settings, "up")
    if replay is not None and not replay.is_dir():
        raise _fail(ConfigurationError(f"--replay expects a directory of feed files: {replay}"))
    try:
        code = run_stack(settings, replay_dir=replay)
    except NewsstreamError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@app.command()
def produce(
    once: Annotated[bool, typer.Option(help="Poll every feed once, then exit.")] = False,
) -> None:
    """Poll the configured feeds and publish new entries to Kafka.

    With --once: exit 0 when at least one feed was polled (feeds that failed are listed on
    stderr), 1 when every feed failed (a fetch or parse error, or Kafka did not acknowledge
    its entries), 2 when no feed is configured.
    """
    from producers.service import poll_failed, run_producer

    settings = _settings()
    configure_logging(settings, "producer")
    _serve_metrics(settings)
    try:
        reports = run_producer(settings, once=once)
    except NewsstreamError as exc:
        raise _fail(exc) from None
    if not once:
        return
    if not reports:
        raise _fail(
            ConfigurationError(
                "no feed is configured: expected feeds in NEWSSTREAM_FEEDS_FILE or added with "
                "`newsstream feeds add`"
            )
        )
    table = Table("feed", "result", "entries", "published")
    for r in reports:
        table.add_row(r.url, r.result, str(r.entries), str(r.published))
    console.print(table)
    failed = [r for r in reports if poll_failed(r)]
    for r in failed:
        err_console.print(f"[red]failed:[/red] {r.url}: {r.error or r.result}")
    if failed and len(failed) == len(reports):
        err_console.print(f"[red]error:[/red] every feed failed ({len(reports)})")
        raise typer.Exit(1)
    if failed:
        err_console.print(f"{len(failed)} of {len(reports)} feeds failed; the others were polled")


@app.command()
def consume(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (one group).")] = 1,
) -> None:
    """Run worker(s): consume articles, embed them and upsert them into Milvus.

    With NEWSSTREAM_METRICS_PORT set, worker k of N serves its own /metrics on that port + k
    (one scrape target per worker process).
    """
    from consumers.worker import run_workers, worker_metrics_ports

    settings = _settings()
    configure_logging(settings, "worker")
    try:
        # Workers bind their ports after the model loaded: check them all before spawning any.
        for port in worker_metrics_ports(settings.metrics_port, workers):
            _check_port_free(settings.metrics_host, port)
        code = run_workers(settings, workers, serve_metrics=_serve_metrics)
    except NewsstreamError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Run the search API (and dashboard).

    Beyond loopback (any host but 127.0.0.0/8, ::1, localhost) it needs API keys
    (NEWSSTREAM_API_READ_KEYS): without them it refuses to start (exit code 2).
    """
    import uvicorn

    from search_api.app import create_app
    from search_api.security import require_keys_beyond_loopback

    settings = _settings(api_host=host, api_port=port)
    configure_logging(settings, "api")
    try:
        require_keys_beyond_loopback(settings)
    except ConfigurationError as exc:
        raise _fail(exc) from None
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
    )


@app.command()
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
    from rich.markup import escape

    from newsstream.api_client import search as search_api

    settings = _settings()
    base = api or _running_api(settings) or settings.api_base_url
    params: dict[str, str | int] = {"q": query, "k": k}
    if mode:
        params["mode"] = mode
    try:
        body = search_api(base, params, api_key or None)
    except NewsstreamError as exc:
        # soft_wrap: one line whatever the terminal width; escape: the server's words are text.
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, ConfigurationError) else 1) from None
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


def _running_api(settings: Settings) -> str | None:
    """The API URL of the `newsstream up` running with this data dir, if any."""
    from newsstream.up_marker import running_up

    running = running_up(settings.data_dir)
    return running.api if running is not None else None


def _serve_metrics(settings: Settings) -> None:
    """Serve this process's metrics registry at ``/metrics`` on the metrics host and port, from
    a daemon thread; nothing when the port is 0. Raises ConfigurationError when the port is
    taken."""
    if not settings.metrics_port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    except OSError as exc:
        raise _metrics_port_error(settings.metrics_host, settings.metrics_port, exc) from None


def _check_port_free(host: str, port: int) -> None:
    """Raise ConfigurationError unless a server could listen on ``host:port`` now."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # as the metrics server does (http.server), so a port in TIME_WAIT counts as free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise _metrics_port_error(host, port, exc) from None


def _metrics_port_error(host: str, port: int, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"cannot serve /metrics on {host}:{port} ({exc.strerror or exc}): expected a free port "
        "in NEWSSTREAM_METRICS_PORT (with --workers N, worker k uses that port + k), or 0 "
        "for no metrics"
    )


register_all(app)


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        app()
    except KeyboardInterrupt:
        err_console.print(f"interrupted after {time.monotonic() - started:.1f} s")
        sys.exit(130)
