"""Stages 1-3 on one message: decode + validate, clean, quality gate.

Runs in arroyo's polling thread (cheap next to embedding). What goes in: one Kafka message.
What comes out: a :class:`Prepared` item that is an article to index, an already final
outcome (rejected, with its reason), or poison (a message that breaks the Article contract).
Poison travels with its batch and is written to the DLQ by the indexer, acknowledged before the
batch's offsets are committed, so a DLQ'd offset is committed like any other (arroyo's own DLQ
path never commits an invalid message that is the last of its partition). The circuit breaker
lives here: too many poison messages in a row, or too large a share, raise :class:`DlqFlood`.
Every article the quality gate rejects is also kept in the bounded reject sample when one is
given (:mod:`consumers.rejects`, shown by ``newsstream rejects``); the sample is advisory, so a
failed write is logged and the message goes on to its outcome.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass

from arroyo.backends.kafka import KafkaPayload
from arroyo.types import BrokerValue, Message

from consumers.clean import CleanArticle, clean_article
from consumers.outcomes import OutcomeTally
from consumers.quality import check_quality
from consumers.rejects import RejectSample
from core.article import decode_article
from core.errors import InvalidMessage
from core.metrics import STAGE_SECONDS, RejectReason, Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Where a message came from, and its original bytes (for a later DLQ write)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Prepared:
    """One consumed message after the cheap stages."""

    clean: CleanArticle | None
    reject: RejectReason | None
    produced_at_ms: int | None
    origin: Origin | None = None
    poison: str | None = None  # the DLQ reason (JSON) of a message that can never succeed

    @property
    def article_id(self) -> str | None:
        return self.clean.article.id if self.clean else None


def dlq_reason(stage: Stage, error: Exception) -> str:
    """The DLQ reason string: JSON with the stage, the error class and its message."""
    return json.dumps(
        {"stage": str(stage), "error_class": type(error).__name__, "message": str(error)[:1000]}
    )


def _produced_at(payload: KafkaPayload) -> int | None:
    for name, value in payload.headers:
        if name == "produced_at":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class DlqFlood(Exception):
    """Too many poison messages, in a row or by share: the DLQ circuit breaker is open."""


class Preparer:
    """Decode, clean and gate messages; the callable of arroyo's ``RunTask`` step."""

    def __init__(
        self,
        *,
        tally: OutcomeTally,
        max_message_bytes: int,
        min_text_chars: int,
        max_dlq_ratio: float = 0.5,
        ratio_min_messages: int = 200,
        max_consecutive_poison: int = 100,
        min_words: int = 5,
        allowed_languages: frozenset[str] | None = None,
        max_future_s: float = 86_400.0,
        rejects: RejectSample | None = None,
    ) -> None:
        self._rejects = rejects
        self._min_words = min_words
        self._languages = allowed_languages
        self._max_future_s = max_future_s
        self._tally = tally
        self._max_consecutive = max_consecutive_poison
        self._consecutive = 0
        self._poisoned = 0
        self._seen = 0
        self._max_ratio = max_dlq_ratio
        self._ratio_min = ratio_min_messages
        self._max_bytes = max_message_bytes
        self._min_chars = min_text_chars

    def __call__(self, message: Message[KafkaPayload]) -> Prepared:
        self._seen += 1
        payload = message.payload
        value = message.value
        origin = None
        if isinstance(value, BrokerValue):
            origin = Origin(
                topic=value.partition.topic.name,
                partition=value.partition.index,
                offset=value.offset,
                key=payload.key,
                value=payload.value or b"",
                headers=tuple((k, bytes(v)) for k, v in payload.headers),
            )
        started = time.perf_counter()
        produced_at = _produced_at(payload)
        try:
            if payload.value is not None and len(payload.value) > self._max_bytes:
                raise InvalidMessage(
                    f"message of {len(payload.value)} bytes is over {self._max_bytes}"
                )
            article = decode_article(payload.value)
        except InvalidMessage as exc:
            self._trip_breaker(exc)
            return Prepared(
                clean=None,
                reject=None,
                produced_at_ms=produced_at,
                origin=origin,
                poison=dlq_reason(Stage.DECODE, exc),
            )
        self._consecutive = 0
        decoded = time.perf_counter()
        STAGE_SECONDS.labels(Stage.DECODE).observe(decoded - started)
        clean = clean_article(article)
        cleaned = time.perf_counter()
        STAGE_SECONDS.labels(Stage.CLEAN).observe(cleaned - decoded)
        reason = check_quality(
            clean,
            min_chars=self._min_chars,
            min_words=self._min_words,
            allowed_languages=self._languages,
            max_future_s=self._max_future_s,
        )
        STAGE_SECONDS.labels(Stage.QUALITY).observe(time.perf_counter() - cleaned)
        if reason is not None:
            self._sample(reason, clean)
            return Prepared(clean=None, reject=reason, produced_at_ms=produced_at)
        return Prepared(clean=clean, reject=None, produced_at_ms=produced_at, origin=origin)

    def _sample(self, reason: RejectReason, clean: CleanArticle) -> None:
        if self._rejects is None:
            return
        article = clean.article
        try:
            self._rejects.add(
                reason=reason.value,
                article_id=article.id,
                title=clean.title,
                url=article.url or "",
                text=clean.text,
            )
        except sqlite3.Error as exc:  # advisory: never hold or fail a message for the sample
            log.warning("could not keep rejected article %s in the sample: %s", article.id, exc)

    def _trip_breaker(self, exc: Exception) -> None:
        self._consecutive += 1
        self._poisoned += 1
        if self._consecutive > self._max_consecutive:
            raise DlqFlood(f"{self._consecutive} poison messages in a row ({exc})")
        consumed = self._seen
        ratio = self._poisoned / consumed if consumed else 0.0
        if consumed >= self._ratio_min and ratio > self._max_ratio:
            raise DlqFlood(
                f"{ratio:.0%} of {consumed} messages were poison (limit {self._max_ratio:.0%})"
            )
