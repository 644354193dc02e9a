"""The worker's outcome tally: every consumed message ends in exactly one outcome.

:class:`OutcomeTally` counts messages consumed and outcomes (indexed, duplicate,
rejected by reason, dlq) both in Prometheus and in a local snapshot that the worker publishes
as its status, so ``GET /stats`` and ``newsstream stats`` can show them per worker and in total.
The conservation check: ``consumed == indexed + duplicate + rejected + dlq`` once the worker
has no batch in flight.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from core.metrics import MESSAGES_CONSUMED, OUTCOMES, Outcome, RejectReason


class OutcomeTally:
    """Thread-safe counters of one worker process."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._consumed = 0
        self._outcomes: dict[str, int] = {o.value: 0 for o in Outcome}
        self._rejected: dict[str, int] = {}

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
            }
