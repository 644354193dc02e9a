"""``newsstream trends``: the search-trends app (faust), runnable alone or under ``up``.

It consumes the search events the API emits and publishes top and rising queries and top
stories as status snapshots; the API serves them at ``GET /trends?window=1h|24h``. Its
Prometheus metrics are at ``/metrics`` on ``NEWSSTREAM_METRICS_PORT`` (none when 0). See
:mod:`trends.app` for how it works and what it needs from the broker.
"""

from __future__ import annotations

from typing import Annotated

import typer

from core.errors import ConfigurationError, NewsstreamError


def register(app: typer.Typer) -> None:
    """Add the ``trends`` command to ``app``."""

    @app.command()
    def trends(
        every: Annotated[
            float, typer.Option(min=0.5, help="Seconds between published snapshots.")
        ] = 5.0,
    ) -> None:
        """Aggregate search events into trends (top/rising queries, top stories).

        With NEWSSTREAM_METRICS_PORT set it serves /metrics there, like the producer and the
        workers.
        """
        from newsstream.cli.common import fail, settings_or_exit
        from newsstream.cli.logs import configure_logging
        from newsstream.cli.services import serve_metrics
        from trends.app import run_trends

        settings = settings_or_exit()
        configure_logging(settings, "trends")
        if not settings.kafka_bootstrap:
            raise fail(
                ConfigurationError(
                    "NEWSSTREAM_KAFKA_BOOTSTRAP is not set: expected host:port of a Kafka "
                    "broker (`newsstream up` sets it when it starts the local broker)"
                )
            )
        try:
            serve_metrics(settings)
            code = run_trends(settings, publish_every_s=every)
        except NewsstreamError as exc:
            raise fail(exc) from None
        raise typer.Exit(code)
