"""Stage 9, commit: a batch's offsets are committed, and only then its outcomes counted.

In: the report of a batch that every earlier step acknowledged (Milvus its rows, the DLQ its
poison), or a filtered message whose offset still has to move. Out: nothing; the offsets are
committed synchronously and the report counted into the worker's
:class:`consumers.outcomes.OutcomeTally`.
"""

from __future__ import annotations

from arroyo.processing.strategies import ProcessingStrategy
from arroyo.types import Commit, FilteredPayload, Message

from consumers.outcomes import IndexReport, OutcomeTally


class CommitAndCount(ProcessingStrategy[IndexReport | FilteredPayload]):
    """The last step of the worker's chain: commit a batch's offsets, then count its report.

    It replaces arroyo's ``CommitOffsets``, whose commits are throttled to one a second: a
    step that counts on commit has to know the commit happened, so each batch is committed
    when it arrives (a synchronous commit per batch: a few per second at full speed). A
    commit that raises leaves the batch uncounted (it will be delivered again).
    """

    def __init__(self, commit: Commit, tally: OutcomeTally) -> None:
        self._commit = commit
        self._tally = tally

    def submit(self, message: Message[IndexReport | FilteredPayload]) -> None:
        self._commit(message.committable, force=True)
        if isinstance(message.payload, IndexReport):
            self._tally.count(message.payload)

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        self._commit({}, force=True)
