"""The worker process: wires settings, Kafka, Milvus and the embedder into arroyo and runs it.

What it guarantees (see ``../shared/DESIGN.md``): at-least-once from Kafka to Milvus, made
effectively-once by the idempotent upsert on id; offsets are committed only after Milvus
acknowledged their batch; poison goes to the DLQ (acknowledged before its offset is committed)
and a DLQ flood stops the worker; SIGTERM and SIGINT stop polling, finish or abandon the
in-flight batch, commit what was acknowledged and close.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from arroyo.backends.kafka import KafkaConsumer, KafkaProducer
from arroyo.commit import ONCE_PER_SECOND
from arroyo.dlq import DlqLimit, DlqPolicy
from arroyo.processing import StreamProcessor
from arroyo.types import Topic

from consumers.dlq import NewsDlqProducer
from consumers.indexer import Abandoned, Indexer, retry_transient
from consumers.prepare import Preparer
from consumers.strategy import IndexingStrategyFactory
from core.embedding import Embedder
from core.kafka import consumer_config, ensure_topics, producer_config
from core.milvus import ensure_collection, milvus_client
from core.settings import Settings

log = logging.getLogger(__name__)

#: The circuit breaker: stop when this many messages in a row, or this share, are poison.
DLQ_MAX_CONSECUTIVE = 100
DLQ_MAX_RATIO = 0.5


class Worker:
    """A built worker: the arroyo processor and the DLQ producer it owns."""

    def __init__(self, processor: StreamProcessor[Any], dlq_producer: KafkaProducer) -> None:
        self.processor = processor
        self._dlq_producer = dlq_producer

    def run(self) -> None:
        """Consume until :meth:`signal_shutdown`; always closes the DLQ producer."""
        try:
            self.processor.run()
        finally:
            self._dlq_producer.close().result(timeout=10)

    def signal_shutdown(self) -> None:
        self.processor.signal_shutdown()


def build_worker(
    settings: Settings, stop: threading.Event, embedder: Embedder | None = None
) -> Worker:
    """Everything the worker needs, connected and checked; raises on bad configuration."""
    retry_transient(
        lambda: ensure_topics(settings),
        dependency="kafka",
        stop=stop,
        max_backoff_s=settings.worker_retry_max_backoff_s,
    )
    embedder = embedder or Embedder(settings)
    client = retry_transient(
        lambda: milvus_client(settings),
        dependency="milvus",
        stop=stop,
        max_backoff_s=settings.worker_retry_max_backoff_s,
    )
    retry_transient(
        lambda: ensure_collection(client, settings, embedder.dimension),
        dependency="milvus",
        stop=stop,
        max_backoff_s=settings.worker_retry_max_backoff_s,
    )
    collection = settings.milvus_collection

    def upsert(rows: list[dict[str, Any]]) -> int:
        return int(client.upsert(collection, rows)["upsert_count"])

    indexer = Indexer(
        embedder=embedder,
        upsert=upsert,
        stop=stop,
        max_backoff_s=settings.worker_retry_max_backoff_s,
    )
    factory = IndexingStrategyFactory(
        preparer=Preparer(
            max_message_bytes=settings.worker_max_message_bytes,
            min_text_chars=settings.worker_min_text_chars,
        ),
        indexer=indexer,
        batch_size=settings.worker_batch_size,
        batch_time_s=settings.worker_batch_time_s,
        max_pending_batches=settings.worker_max_pending_batches,
    )
    config = consumer_config(settings)
    consumer = KafkaConsumer(config)
    dlq_producer = KafkaProducer(producer_config(settings, client_id="newsstream-dlq"))
    dlq_policy = DlqPolicy(
        NewsDlqProducer(dlq_producer, settings.kafka_dlq_topic),
        DlqLimit(max_invalid_ratio=DLQ_MAX_RATIO, max_consecutive_count=DLQ_MAX_CONSECUTIVE),
        None,
    )
    processor = StreamProcessor(
        consumer,
        Topic(settings.kafka_topic),
        factory,
        ONCE_PER_SECOND,
        dlq_policy=dlq_policy,
        join_timeout=10.0,
    )
    return Worker(processor, dlq_producer)


def run_worker(settings: Settings) -> None:
    """Run one worker until SIGTERM/SIGINT."""
    stop = threading.Event()
    worker: Worker | None = None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the worker", signum)
        stop.set()
        if worker is not None:
            worker.signal_shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker = build_worker(settings, stop)
    except Abandoned:
        return
    log.info("worker consuming %s as group %s", settings.kafka_topic, settings.kafka_group_id)
    worker.run()
