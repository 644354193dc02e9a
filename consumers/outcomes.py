"""The worker's outcome tally: every consumed message ends in exactly one outcome.

Consumption is counted with the outcomes, when a batch is done (see ``consumers.indexer``), so
a message that a worker gave up (rebalance, shutdown) is counted by the worker that finishes it.

:class:`OutcomeTally` counts messages consumed and outcomes (indexed, duplicate,
rejected by reason, dlq) both in Prometheus and in a local snapshot that the worker publishes
as its status, so ``GET /stats`` and ``newsstream stats`` can show them per worker and in total.
The conservation check: ``consumed == indexed + duplicate + rejected + dlq`` once the worker
has no batch in flight.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from core.metrics import MESSAGES_CONSUMED, OUTCOMES, TIME_TO_SEARCHABLE, Outcome, RejectReason


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
