"""Retrying a dependency through an outage: capped exponential backoff with jitter.

What goes in: an action that talks to a dependency (Milvus, Kafka, Redis) and the worker's stop
event. What comes out: the action's result, once it succeeds. Guarantee: an outage is waited
out for as long as it lasts (never turned into a DLQ write or a drop); once ``stop`` is set the
wait ends with :class:`Abandoned`, and the batch that waited is left unacknowledged (its offsets
are not committed, so it is consumed again).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from pymilvus import MilvusException
from redis.exceptions import RedisError

from core.errors import TransientError
from core.metrics import RETRIES

log = logging.getLogger(__name__)


class Abandoned(Exception):
    """The worker is stopping while a batch waited for a dependency; it will be re-consumed."""


def retry_transient(
    action: Callable[[], Any],
    *,
    dependency: str,
    stop: threading.Event,
    max_backoff_s: float,
    base_s: float = 0.25,
) -> Any:
    """Run ``action`` until it succeeds, sleeping with capped exponential backoff and jitter on
    :class:`TransientError`, ``MilvusException`` or connection errors; raises
    :class:`Abandoned` once ``stop`` is set."""
    attempt = 0
    while True:
        if stop.is_set():
            raise Abandoned(f"stopping while waiting for {dependency}")
        try:
            return action()
        except (TransientError, MilvusException, RedisError, ConnectionError, TimeoutError) as exc:
            attempt += 1
            RETRIES.labels(dependency).inc()
            delay = random.uniform(base_s, min(max_backoff_s, base_s * 2 ** min(attempt, 16)))
            log.warning("%s unavailable (%s); retry %d in %.1f s", dependency, exc, attempt, delay)
            stop.wait(delay)
