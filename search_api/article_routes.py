"""Article routes: ``GET /articles/{id}``, one stored article.

What goes in: an article id. What comes out: the stored row (its fields as the index holds
them, ``also_reported_by`` decoded to a list of sources). Guarantees: an id that is not an
article id (32 lower-case hex characters) or that no row has answers 404 in the one error
shape; Milvus being away answers 503.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from core.ids import is_article_id
from search_api.backend import Backend
from search_api.errors import ErrorResponse, error_response


def attach_articles(app: FastAPI, backend: Backend) -> None:
    """Add the article route to ``app`` (on the app itself: see :mod:`search_api.app`)."""

    @app.get(
        "/articles/{article_id}",
        summary="One stored article.",
        responses={404: {"model": ErrorResponse}},
    )
    def article(article_id: str) -> Any:
        if not is_article_id(article_id):
            return error_response(404, "no article with this id")
        row = backend.searcher().get(article_id)
        if row is None:
            return error_response(404, "no article with this id")
        return row
