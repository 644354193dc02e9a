"""The worker's last step: a batch is counted when its offsets are committed, never before."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from arroyo.types import BrokerValue, FilteredPayload, Message, Partition, Topic

from consumers.commit import CommitAndCount
from consumers.outcomes import IndexReport, OutcomeTally
from core.metrics import RejectReason

PARTITION = Partition(Topic("articles"), 0)


class Commits:
    """Records commits like arroyo's commit callable; fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[Partition, int], bool]] = []
        self.failing = False

    def __call__(self, offsets: Mapping[Partition, int], force: bool = False) -> None:
        if self.failing:
            raise RuntimeError("commit failed")
        self.calls.append((dict(offsets), force))


def _batch(
    report: IndexReport | FilteredPayload, last_offset: int
) -> Message[IndexReport | FilteredPayload]:
    value = BrokerValue(report, PARTITION, last_offset, datetime.now(UTC))
    return Message(value)


REPORT = IndexReport(
    consumed=5,
    indexed=2,
    duplicate=1,
    rejected=1,
    dlq=1,
    rejected_by_reason={RejectReason.TOO_SHORT: 1},
)


def test_a_committed_batch_is_counted_with_each_outcome() -> None:
    commits, tally = Commits(), OutcomeTally("w")
    step = CommitAndCount(commits, tally)
    step.submit(_batch(REPORT, 41))
    assert commits.calls == [({PARTITION: 42}, True)]  # synchronous: it happened
    snapshot = tally.snapshot()
    assert (snapshot["consumed"], snapshot["indexed"], snapshot["duplicate"]) == (5, 2, 1)
    assert (snapshot["rejected"], snapshot["dlq"]) == (1, 1)
    assert snapshot["rejected_by_reason"] == {RejectReason.TOO_SHORT.value: 1}
    assert snapshot["consumed"] == sum(
        snapshot[o] for o in ("indexed", "duplicate", "rejected", "dlq")
    )


def test_a_batch_whose_commit_fails_is_not_counted() -> None:
    commits, tally = Commits(), OutcomeTally("w")
    commits.failing = True
    step = CommitAndCount(commits, tally)
    with pytest.raises(RuntimeError):
        step.submit(_batch(REPORT, 41))
    assert tally.snapshot()["consumed"] == 0


def test_filtered_offsets_are_committed_and_not_counted() -> None:
    commits, tally = Commits(), OutcomeTally("w")
    step = CommitAndCount(commits, tally)
    step.submit(_batch(FilteredPayload(), 9))
    step.join(1.0)
    assert commits.calls == [({PARTITION: 10}, True), ({}, True)]
    assert tally.snapshot()["consumed"] == 0
