"""The Kafka publisher: Article messages to ``news.articles``, confirmed by delivery reports.

What goes in: Article messages. What comes out: the ids Kafka acknowledged (``acks=all``,
idempotent producer). Each message is keyed by the article id and carries the ``produced_at``
header (epoch ms). :meth:`Publisher.publish` returns only when every message got its delivery
report or the timeout passed; ids without a successful report are not in the result, and the
caller must not advance any state for them.

When the local queue is full (a broker outage) ``publish`` waits for room instead of dropping,
up to its timeout, then raises :class:`core.errors.TransientError`. :meth:`Publisher.pending`
and :meth:`Publisher.reachable` let the scheduler stop fetching while the broker is away.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.article import Article
from core.errors import TransientError
from core.kafka import producer_config
from core.metrics import ENTRIES_PUBLISHED
from core.settings import Settings


class Publisher:
    """Publishes articles and reports which ones Kafka acknowledged (thread-safe).

    A background thread serves delivery reports, so several polls can publish and wait at once
    without serialising on each other's flushes.
    """

    def __init__(self, settings: Settings, client_id: str = "newsstream-producer") -> None:
        self._config = producer_config(settings, client_id)
        self._producer = Producer(self._config)
        self._topic = settings.kafka_topic
        self._stop = threading.Event()
        self._reports = threading.Thread(
            target=self._serve_reports, name="kafka-delivery-reports", daemon=True
        )
        self._reports.start()

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def publish(self, articles: Sequence[Article], timeout_s: float = 60.0) -> set[str]:
        """Send ``articles``; return the ids whose delivery report succeeded within the timeout.

        Raises :class:`TransientError` when the local queue stays full past the timeout (the
        broker is away); ids produced before that may still be delivered later, and the caller
        treats them as not delivered (a later poll publishes them again: duplicates, no loss).
        """
        delivered: set[str] = set()
        failures: list[str] = []
        state = {"pending": 0, "sent": False}
        done = threading.Event()
        lock = threading.Lock()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            with lock:
                state["pending"] -= 1
                if err is None:
                    key = msg.key()
                    delivered.add(key.decode("ascii") if isinstance(key, bytes) else str(key))
                else:
                    failures.append(str(err))
                if state["sent"] and state["pending"] == 0:
                    done.set()

        deadline = time.monotonic() + timeout_s
        for article in articles:
            produced_at = str(int(time.time() * 1000)).encode("ascii")
            while True:
                with lock:
                    state["pending"] += 1
                try:
                    self._producer.produce(
                        self._topic,
                        key=article.id.encode("ascii"),
                        value=article.to_bytes(),
                        headers=[("produced_at", produced_at)],
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    with lock:
                        state["pending"] -= 1
                    # Local queue full: the broker is slow or away. Wait, never drop.
                    if time.monotonic() > deadline:
                        raise TransientError("Kafka producer queue full past the timeout") from None
                    time.sleep(0.1)
        with lock:
            state["sent"] = True
            if state["pending"] == 0:
                done.set()
        done.wait(max(0.0, deadline - time.monotonic()))
        with lock:
            acknowledged = set(delivered)
        ENTRIES_PUBLISHED.inc(len(acknowledged))
        if len(acknowledged) < len({a.id for a in articles}) and self.reachable():
            self._rebuild()
        return acknowledged

    def _rebuild(self) -> None:
        """Replace a wedged producer with a fresh one.

        After the broker lost its state (an in-memory broker restarted), an idempotent producer
        keeps resending with a producer id the broker no longer knows (UNKNOWN_PRODUCER_ID) and
        never delivers again. When messages time out while the broker answers metadata requests,
        the queue is purged (those ids count as not delivered: the caller publishes them again)
        and a new producer, with a new id, takes over.
        """
        old = self._producer
        old.purge()
        old.poll(0)
        self._producer = Producer(self._config)
        old.flush(0)

    def pending(self) -> int:
        """Messages in the local queue still waiting for a delivery report."""
        return len(self._producer)

    def reachable(self, timeout_s: float = 2.0) -> bool:
        """True when the broker answers a metadata request within ``timeout_s``."""
        try:
            self._producer.list_topics(self._topic, timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is queued; returns the number of messages still undelivered."""
        self._stop.set()
        self._reports.join(5)
        return int(self._producer.flush(timeout_s))
