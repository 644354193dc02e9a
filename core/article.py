"""The Article message: the contract between producers and workers on ``news.articles``.

Wire format: UTF-8 JSON object, Kafka key = article id, header ``produced_at`` (epoch ms).
Validated on both sides (the producer builds it through this model, the worker decodes through
:func:`decode_article`). A message whose ``schema_version`` this code does not know is poison
(it goes to the DLQ), never guessed at.

Fields hold feed text as published (``summary`` and ``content`` may hold HTML; the worker
cleans it). Sizes are capped here so that one hostile feed cannot produce a giant message.

A delete is a tombstone on the same topic: key = the article id, value null, and optionally the
header :data:`DELETE_REASON_HEADER` saying why (:class:`DeleteReason`; ``deleted`` when absent).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from core.errors import InvalidMessage

SCHEMA_VERSION = 1

#: The header of a delete tombstone that says why the article leaves (a :class:`DeleteReason`).
DELETE_REASON_HEADER = "newsstream-delete-reason"


class DeleteReason(StrEnum):
    """Why a tombstone deletes its article (the value of :data:`DELETE_REASON_HEADER`)."""

    DELETED = "deleted"  # an operator's delete (the default)
    EXPIRED = "expired"  # the retention sweep


def delete_reason(value: bytes | None) -> DeleteReason:
    """The reason a tombstone's header gives; ``deleted`` when absent or not a known reason
    (the message is a delete whatever its header says: only the count it lands in differs)."""
    try:
        return DeleteReason((value or b"").decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return DeleteReason.DELETED


MAX_TITLE_CHARS = 1_000
MAX_SUMMARY_CHARS = 20_000
MAX_CONTENT_CHARS = 200_000
MAX_URL_CHARS = 2_048

ArticleId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class Article(BaseModel):
    """One feed entry as published to Kafka (schema version 1)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    id: ArticleId
    url: Annotated[str, StringConstraints(max_length=MAX_URL_CHARS)] = ""
    guid: Annotated[str, StringConstraints(max_length=MAX_URL_CHARS)] = ""
    title: Annotated[str, StringConstraints(max_length=MAX_TITLE_CHARS)] = ""
    summary: Annotated[str, StringConstraints(max_length=MAX_SUMMARY_CHARS)] = ""
    content: Annotated[str, StringConstraints(max_length=MAX_CONTENT_CHARS)] = ""
    feed_id: Annotated[str, StringConstraints(max_length=64)] = ""
    feed_url: Annotated[str, StringConstraints(max_length=MAX_URL_CHARS)] = ""
    source: Annotated[str, StringConstraints(max_length=255)] = ""
    language: Annotated[str, StringConstraints(max_length=16)] = ""
    published_at: int | None = Field(None, description="Epoch seconds, as the feed said.")
    fetched_at: int = Field(0, ge=0, description="Epoch seconds when the producer fetched it.")

    def to_bytes(self) -> bytes:
        """Serialise for Kafka (compact JSON, UTF-8)."""
        return self.model_dump_json().encode("utf-8")


def decode_article(raw: bytes | None) -> Article:
    """Decode and validate one Kafka value.

    Raises :class:`InvalidMessage` (poison, never retried) with a message that says what was
    wrong: not JSON, not an object, an unknown ``schema_version``, or a field that fails the
    contract.
    """
    if raw is None:
        raise InvalidMessage("empty message value (tombstone)")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"value is not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"value is JSON {type(data).__name__}, expected an object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InvalidMessage(
            f"unknown schema_version {version!r}; this worker reads {SCHEMA_VERSION}"
        )
    try:
        return Article.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        raise InvalidMessage(f"field {where}: {first['msg']}") from None
