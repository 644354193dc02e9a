"""The search-event contract: one JSON message per search, from the API to the trends app.

The API emits one event per answered search to ``settings.kafka_search_events_topic``
(``news.search.events``); the trends app (:mod:`trends.app`) folds them into top and
rising queries and top stories. Both sides use this module, so the shape lives in one place.

Schema (JSON object, ``schema_version`` 1)::

    {"schema_version": 1,
     "query": str,          # normalised (see normalise_query), 1..200 characters
     "mode": "semantic" | "keyword" | "hybrid",
     "filters": {...},      # the filters the caller used (informational)
     "result_count": int,   # results returned (>= 0)
     "latency_ms": float,   # search latency (>= 0)
     "at": float,           # epoch seconds when the search was answered
     "story_ids": [str],    # story ids of the results, at most 10
     "top_results": [       # the first results, at most 3
        {"story_id": str, "title": str, "source": str, "url": str,
         "other_sources": [str]}   # optional: the story's also_reported_by sources
     ]}

The Kafka key is the normalised query (so one query always lands on one partition); the value
is the JSON above. Unknown fields are ignored on decode (a newer API may add some); an unknown
``schema_version`` or a missing field is an :class:`core.errors.InvalidMessage`.

:func:`emit_search_event` is fire-and-forget: it never blocks and never raises into the
request path; events are advisory (trends), never data. Failed or dropped sends are only
counted (:func:`emit_failures`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import InvalidMessage
from core.kafka import producer_config
from core.settings import Settings
from core.text import normalise_text

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
#: Longest normalised query kept in an event (longer queries are cut).
MAX_QUERY_CHARS = 200
MAX_STORY_IDS = 10
MAX_TOP_RESULTS = 3
#: Largest encoded event accepted by :func:`decode`.
MAX_EVENT_BYTES = 64_000

#: The search modes an event may name (``core.metrics.SearchMode`` values are accepted).
SEARCH_MODES: Final = ("semantic", "keyword", "hybrid")


def normalise_query(text: str) -> str:
    """The query as trends count it: NFKC, control characters dropped, casefolded, white space
    collapsed, cut to :data:`MAX_QUERY_CHARS` characters ("Floods  in PAKISTAN" and
    "floods in pakistan" are one query)."""
    folded = normalise_text(normalise_text(text).casefold())
    return folded[:MAX_QUERY_CHARS].rstrip()


class TopResult(BaseModel):
    """One of the first results of a search: what the trends app needs to count stories."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    story_id: str = Field(max_length=128)
    title: str = Field("", max_length=1_000)
    source: str = Field("", max_length=256)
    url: str = Field("", max_length=4_096)
    other_sources: list[str] = Field(default_factory=list, max_length=64)


class SearchEvent(BaseModel):
    """One answered search (see the module docstring for the JSON shape).

    The query is normalised by the model itself, so an event built from raw user text and an
    event decoded from the topic carry the same query string.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = SCHEMA_VERSION
    query: str = Field(min_length=1)
    mode: str
    filters: dict[str, Any] = Field(default_factory=dict)
    result_count: int = Field(ge=0)
    latency_ms: float = Field(ge=0)
    at: float = Field(ge=0)
    story_ids: list[str] = Field(default_factory=list, max_length=MAX_STORY_IDS)
    top_results: list[TopResult] = Field(default_factory=list, max_length=MAX_TOP_RESULTS)

    @field_validator("query", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return normalise_query(value) if isinstance(value, str) else value

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unknown schema_version {value}; expected {SCHEMA_VERSION}")
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, value: object) -> str:
        mode = str(value)
        if mode not in SEARCH_MODES:
            raise ValueError(f"mode must be one of {', '.join(SEARCH_MODES)}")
        return mode

    @field_validator("latency_ms", "at")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


def encode(event: SearchEvent) -> bytes:
    """The event as the JSON bytes of a Kafka message value."""
    return event.model_dump_json().encode("utf-8")


def decode(value: bytes | None) -> SearchEvent:
    """Parse and validate one message value; raises :class:`InvalidMessage` when it breaks the
    contract (bad JSON, unknown ``schema_version``, missing or invalid fields, too large)."""
    if not value:
        raise InvalidMessage("empty search event")
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidMessage(f"search event of {len(value)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"search event is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidMessage("search event is not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise InvalidMessage(f"unknown search event schema_version {data.get('schema_version')!r}")
    try:
        return SearchEvent.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid search event: {exc.errors()[0].get('msg')}") from exc


class _FailureCounter:
    """Counts events that did not reach Kafka (thread-safe: callbacks run in poll())."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def add(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def value(self) -> int:
        with self._lock:
            return self._count


_failures = _FailureCounter()


def emit_failures() -> int:
    """Search events lost since the process started (queue full, broker errors)."""
    return _failures.value


def _on_delivery(error: KafkaError | None, _message: Message) -> None:
    if error is not None:
        _failures.add()


def search_events_producer(settings: Settings) -> Producer:
    """A producer for search events: the project's producer settings, short timeouts, and a
    bounded local queue (a broker outage must cost memory only up to the queue's size)."""
    config = producer_config(settings, client_id="newsstream-search-events")
    config.update(
        {
            "linger.ms": 50,
            "message.timeout.ms": 30_000,
            "queue.buffering.max.messages": 10_000,
        }
    )
    config.update(settings.kafka_producer_config)
    return Producer(config)


def emit_search_event(producer: Producer, topic: str, event: SearchEvent) -> None:
    """Queue ``event`` on ``producer`` without waiting (fire-and-forget).

    Never blocks and never raises: a full local queue or a client error drops the event and
    counts it (:func:`emit_failures`). Delivery reports are served by the ``poll(0)`` here,
    so a long-lived caller needs no poll thread of its own.
    """
    try:
        producer.produce(
            topic,
            key=event.query.encode("utf-8"),
            value=encode(event),
            on_delivery=_on_delivery,
        )
    except (BufferError, KafkaException) as exc:
        _failures.add()
        log.debug("search event dropped: %s", exc)
    producer.poll(0)
