"""Article routes: ``GET /articles/{id}``, one stored article, ``GET /articles/{id}/explain``,
why it is or is not searchable, and ``DELETE /articles/{id}``.

What goes in: an article id (and, for a delete, an optional reason for the audit and ``force``).
What comes out:

- ``GET``: the stored row (its fields as the index holds them, ``also_reported_by`` decoded to
  a list of sources). An id that is not an article id (32 lower-case hex characters) or that no
  row has answers 404 in the one error shape; Milvus being away answers 503.
- ``GET .../explain`` (a read key): the id's latest ledger record (:func:`core.ledger.read_record`,
  one partition of the ledger topic), whether Milvus holds the row now (Strong), whether the
  keyword index does (only where search uses one), and one plain sentence
  (:class:`core.ledger.Explanation`). An id that is not an article id answers 404; any other id
  answers 200, "never seen" included. The broker or Milvus being away answers 503.
- ``DELETE`` (an admin key when the API has keys; a read key gets 403): records the action on the
  audit topic, then publishes the delete of the contract, a tombstone on the articles topic
  (key = the id, so the partition of the article's own messages; null value; header
  :data:`core.article.DELETE_REASON_HEADER` = ``deleted``), each acknowledged by the broker
  (``acks=all``) before the answer: 202 with the id and ``status: queued``. The workers apply it like an upsert:
  the article then leaves search. 404 when the index answers that it holds no row of this id
  (nothing to delete) unless ``force=true`` (an article still on its way to the index); when the
  index is away the delete is published all the same (``stored: null``): a delete is
  idempotent. 503 with ``Retry-After`` when the broker does not acknowledge (nothing published
  then; the audit record, written first, may stand).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from core.article import DELETE_REASON_HEADER, DeleteReason
from core.errors import TransientError
from core.ids import is_article_id
from core.ledger import explanation, read_record
from core.settings import Settings
from search_api.acked_producer import Record, RecordSink
from search_api.audit import AuditLog
from search_api.backend import Backend
from search_api.errors import RETRY_AFTER_S, ErrorResponse, error_response

log = logging.getLogger(__name__)

#: Longest reason kept in the audit.
MAX_REASON_CHARS = 500


class DeleteAccepted(BaseModel):
    """The answer to ``DELETE /articles/{id}`` (202)."""

    id: str
    status: Literal["queued"] = Field(
        "queued", description="The delete is on Kafka; the workers apply it like an upsert."
    )
    stored: bool | None = Field(
        description="Whether the index held the article when asked; null when it did not answer."
    )
    audit_id: str = Field(description="The id of the audit record of this delete.")


def tombstone(
    settings: Settings, article_id: str, reason: DeleteReason = DeleteReason.DELETED
) -> Record:
    """The delete of ``article_id`` as the contract has it (see the module docstring); it
    carries ``produced_at`` (epoch ms) like an article, so a worker can time the delete too."""
    return Record(
        settings.kafka_topic,
        key=article_id.encode(),
        value=None,
        headers={
            DELETE_REASON_HEADER: reason.value.encode(),
            "produced_at": str(int(time.time() * 1000)).encode(),
        },
    )


def attach_articles(
    app: FastAPI,
    backend: Backend,
    sink: RecordSink,
    audit: AuditLog,
    caller: Callable[[Request], str],
) -> None:
    """Add the article routes to ``app`` (on the app itself: see :mod:`search_api.app`);
    ``sink`` sends the tombstones, ``audit`` records deletes, ``caller(request)`` names who
    asks (a key fingerprint, never a key)."""
    settings = backend.settings

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

    @app.get(
        "/articles/{article_id}/explain",
        summary="Is the article searchable, and if not, why (from the ledger).",
        responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    )
    def explain(article_id: str) -> Any:
        if not is_article_id(article_id):
            return error_response(404, "no article with this id")
        record = read_record(settings, article_id)
        searcher = backend.searcher()
        ids = [article_id]
        if record is not None and record.duplicate_of:
            ids.append(record.duplicate_of)
        keywords = searcher.keyword_index()
        in_keywords = keywords.contains(article_id) if keywords is not None else None
        return explanation(article_id, record, searcher.held(ids), in_keywords).as_json()

    @app.delete(
        "/articles/{article_id}",
        status_code=202,
        response_model=DeleteAccepted,
        summary="Delete an article from every store (admin).",
        responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
    )
    def delete_article(
        article_id: str,
        request: Request,
        reason: Annotated[
            str | None,
            Query(max_length=MAX_REASON_CHARS, description="Why, for the audit."),
        ] = None,
        force: Annotated[
            bool,
            Query(description="Publish the delete even when the index holds no such row."),
        ] = False,
    ) -> DeleteAccepted | JSONResponse:
        if not is_article_id(article_id):
            return error_response(404, "no article with this id")
        stored: bool | None
        try:
            stored = backend.searcher().get(article_id) is not None
        except TransientError as exc:
            # The index cannot say; a delete of an id that is not there is a no-op.
            log.warning("delete of %s published unchecked: %s", article_id, exc)
            stored = None
        if stored is False and not force:
            return error_response(
                404,
                "the index holds no article with this id; nothing to delete (force=true "
                "publishes the delete anyway, e.g. for an article still being indexed)",
            )
        try:
            entry = audit.record(
                "article.delete", article_id, caller(request), reason, {"stored": stored}
            )
            sink.send([tombstone(settings, article_id)])
        except TransientError as exc:
            log.warning("delete of %s not published: %s", article_id, exc)
            return error_response(
                503,
                "Kafka did not acknowledge the delete; retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        log.info("delete of %s published by %s", article_id, entry.by)
        return DeleteAccepted(id=article_id, stored=stored, audit_id=entry.id)
