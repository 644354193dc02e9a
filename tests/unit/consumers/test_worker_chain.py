"""The worker's whole chain (``consumers.chain``) under arroyo's stream processor, on arroyo's
in-memory broker: what is committed, when, and what happens while a dependency is away."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from arroyo.backends.kafka import KafkaPayload
from arroyo.backends.local.backend import LocalBroker, LocalConsumer
from arroyo.backends.local.storages.memory import MemoryMessageStorage
from arroyo.commit import ONCE_PER_SECOND
from arroyo.processing import StreamProcessor
from arroyo.processing.strategies import MessageRejected
from arroyo.types import BrokerValue, Message, Partition, Topic
from consumer_fakes import (
    Events,
    FakeDlq,
    FakeEmbedder,
    FakeLedger,
    FakeMilvus,
    OwnStories,
    RecordingDedup,
    article,
    tombstone,
)

from consumers.chain import WorkerChain, build_steps
from consumers.dedup_stage import DedupStage, index_params
from consumers.dlq import DlqBreaker
from consumers.outcomes import OutcomeTally
from consumers.retry import Abandoned
from core.article import Article
from core.settings import Settings
from dedup.index import DedupIndex
from dedup.memory_backend import MemoryBackend

TOPIC = Topic("news.articles")
P0 = Partition(TOPIC, 0)
#: How long a test waits for a state it expects before it gives up (a bound, not a measure).
PATIENCE_S = 30.0


class RecordingBroker(LocalBroker[KafkaPayload]):
    """arroyo's in-memory broker, with its commits in the shared event log."""

    def __init__(self, events: Events) -> None:
        super().__init__(MemoryMessageStorage())
        self.events = events
        self.committed: dict[Partition, int] = {}

    def commit(
        self, consumer: LocalConsumer[KafkaPayload], offsets: Mapping[Partition, int]
    ) -> None:
        super().commit(consumer, offsets)
        if offsets:
            self.committed.update(offsets)
            self.events.add("commit", dict(offsets))


@dataclass
class Rig:
    broker: RecordingBroker
    consumer: LocalConsumer[KafkaPayload]
    processor: StreamProcessor[KafkaPayload]
    chain: WorkerChain
    milvus: FakeMilvus
    dlq: FakeDlq
    ledger: FakeLedger
    tally: OutcomeTally
    events: Events
    stories: OwnStories

    def produce(self, *values: bytes) -> None:
        for value in values:
            self.broker.produce(P0, KafkaPayload(None, value, [("produced_at", b"1")]))

    def publish(self, *articles: Article) -> None:
        """Articles keyed by their id, as the producer sends them."""
        for a in articles:
            payload = KafkaPayload(a.id.encode(), a.to_bytes(), [("produced_at", b"1")])
            self.broker.produce(P0, payload)

    def delete(self, *articles: Article, reason: bytes | None = None) -> None:
        for a in articles:
            self.broker.produce(P0, tombstone(a.id, reason))

    def run_until(self, condition: Callable[[], bool], what: str) -> None:
        """Step the processor until ``condition`` holds."""
        deadline = time.monotonic() + PATIENCE_S
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"never reached: {what}; events {self.events.log}")
            self.processor._run_once()
            time.sleep(0.001)  # let the batch thread run

    def run_steps(self, n: int) -> None:
        for _ in range(n):
            self.processor._run_once()
            time.sleep(0.001)


@pytest.fixture
def rig() -> Iterator[Rig]:
    events, stop = Events(), threading.Event()
    broker = RecordingBroker(events)
    broker.create_topic(TOPIC, 1)
    settings = Settings(
        worker_batch_size=4,
        worker_batch_time_s=0.05,
        worker_max_pending_batches=1,
        worker_retry_max_backoff_s=0.02,
        rejects_per_reason=0,
    )
    milvus, dlq, tally = FakeMilvus(events), FakeDlq(events), OutcomeTally("w")
    stories = OwnStories()
    ledger = FakeLedger(events)
    params = index_params(settings)
    per_message, per_batch = build_steps(
        settings,
        embedder=FakeEmbedder(),
        upsert=milvus.upsert,
        delete=milvus.delete,
        dedup=RecordingDedup(DedupStage(DedupIndex(MemoryBackend(params), params)), events),
        stories=stories,
        dlq=dlq,
        ledger=ledger,
        breaker=DlqBreaker(),
        tally=tally,
        stop=stop,
    )
    chain = WorkerChain(
        per_message=per_message,
        per_batch=per_batch,
        tally=tally,
        batch_size=settings.worker_batch_size,
        batch_time_s=settings.worker_batch_time_s,
        max_pending_batches=settings.worker_max_pending_batches,
    )
    consumer = broker.get_consumer("workers")
    assert isinstance(consumer, LocalConsumer)
    processor = StreamProcessor(consumer, TOPIC, chain, ONCE_PER_SECOND)
    yield Rig(broker, consumer, processor, chain, milvus, dlq, ledger, tally, events, stories)
    # Release whatever still waits on a dependency, then close like a stopping worker.
    stop.set()
    milvus.hold.set()
    processor.signal_shutdown()
    with contextlib.suppress(Abandoned):  # a batch abandoned while its sink was away
        processor.run()


def _articles(first: int, n: int) -> list[Article]:
    return [article(k) for k in range(first, first + n)]


def test_offsets_are_committed_only_after_the_sink_acknowledged(rig: Rig) -> None:
    articles = _articles(0, 4)
    rig.milvus.hold.clear()  # the upsert is in flight until released
    rig.produce(*(a.to_bytes() for a in articles))
    rig.run_until(lambda: rig.milvus.calls == 1, "the upsert started")
    rig.run_steps(50)
    assert rig.broker.committed == {} and rig.tally.snapshot()["consumed"] == 0
    assert [name for name, _ in rig.events.log] == []  # dedup state waits for the upsert too
    rig.milvus.hold.set()
    rig.run_until(lambda: rig.broker.committed.get(P0) == 4, "offset 4 committed")
    assert set(rig.milvus.rows) == {a.id for a in articles}
    assert rig.events.index("upsert") < rig.events.index("record") < rig.events.index("commit")
    snapshot = rig.tally.snapshot()
    assert (snapshot["consumed"], snapshot["indexed"]) == (4, 4)


def test_the_dlq_write_is_acknowledged_before_the_commit_that_skips_it(rig: Rig) -> None:
    good = _articles(10, 3)
    rig.dlq.away = True
    rig.produce(good[0].to_bytes(), b"{broken", good[1].to_bytes(), good[2].to_bytes())
    rig.run_until(lambda: rig.dlq.attempts >= 3, "DLQ writes retried")
    assert rig.broker.committed == {}
    assert rig.milvus.rows == {}  # the batch waits for its DLQ write before its upsert
    rig.dlq.away = False
    rig.run_until(lambda: rig.broker.committed.get(P0) == 4, "offset 4 committed")
    assert [(origin.offset, origin.value) for origin, _ in rig.dlq.sent] == [(1, b"{broken")]
    assert rig.events.index("dlq") < rig.events.index("commit", lambda o: o.get(P0, 0) > 1)
    snapshot = rig.tally.snapshot()
    assert (snapshot["consumed"], snapshot["indexed"], snapshot["dlq"]) == (4, 3, 1)


def test_backpressure_pauses_the_partitions_while_the_sink_is_away_and_loses_nothing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arroyo pauses after a few seconds of backpressure; here at once.
    monkeypatch.setattr("arroyo.processing.processor.BACKPRESSURE_THRESHOLD", 0.0)
    articles = _articles(20, 24)
    rig.milvus.away = True
    rig.produce(*(a.to_bytes() for a in articles))
    rig.run_until(lambda: bool(rig.consumer.paused()), "the partition paused")
    assert rig.broker.committed == {} and rig.milvus.rows == {}
    assert rig.consumer.tell()[P0] < len(articles)  # it stopped taking messages in
    rig.milvus.away = False
    rig.run_until(lambda: rig.broker.committed.get(P0) == len(articles), "everything committed")
    assert set(rig.milvus.rows) == {a.id for a in articles}
    assert rig.consumer.paused() == []
    assert rig.tally.snapshot()["indexed"] == len(articles)


def test_the_chain_raises_message_rejected_while_the_sink_is_away(rig: Rig) -> None:
    rig.milvus.away = True
    strategy = rig.chain.create_with_partitions(lambda offsets, force=False: None, {P0: 0})
    rejected = False
    for offset, a in enumerate(_articles(50, 40)):
        value = BrokerValue(KafkaPayload(None, a.to_bytes(), []), P0, offset, datetime.now(UTC))
        try:
            strategy.poll()
            strategy.submit(Message(value))
        except MessageRejected:
            rejected = True
            break
        time.sleep(0.06)  # past the batch time: each batch closes and queues
    assert rejected, "a chain whose sink is away must refuse messages (bounded queue)"
    rig.milvus.away = False  # lets the batch in flight finish, so its thread can end
    strategy.terminate()


def test_rejected_and_duplicate_messages_still_move_the_offsets(rig: Rig) -> None:
    short = [article(k, text="Too short.", title="").to_bytes() for k in range(60, 63)]
    rig.produce(*short)
    rig.run_until(lambda: rig.broker.committed.get(P0) == 3, "the rejected offsets committed")
    assert rig.milvus.calls == 0
    wire = "The same wire story, carried word for word by two sites on the same day, ran here."
    kept = article(70, text=wire, title="Wire", url="https://a.example/1")
    copy = article(71, text=wire, title="Wire", url="https://b.example/2")
    first, second = article(72), article(72, text="An updated version of the same report. " * 3)
    rig.produce(kept.to_bytes(), first.to_bytes())
    rig.run_until(lambda: rig.broker.committed.get(P0) == 5, "the first two indexed")
    rig.produce(copy.to_bytes(), second.to_bytes(), first.to_bytes(), short[0])
    rig.run_until(lambda: rig.broker.committed.get(P0) == 9, "every offset committed")
    assert set(rig.milvus.rows) == {kept.id, first.id}
    snapshot = rig.tally.snapshot()
    assert (snapshot["consumed"], snapshot["indexed"]) == (9, 3)
    assert (snapshot["duplicate"], snapshot["rejected"], snapshot["dlq"]) == (2, 4, 0)


def test_a_tombstone_deletes_from_every_store_before_its_offset_is_committed(rig: Rig) -> None:
    kept, gone = article(80), article(81)
    rig.publish(kept, gone)
    rig.run_until(lambda: rig.broker.committed.get(P0) == 2, "both indexed")
    rig.milvus.hold.clear()  # the deletion is in flight until released
    rig.delete(gone)
    rig.delete(article(82), reason=b"expired")  # never indexed: a no-op, counted as expired
    rig.run_until(lambda: rig.milvus.calls == 2, "the delete started")
    rig.run_steps(50)
    assert rig.broker.committed.get(P0) == 2, "nothing committed before the stores acknowledged"
    rig.milvus.hold.set()
    rig.run_until(lambda: rig.broker.committed.get(P0) == 4, "the tombstones committed")
    assert set(rig.milvus.rows) == {kept.id}
    assert gone.id in rig.stories.forgotten, "a deleted seed stays a story candidate"
    delete = rig.events.index("delete")
    assert delete < rig.events.index("forget") < rig.events.index("commit", lambda o: o[P0] == 4)
    snapshot = rig.tally.snapshot()
    assert (snapshot["consumed"], snapshot["indexed"]) == (4, 2)
    assert (snapshot["deleted"], snapshot["expired"], snapshot["dlq"]) == (1, 1, 0)


def test_the_same_text_published_after_a_delete_is_indexed_not_a_duplicate(rig: Rig) -> None:
    wire = "The harbour council agreed on Monday to rebuild the old ferry pier before winter."
    first = article(90, text=wire, title="Pier", url="https://a.example/pier")
    again = article(91, text=wire, title="Pier", url="https://b.example/pier")
    rig.publish(first)
    rig.run_until(lambda: rig.broker.committed.get(P0) == 1, "the first indexed")
    rig.delete(first)
    rig.publish(again)  # in the same batch as the delete, after it
    rig.run_until(lambda: rig.broker.committed.get(P0) == 3, "delete and copy committed")
    assert set(rig.milvus.rows) == {again.id}
    snapshot = rig.tally.snapshot()
    assert (snapshot["indexed"], snapshot["duplicate"], snapshot["deleted"]) == (2, 0, 1)


def test_in_one_batch_delete_then_publish_ends_indexed_and_publish_then_delete_deleted(
    rig: Rig,
) -> None:
    back, gone = article(100), article(101)
    rig.publish(back, gone)
    rig.run_until(lambda: rig.broker.committed.get(P0) == 2, "both indexed")
    newer = article(100, text="A newer version of the report, published after the delete. " * 2)
    rig.delete(back)
    rig.publish(newer, article(101, text="A last version, deleted right after. " * 3))
    rig.delete(gone)  # one batch of four
    rig.run_until(lambda: rig.broker.committed.get(P0) == 6, "the batch committed")
    assert set(rig.milvus.rows) == {back.id}
    assert "A newer version" in rig.milvus.rows[back.id].text
    snapshot = rig.tally.snapshot()
    assert (snapshot["consumed"], snapshot["indexed"], snapshot["duplicate"]) == (6, 3, 1)
    assert snapshot["deleted"] == 2


def test_a_tombstone_without_a_key_is_poison(rig: Rig) -> None:
    kept = article(110)
    rig.publish(kept)
    rig.broker.produce(P0, KafkaPayload(None, None, []))
    rig.run_until(lambda: rig.broker.committed.get(P0) == 2, "both committed")
    assert [origin.offset for origin, _ in rig.dlq.sent] == [1]
    assert set(rig.milvus.rows) == {kept.id}
    snapshot = rig.tally.snapshot()
    assert (snapshot["dlq"], snapshot["deleted"], snapshot["indexed"]) == (1, 0, 1)
