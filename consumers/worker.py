"""The worker process: wires settings, Kafka, Milvus and the embedder into arroyo and runs it.

What it guarantees (see ``../shared/DESIGN.md``): at-least-once from Kafka to Milvus, made
effectively-once by the idempotent upsert on id; a tombstone deletes its article from every
store, idempotently, on the same path; offsets are committed only after Milvus (and, for
deletes, every store) acknowledged their batch and the broker acknowledged its ledger records
(each article id's outcome, :mod:`consumers.ledger`); poison goes to the DLQ (acknowledged before its
offset is committed) and a DLQ flood stops the worker (exit code 3); a lost broker connection (for example a
broker restart) rebuilds the consumer in-process with backoff; SIGTERM and SIGINT stop
polling, finish or abandon the in-flight batch, commit what was acknowledged and close.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from arroyo.commit import ONCE_PER_SECOND
from arroyo.errors import ConsumerError
from arroyo.processing import StreamProcessor
from arroyo.types import Topic
from confluent_kafka import KafkaException

from consumers.chain import WorkerChain, build_steps
from consumers.consumer import ResumeSafeKafkaConsumer
from consumers.dedup_stage import Deduplicator, DedupStage, build_index, milvus_annotator
from consumers.dlq import DlqBreaker, DlqFlood, DlqWriter
from consumers.ledger import LedgerWriter
from consumers.outcomes import OutcomeTally
from consumers.retry import Abandoned, retry_transient
from consumers.stories import StoryAssigner
from consumers.story_rule import StoryRule
from core.errors import TransientError
from core.kafka import consumer_config, ensure_topics, group_lag
from core.metrics import CONSUMER_LAG, partition_label
from core.settings import Settings
from core.status import StatusPublisher, new_instance_id
from embedding.embedder import Embedder
from store.client import milvus_client
from store.writer import ArticleWriter

log = logging.getLogger(__name__)

#: Exit code of a worker stopped by the DLQ circuit breaker.
EXIT_DLQ_FLOOD = 3


class Worker:
    """A built worker: the arroyo processor, plus what it owns and reports."""

    def __init__(
        self,
        settings: Settings,
        make_processor: Callable[[], StreamProcessor[Any]],
        tally: OutcomeTally,
        closers: list[Callable[[], object]],
        stop: threading.Event,
    ) -> None:
        self._settings = settings
        self._make_processor = make_processor
        self.tally = tally
        self._closers = closers
        self._stop = stop
        self.processor = make_processor()

    def run(self) -> None:
        """Consume until :meth:`signal_shutdown`; reconnects after broker failures."""
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    self.processor.run()
                    return
                except (KafkaException, ConsumerError) as exc:
                    if self._stop.is_set():
                        return
                    attempt += 1
                    delay = min(self._settings.worker_retry_max_backoff_s, 0.5 * 2**attempt)
                    log.warning("Kafka failure (%s); reconnecting in %.1f s", exc, delay)
                    if self._stop.wait(delay):
                        return
                    # A broker that lost its state (restart of an in-memory broker) lost the
                    # topics too: re-create them with their partitions before consuming again.
                    retry_transient(
                        lambda: ensure_topics(self._settings),
                        dependency="kafka",
                        stop=self._stop,
                        max_backoff_s=self._settings.worker_retry_max_backoff_s,
                    )
                    self.processor = self._make_processor()
        except Abandoned:
            return  # stopped while waiting for the broker to come back
        finally:
            for close in self._closers:
                try:
                    close()
                except Exception:  # closing is best effort; the data path is already done
                    log.exception("error while closing")

    def signal_shutdown(self) -> None:
        self._stop.set()
        self.processor.signal_shutdown()


def build_worker(
    settings: Settings,
    stop: threading.Event,
    embedder: Embedder | None = None,
    dedup: Deduplicator | None = None,
    worker_id: str | None = None,
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
    # Upserts carry no per-call timeout: a gRPC deadline hit while the server is stopped left
    # the client unable to reconnect (measured); a blocked call resumes when the server does,
    # while the bounded queue in front of the step makes arroyo pause the partitions.
    writer: ArticleWriter = retry_transient(
        lambda: ArticleWriter.open(client, settings, embedder.dimension, embedder.fingerprint),
        dependency="milvus",
        stop=stop,
        max_backoff_s=settings.worker_retry_max_backoff_s,
    )
    retry_transient(
        writer.catch_up,
        dependency="milvus",
        stop=stop,
        max_backoff_s=settings.worker_retry_max_backoff_s,
    )
    collection = settings.milvus_collection

    if dedup is None:
        index = retry_transient(
            lambda: build_index(settings, client),
            dependency="dedup",
            stop=stop,
            max_backoff_s=settings.worker_retry_max_backoff_s,
        )
        dedup = DedupStage(index, milvus_annotator(writer))
    tally = OutcomeTally(worker_id or new_instance_id(f"worker-{os.getpid()}"))
    dlq_writer = DlqWriter(settings)
    ledger_writer: LedgerWriter = retry_transient(
        lambda: LedgerWriter(settings),
        dependency="kafka",
        stop=stop,
        max_backoff_s=settings.worker_retry_max_backoff_s,
    )
    per_message, per_batch = build_steps(
        settings,
        embedder=embedder,
        upsert=writer.upsert,
        delete=writer.delete,
        dedup=dedup,
        stories=StoryAssigner(
            client,
            collection,
            rule=StoryRule(window_s=settings.story_window_hours * 3600),
            consistency=settings.milvus_search_consistency,
        ),
        dlq=dlq_writer,
        ledger=ledger_writer,
        # One breaker for the worker's life: a flood is judged across batches and assignments.
        breaker=DlqBreaker(),
        tally=tally,
        stop=stop,
    )

    def make_processor() -> StreamProcessor[Any]:
        factory = WorkerChain(
            per_message=per_message,
            per_batch=per_batch,
            tally=tally,
            batch_size=settings.worker_batch_size,
            batch_time_s=settings.worker_batch_time_s,
            max_pending_batches=settings.worker_max_pending_batches,
        )
        return StreamProcessor(
            ResumeSafeKafkaConsumer(consumer_config(settings)),
            Topic(settings.kafka_topic),
            factory,
            ONCE_PER_SECOND,
            join_timeout=10.0,
        )

    status = StatusPublisher(settings, "worker", lambda: {tally.worker_id: tally.snapshot()})
    lag = LagReporter(settings, stop)
    closers: list[Callable[[], object]] = [
        dlq_writer.close,
        ledger_writer.close,
        status.close,
        lag.stop,
        client.close,
    ]
    worker = Worker(settings, make_processor, tally, closers, stop)
    status.start()
    lag.start()
    return worker


class LagReporter:
    """Updates the consumer-lag gauge per partition every few seconds (advisory)."""

    def __init__(self, settings: Settings, stop: threading.Event, every_s: float = 5.0) -> None:
        self._settings = settings
        self._stop = stop
        self._done = threading.Event()
        self._every_s = every_s
        self._thread = threading.Thread(target=self._loop, name="lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def _loop(self) -> None:
        while not (self._done.wait(self._every_s) or self._stop.is_set()):
            try:
                for partition, lag in group_lag(self._settings).items():
                    CONSUMER_LAG.labels(partition_label(partition)).set(lag)
            except TransientError:
                continue


def run_worker(settings: Settings) -> int:
    """Run one worker until SIGTERM/SIGINT; returns the process exit code."""
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
        return 0
    log.info("worker consuming %s as group %s", settings.kafka_topic, settings.kafka_group_id)
    try:
        worker.run()
    except DlqFlood as exc:
        log.critical("DLQ circuit breaker: %s. Fix the cause, then `newsstream dlq replay`.", exc)
        return EXIT_DLQ_FLOOD
    return 0


def worker_metrics_ports(base: int, count: int) -> list[int]:
    """The /metrics ports of ``count`` workers started together: ``base + k`` for worker k, none
    when ``base`` is 0 (metrics off)."""
    return [base + k for k in range(count)] if base else []


def run_workers(
    settings: Settings,
    count: int,
    serve_metrics: Callable[[Settings], None] | None = None,
) -> int:
    """Run ``count`` worker processes in one consumer group; returns the worst exit code.

    ``serve_metrics(settings)`` runs in each worker process before it builds its worker, with
    ``settings.metrics_port`` set to that worker's port (:func:`worker_metrics_ports`): every
    process serves its own registry on its own port, so each is a scrape target of its own
    and a dead one shows as down. With several workers ``serve_metrics`` must be picklable (a
    module-level function): the processes are spawned.
    """
    if count <= 1:
        if serve_metrics is not None:
            serve_metrics(settings)
        return run_worker(settings)
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ports = worker_metrics_ports(settings.metrics_port, count) or [0] * count
    processes = [
        context.Process(
            target=_worker_main,
            args=(settings.model_copy(update={"metrics_port": port}), serve_metrics),
            name=f"worker-{n}",
        )
        for n, port in enumerate(ports)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for process in processes:
        while process.is_alive():
            process.join(0.5)
        codes.append(process.exitcode or 0)
    time.sleep(0)
    return max(codes)


def _worker_main(settings: Settings, serve_metrics: Callable[[Settings], None] | None) -> None:
    if serve_metrics is not None:
        serve_metrics(settings)
    raise SystemExit(run_worker(settings))
