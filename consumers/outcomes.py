"""The worker's outcome tally: every consumed message ends in exactly one outcome.

What "consumed" means: a message is counted, with its outcome, when the worker commits its
offset (:class:`consumers.commit.CommitAndCount`, the last step of the chain). Delivery is
at-least-once: after a rebalance or a restart, messages whose offsets were not committed are
delivered again, and a batch may even be finished by a worker that just lost its partitions
(arroyo's join timeout at a revocation, or a shutdown). Such a batch is not counted where its commit never happened,
only where it did, so a re-delivered message counts once. With the group at lag 0, the sum of
``consumed`` over the workers equals the messages in the topic, and per worker and in total:
``consumed == indexed + duplicate + rejected + dlq + deleted + expired`` (the conservation
check; ``deleted`` and ``expired`` count tombstones, by the reason their header gives).

Left out of that guarantee: a commit that failed (broker lost, partitions lost to a session
timeout; the offsets are re-delivered and counted again by whoever commits them), and the
counts of a worker killed with SIGKILL since it last published its status.

:class:`OutcomeTally` holds the counters both in Prometheus and in a local snapshot that the
worker publishes as its status, so ``GET /stats`` and ``newsstream stats`` can show them per
worker and in total.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.metrics import MESSAGES_CONSUMED, OUTCOMES, TIME_TO_SEARCHABLE, Outcome, RejectReason


@dataclass(frozen=True)
class IndexReport:
    """What one batch became: its message count and how many ended in each outcome."""

    consumed: int
    indexed: int
    duplicate: int
    rejected: int
    dlq: int
    deleted: int = 0
    expired: int = 0
    rejected_by_reason: Mapping[RejectReason, int] = field(default_factory=dict)


class OutcomeTally:
    """Thread-safe counters of one worker process."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._consumed = 0
        self._outcomes: dict[str, int] = {o.value: 0 for o in Outcome}
        self._rejected: dict[str, int] = {}
        self._tts: deque[float] = deque(maxlen=2_000)

    def consumed(self, n: int = 1) -> None:
        MESSAGES_CONSUMED.inc(n)
        with self._lock:
            self._consumed += n

    def outcome(
        self, outcome: Outcome, n: int = 1, reason: RejectReason = RejectReason.NONE
    ) -> None:
        if n <= 0:
            return
        OUTCOMES.labels(outcome, reason).inc(n)
        with self._lock:
            self._outcomes[outcome.value] += n
            if outcome is Outcome.REJECTED:
                self._rejected[reason.value] = self._rejected.get(reason.value, 0) + n

    def count(self, report: IndexReport) -> None:
        """Count a committed batch: its messages as consumed, each with its outcome."""
        self.consumed(report.consumed)
        for reason, n in report.rejected_by_reason.items():
            self.outcome(Outcome.REJECTED, n, reason)
        self.outcome(Outcome.INDEXED, report.indexed)
        self.outcome(Outcome.DUPLICATE, report.duplicate)
        self.outcome(Outcome.DLQ, report.dlq)
        self.outcome(Outcome.DELETED, report.deleted)
        self.outcome(Outcome.EXPIRED, report.expired)

    def time_to_searchable(self, seconds: list[float]) -> None:
        """Record time-to-searchable samples (produce to acknowledged upsert), seconds."""
        for value in seconds:
            TIME_TO_SEARCHABLE.observe(value)
        with self._lock:
            self._tts.extend(seconds)

    def tts_percentiles(self) -> dict[str, float | None]:
        """p50/p95/p99 of the last 2,000 time-to-searchable samples (None when none yet)."""
        with self._lock:
            return self._tts_unlocked()

    def dlq_ratio(self) -> tuple[int, float]:
        """(messages consumed, share of them sent to the DLQ)."""
        with self._lock:
            consumed = self._consumed
            return consumed, (self._outcomes[Outcome.DLQ.value] / consumed if consumed else 0.0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "worker": self.worker_id,
                "started_at": self.started_at,
                "consumed": self._consumed,
                **self._outcomes,
                "rejected_by_reason": dict(self._rejected),
                "tts_samples": len(self._tts),
            } | self._tts_unlocked()

    def _tts_unlocked(self) -> dict[str, float | None]:
        ordered = sorted(self._tts)
        if not ordered:
            return {"tts_p50_s": None, "tts_p95_s": None, "tts_p99_s": None}
        return {
            f"tts_p{int(q * 100)}_s": ordered[min(len(ordered) - 1, int(q * len(ordered)))]
            for q in (0.5, 0.95, 0.99)
        }
