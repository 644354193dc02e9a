"""The Kafka publisher: Article messages to ``news.articles``, confirmed by delivery reports.

What goes in: Article messages. What comes out: the ids Kafka acknowledged (``acks=all``,
idempotent producer). Each message is keyed by the article id and carries the ``produced_at``
header (epoch ms). :meth:`Publisher.publish` returns only when every message got its delivery
report or the timeout passed; ids without a successful report are not in the result, and the
caller must not advance any state for them.

When the local queue is full (a broker outage) ``publish`` waits for room instead of dropping,
up to its timeout, then raises :class:`core.errors.TransientError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from core.article import Article
from core.errors import TransientError
from core.kafka import producer_config
from core.metrics import ENTRIES_PUBLISHED
from core.settings import Settings


class Publisher:
    """Publishes articles and reports which ones Kafka acknowledged."""

    def __init__(self, settings: Settings, client_id: str = "newsstream-producer") -> None:
        self._producer = Producer(producer_config(settings, client_id))
        self._topic = settings.kafka_topic
        self._lock = threading.Lock()

    def publish(self, articles: Sequence[Article], timeout_s: float = 60.0) -> set[str]:
        """Send ``articles``; return the ids whose delivery report succeeded."""
        delivered: set[str] = set()
        failures: list[str] = []
        pending = 0
        counter_lock = threading.Lock()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            nonlocal pending
            with counter_lock:
                pending -= 1
                if err is None:
                    key = msg.key()
                    delivered.add(key.decode("ascii") if isinstance(key, bytes) else str(key))
                else:
                    failures.append(str(err))

        deadline = time.monotonic() + timeout_s
        with self._lock:
            for article in articles:
                produced_at = str(int(time.time() * 1000)).encode("ascii")
                while True:
                    try:
                        with counter_lock:
                            pending += 1
                        self._producer.produce(
                            self._topic,
                            key=article.id.encode("ascii"),
                            value=article.to_bytes(),
                            headers=[("produced_at", produced_at)],
                            on_delivery=on_delivery,
                        )
                        break
                    except BufferError:
                        with counter_lock:
                            pending -= 1
                        # Local queue full: the broker is slow or away. Wait, never drop.
                        if time.monotonic() > deadline:
                            raise TransientError(
                                "Kafka producer queue full past the timeout"
                            ) from None
                        self._producer.poll(0.5)
                self._producer.poll(0)
            while True:
                with counter_lock:
                    if pending == 0:
                        break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._producer.flush(min(remaining, 1.0))
        ENTRIES_PUBLISHED.inc(len(delivered))
        return delivered

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is queued; returns the number of messages still undelivered."""
        return int(self._producer.flush(timeout_s))
