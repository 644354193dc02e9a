"""The worker's chain, built in this one place, in the worker's stage order.

    per message, in arroyo's polling thread (RunTask; cheap next to embedding):
      decode + validate    consumers.decode.Decode             tombstone: a delete; poison: DLQ
      clean                consumers.clean.Clean
      quality gate         consumers.quality.QualityGate       rejected: a final outcome
    BatchStep(size, time)  bounded batches
    per batch, on one thread (RunTaskInThreads): at most N batches pending, beyond that it
    raises MessageRejected and arroyo pauses the partitions (backpressure) while it keeps polling
      delete (tombstones)  consumers.delete.DeleteArticles     every store, before the dedup check
      dedup (exact, near)  consumers.dedup_stage.CheckDuplicates
      embed (survivors)    consumers.embed.Embed               unusable vector: poison
      DLQ + its breaker    consumers.dlq.RouteToDlq            acknowledged before the commit
      story                consumers.stories.AssignStories
      upsert               consumers.upsert.Upsert             acknowledged by Milvus
      record dedup state   consumers.record.RecordDedupState   only after the upsert
      ledger               consumers.ledger.WriteLedger        each id's outcome, acknowledged
    commit, then count     consumers.commit.CommitAndCount     whole, acknowledged batches only

A step has one contract (:class:`Step`): a value in, the same kind of value out (decode alone
turns a Kafka message into an item), raising only to stop the worker
(:class:`consumers.dlq.DlqFlood`) or to abandon the batch (:class:`consumers.retry.Abandoned`).
Filtered and rejected messages still carry their offsets forward to the commit. arroyo's
strategies provide the threads, batches and backpressure; the chain is rebuilt on every
partition assignment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from arroyo.backends.kafka import KafkaPayload
from arroyo.processing.strategies import (
    BatchStep,
    ProcessingStrategy,
    ProcessingStrategyFactory,
    RunTask,
    RunTaskInThreads,
)
from arroyo.processing.strategies.batching import ValuesBatch
from arroyo.types import Commit, Message, Partition

from consumers.clean import Clean
from consumers.commit import CommitAndCount
from consumers.decode import Decode
from consumers.dedup_stage import CheckDuplicates, Deduplicator
from consumers.delete import DeleteArticles
from consumers.dlq import DlqBreaker, DlqSink, RouteToDlq
from consumers.embed import Embed, TextEmbedder
from consumers.item import Batch, Item
from consumers.ledger import LedgerSink, WriteLedger
from consumers.outcomes import IndexReport, OutcomeTally
from consumers.quality import QualityGate
from consumers.record import RecordDedupState
from consumers.rejects import RejectSample, rejects_path
from consumers.stories import AssignStories, StoryClusters
from consumers.upsert import Upsert
from core.metrics import BATCH_SIZE
from core.settings import Settings
from store.row import ArticleRow

T = TypeVar("T")


class Step(Protocol[T]):
    """One stage: a value in (an :class:`Item` or a :class:`Batch`), the same kind out."""

    def __call__(self, value: T, /) -> T: ...


@dataclass(frozen=True)
class MessageSteps:
    """Stages 1-3 on one message (the callable of arroyo's ``RunTask``)."""

    decode: Callable[[Message[KafkaPayload]], Item]
    clean: Step[Item]
    quality: Step[Item]

    def __call__(self, message: Message[KafkaPayload]) -> Item:
        return self.quality(self.clean(self.decode(message)))


@dataclass(frozen=True)
class BatchSteps:
    """The delete step, stages 4-8 and the ledger on one batch; returns its report once every
    step acknowledged it (the ledger last: its records say what the stores now hold)."""

    delete: Step[Batch]
    dedup: Step[Batch]
    embed: Step[Batch]
    dlq: Step[Batch]
    story: Step[Batch]
    upsert: Step[Batch]
    record: Step[Batch]
    ledger: Step[Batch]

    def __call__(self, items: list[Item]) -> IndexReport:
        BATCH_SIZE.observe(len(items))
        batch = Batch.of(items)
        steps = (
            self.delete,
            self.dedup,
            self.embed,
            self.dlq,
            self.story,
            self.upsert,
            self.record,
            self.ledger,
        )
        for step in steps:
            batch = step(batch)
        # Nothing is counted here: the report travels with the batch's offsets and is counted
        # when they are committed, so a batch finished after its partitions were given away is
        # counted once, by the worker that commits it.
        return batch.report()


def build_steps(
    settings: Settings,
    *,
    embedder: TextEmbedder,
    upsert: Callable[[list[ArticleRow]], int],
    delete: Callable[[list[str]], object],
    dedup: Deduplicator,
    stories: StoryClusters,
    dlq: DlqSink,
    ledger: LedgerSink,
    breaker: DlqBreaker,
    tally: OutcomeTally,
    stop: threading.Event,
) -> tuple[MessageSteps, BatchSteps]:
    """The worker's steps, configured from ``settings``, in stage order."""
    backoff = settings.worker_retry_max_backoff_s
    per_message = MessageSteps(
        decode=Decode(max_message_bytes=settings.worker_max_message_bytes),
        clean=Clean(),
        quality=QualityGate(
            min_chars=settings.worker_min_text_chars,
            min_words=settings.quality_min_words,
            allowed_languages=(
                frozenset(settings.quality_allowed_languages)
                if settings.quality_allowed_languages
                else None
            ),
            max_future_s=settings.quality_max_future_s,
            rejects=(
                RejectSample(
                    rejects_path(settings.data_dir), per_reason=settings.rejects_per_reason
                )
                if settings.rejects_per_reason
                else None
            ),
        ),
    )
    per_batch = BatchSteps(
        delete=DeleteArticles(
            delete, dedup, forget=stories.forget, stop=stop, max_backoff_s=backoff
        ),
        dedup=CheckDuplicates(dedup, stop=stop, max_backoff_s=backoff),
        embed=Embed(embedder),
        dlq=RouteToDlq(dlq, breaker, stop=stop, max_backoff_s=backoff),
        story=AssignStories(stories, stop=stop, max_backoff_s=backoff),
        upsert=Upsert(upsert, tally, stop=stop, max_backoff_s=backoff),
        record=RecordDedupState(dedup, stop=stop, max_backoff_s=backoff),
        ledger=WriteLedger(
            ledger,
            worker=tally.worker_id,
            staleness_bound_ms=settings.milvus_staleness_bound_ms,
            stop=stop,
            max_backoff_s=backoff,
        ),
    )
    return per_message, per_batch


class WorkerChain(ProcessingStrategyFactory[KafkaPayload]):
    """Wraps the steps in arroyo's strategies, with explicit sizes for every buffer."""

    def __init__(
        self,
        *,
        per_message: Callable[[Message[KafkaPayload]], Item],
        per_batch: Callable[[list[Item]], IndexReport],
        tally: OutcomeTally,
        batch_size: int,
        batch_time_s: float,
        max_pending_batches: int,
    ) -> None:
        self._per_message = per_message
        self._per_batch = per_batch
        self._tally = tally
        self._batch_size = batch_size
        self._batch_time_s = batch_time_s
        self._max_pending = max_pending_batches

    def _run_batch(self, message: Message[ValuesBatch[Item]]) -> IndexReport:
        return self._per_batch([value.payload for value in message.payload])

    def create_with_partitions(
        self, commit: Commit, partitions: Mapping[Partition, int]
    ) -> ProcessingStrategy[KafkaPayload]:
        batch_steps: RunTaskInThreads[ValuesBatch[Item], IndexReport] = RunTaskInThreads(
            self._run_batch,
            concurrency=1,
            max_pending_futures=self._max_pending,
            next_step=CommitAndCount(commit, self._tally),
        )
        batches: BatchStep[Item] = BatchStep(self._batch_size, self._batch_time_s, batch_steps)
        # better_backpressure: a rejected message is carried over and re-submitted, instead of
        # running the per-message steps (and the reject sample) again on every retry.
        return RunTask(self._per_message, batches, better_backpressure=True)
