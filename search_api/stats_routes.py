"""Stats and feeds routes: ``GET /stats``, ``GET /feeds`` and ``GET /trends``.

What goes in: the status topic (the workers' counters, each feed's last poll, the search
trends), read through :mod:`core.status`. What comes out: ``/stats`` the workers' outcomes
(:mod:`search_api.stats_view`), ``/feeds`` each feed's status sorted by URL with how many are
failing, ``/trends`` the top and rising queries and stories (:mod:`search_api.trends_view`).
Guarantees: none of them asks Milvus, so they answer while the index is away.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query

from core.settings import Settings
from core.status import read_status
from search_api.stats_view import stats_response
from search_api.trends_view import TREND_WINDOWS, trends_response


def attach_stats(app: FastAPI, settings: Settings) -> None:
    """Add ``GET /stats``, ``GET /trends`` and ``GET /feeds`` to ``app`` (on the app itself:
    see :mod:`search_api.app`)."""

    @app.get("/stats", summary="Ingestion outcomes per worker and in total.")
    def stats() -> dict[str, Any]:
        return stats_response(read_status(settings, "worker"))

    @app.get("/trends", summary="Top and rising queries and top stories over the last hour or day.")
    def trends(
        window: Annotated[
            str, Query(description="1h or 24h.", examples=list(TREND_WINDOWS))
        ] = "1h",
    ) -> dict[str, Any]:
        return trends_response(settings, window)

    @app.get("/feeds", summary="Status of each feed, as the producer last reported it.")
    def feeds() -> dict[str, Any]:
        statuses = read_status(settings, "feed")
        items = sorted(statuses.values(), key=lambda f: str(f.get("url", "")))
        return {
            "feeds": items,
            "count": len(items),
            "broken": sum(1 for f in items if f.get("error_streak")),
        }
