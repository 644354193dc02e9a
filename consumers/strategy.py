"""The worker's arroyo processing chain, rebuilt on every partition assignment.

    RunTask(prepare)                 decode + validate, clean, quality  (polling thread)
      -> BatchStep(size, time)       bounded batches
      -> RunTaskInThreads(index)     embed + upsert on one thread; at most N batches pending,
                                     beyond that it raises MessageRejected and arroyo pauses
                                     the partitions (backpressure) while it keeps polling
      -> CommitAndCount              commits only offsets whose whole batch was acknowledged,
                                     then counts the batch's outcomes (consumers.outcomes)

Filtered and rejected messages still carry their offsets forward to the commit.
"""

from __future__ import annotations

from collections.abc import Mapping

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

from consumers.indexer import Indexer
from consumers.outcomes import CommitAndCount, IndexReport
from consumers.prepare import Prepared, Preparer


class IndexingStrategyFactory(ProcessingStrategyFactory[KafkaPayload]):
    """Builds the chain above with explicit sizes for every buffer."""

    def __init__(
        self,
        *,
        preparer: Preparer,
        indexer: Indexer,
        batch_size: int,
        batch_time_s: float,
        max_pending_batches: int,
    ) -> None:
        self._preparer = preparer
        self._indexer = indexer
        self._batch_size = batch_size
        self._batch_time_s = batch_time_s
        self._max_pending = max_pending_batches

    def _index(self, message: Message[ValuesBatch[Prepared]]) -> IndexReport:
        return self._indexer.index([value.payload for value in message.payload])

    def create_with_partitions(
        self, commit: Commit, partitions: Mapping[Partition, int]
    ) -> ProcessingStrategy[KafkaPayload]:
        index_step: RunTaskInThreads[ValuesBatch[Prepared], IndexReport] = RunTaskInThreads(
            self._index,
            concurrency=1,
            max_pending_futures=self._max_pending,
            next_step=CommitAndCount(commit, self._indexer.tally),
        )
        # better_backpressure: a rejected message is carried over and re-submitted, instead of
        # running the preparer (and counting the message) again on every retry.
        batch_step: BatchStep[Prepared] = BatchStep(
            self._batch_size, self._batch_time_s, index_step
        )
        return RunTask(
            self._preparer,
            batch_step,
            better_backpressure=True,
        )
