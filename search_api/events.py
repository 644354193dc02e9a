"""Search events: one message per search on the search-events topic, for the trends app.

Fire-and-forget: an event is queued in the Kafka producer and never blocks or fails the search
request; a full queue or a broker outage drops the event (and counts it), because trends are
advisory while the search answer is not. The event shape is :class:`core.search_events.SearchEvent`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka import Producer

from core.kafka import producer_config
from core.metrics import SearchMode
from core.search_events import SearchEvent, TopResult, emit_search_event, normalise_query
from core.settings import Settings
from search_api.filters import SearchFilters
from search_api.results import SearchResult

log = logging.getLogger(__name__)


class SearchEvents:
    """Emits search events when enabled and Kafka is configured; otherwise does nothing."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.kafka_search_events_topic
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        if settings.api_search_events and settings.kafka_bootstrap:
            config = producer_config(settings, client_id="newsstream-search-events")
            config.update({"acks": "1", "enable.idempotence": False, "message.timeout.ms": 30_000})
            self._producer = Producer(config)

    def emit(
        self,
        query: str,
        mode: SearchMode,
        filters: SearchFilters,
        hits: Sequence[SearchResult],
        latency_s: float,
    ) -> None:
        if self._producer is None:
            return
        event = SearchEvent(
            query=normalise_query(query),
            mode=mode,
            filters={
                k: v
                for k, v in {
                    "source": list(filters.sources),
                    "lang": filters.language,
                    "feed": list(filters.feeds),
                    "since": filters.since,
                    "until": filters.until,
                }.items()
                if v
            },
            result_count=len(hits),
            latency_ms=round(latency_s * 1000, 3),
            at=time.time(),
            story_ids=[h.story_id or h.id for h in hits[:10]],
            top_results=[
                TopResult(
                    story_id=h.story_id or h.id,
                    title=h.title,
                    source=h.source,
                    url=h.url,
                    other_sources=[a["source"] for a in h.also_reported_by if a.get("source")],
                )
                for h in hits[:3]
            ],
        )
        with self._lock:
            emit_search_event(self._producer, self._topic, event)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
