"""Run services inside the test process: a worker on a thread, stopped cleanly on exit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from consumers.worker import Worker, build_worker
from core.settings import Settings


@contextmanager
def running_worker(settings: Settings, embedder: Any, **kwargs: Any) -> Iterator[Worker]:
    """A real worker (arroyo + local broker + Milvus) on a thread for the ``with`` body."""
    stop = threading.Event()
    processor = build_worker(settings, stop, embedder=embedder, **kwargs)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            processor.run()
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="worker", daemon=True)
    thread.start()
    try:
        yield processor
    finally:
        stop.set()
        processor.signal_shutdown()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop within 30 s"
        if errors:
            raise errors[0]
