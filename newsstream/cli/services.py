"""The service commands: ``up`` (the whole stack), ``produce``, ``consume`` and ``serve`` (one
service each), and serving a service process's ``/metrics``.

Settings come from ``NEWSSTREAM_*`` variables (see the README); command-line options override
them. Exit codes as in :mod:`newsstream.cli.common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.errors import ConfigurationError, NewsstreamError
from core.settings import Settings
from newsstream.cli.common import console, err_console, fail, settings_or_exit
from newsstream.cli.logs import configure_logging


def up(
    replay: Annotated[
        Path | None,
        typer.Option(help="Serve the feed files of this directory on 127.0.0.1 and poll those."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="API port (0 picks a free one).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Directory for local state.")] = None,
) -> None:
    """Start the whole stack: local broker and Milvus when not configured, producer, worker, API."""
    from newsstream.stack.up import run_stack

    settings = settings_or_exit(data_dir=data_dir, api_port=port)
    configure_logging(settings, "up")
    if replay is not None and not replay.is_dir():
        raise fail(ConfigurationError(f"--replay expects a directory of feed files: {replay}"))
    try:
        code = run_stack(settings, replay_dir=replay)
    except NewsstreamError as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


def produce(
    once: Annotated[bool, typer.Option(help="Poll every feed once, then exit.")] = False,
) -> None:
    """Poll the configured feeds and publish new entries to Kafka.

    With --once: exit 0 when at least one feed was polled (feeds that failed are listed on
    stderr), 1 when every feed failed (a fetch or parse error, or Kafka did not acknowledge
    its entries), 2 when no feed is configured.
    """
    from producers.service import poll_failed, run_producer

    settings = settings_or_exit()
    configure_logging(settings, "producer")
    serve_metrics(settings)
    try:
        reports = run_producer(settings, once=once)
    except NewsstreamError as exc:
        raise fail(exc) from None
    if not once:
        return
    if not reports:
        raise fail(
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


def consume(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (one group).")] = 1,
) -> None:
    """Run worker(s): consume articles, embed them and upsert them into Milvus.

    With NEWSSTREAM_METRICS_PORT set, worker k of N serves its own /metrics on that port + k
    (one scrape target per worker process).
    """
    from consumers.worker import run_workers, worker_metrics_ports

    settings = settings_or_exit()
    configure_logging(settings, "worker")
    try:
        # Workers bind their ports after the model loaded: check them all before spawning any.
        for port in worker_metrics_ports(settings.metrics_port, workers):
            check_port_free(settings.metrics_host, port)
        code = run_workers(settings, workers, serve_metrics=serve_metrics)
    except NewsstreamError as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Run the search API (and dashboard).

    Beyond loopback (any host but 127.0.0.0/8, ::1, localhost) it needs API keys
    (NEWSSTREAM_API_READ_KEYS): without them it refuses to start (exit code 2).
    """
    import uvicorn

    from newsstream.ops.admin_api import admin_actions
    from search_api.app import create_app
    from search_api.security import require_keys_beyond_loopback

    settings = settings_or_exit(api_host=host, api_port=port)
    configure_logging(settings, "api")
    try:
        require_keys_beyond_loopback(settings)
    except ConfigurationError as exc:
        raise fail(exc) from None
    uvicorn.run(
        create_app(settings, admin=admin_actions(settings)),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
    )


def serve_metrics(settings: Settings) -> None:
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


def check_port_free(host: str, port: int) -> None:
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


def register(app: typer.Typer) -> None:
    """Add ``up``, ``produce``, ``consume`` and ``serve`` to ``app``."""
    for command in (up, produce, consume, serve):
        app.command()(command)
