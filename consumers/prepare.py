"""Stages 1-3 on one message: decode + validate, clean, quality gate.

Runs in arroyo's polling thread (it is cheap next to embedding). What goes in: one Kafka
message. What comes out: a :class:`Prepared` item that is either an article to index or an
already final outcome (rejected by reason). A message that breaks the Article contract raises
arroyo's ``InvalidMessage`` and goes to the DLQ through the processor's DLQ policy (its write is
acknowledged before the offset is committed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from arroyo.backends.kafka import KafkaPayload
from arroyo.dlq import InvalidMessage as ArroyoInvalidMessage
from arroyo.types import BrokerValue, Message

from consumers.clean import CleanArticle, clean_article
from consumers.quality import check_quality
from core.article import decode_article
from core.errors import InvalidMessage
from core.metrics import MESSAGES_CONSUMED, OUTCOMES, Outcome, RejectReason, Stage


@dataclass(frozen=True)
class Prepared:
    """One consumed message after the cheap stages."""

    clean: CleanArticle | None
    reject: RejectReason | None
    produced_at_ms: int | None

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


class Preparer:
    """Decode, clean and gate messages; the callable of arroyo's ``RunTask`` step."""

    def __init__(self, *, max_message_bytes: int, min_text_chars: int) -> None:
        self._max_bytes = max_message_bytes
        self._min_chars = min_text_chars

    def __call__(self, message: Message[KafkaPayload]) -> Prepared:
        MESSAGES_CONSUMED.inc()
        payload = message.payload
        value = message.value
        try:
            if payload.value is not None and len(payload.value) > self._max_bytes:
                raise InvalidMessage(
                    f"message of {len(payload.value)} bytes is over {self._max_bytes}"
                )
            article = decode_article(payload.value)
        except InvalidMessage as exc:
            OUTCOMES.labels(Outcome.DLQ, RejectReason.NONE).inc()
            if not isinstance(value, BrokerValue):  # pragma: no cover - arroyo gives these
                raise
            raise ArroyoInvalidMessage(
                value.partition, value.offset, reason=dlq_reason(Stage.DECODE, exc)
            ) from exc
        clean = clean_article(article)
        reason = check_quality(clean, min_chars=self._min_chars)
        if reason is not None:
            OUTCOMES.labels(Outcome.REJECTED, reason).inc()
            return Prepared(clean=None, reject=reason, produced_at_ms=_produced_at(payload))
        return Prepared(clean=clean, reject=None, produced_at_ms=_produced_at(payload))
