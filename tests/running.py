"""Run services inside the test process: a worker or the API on a thread, stopped cleanly on
exit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from consumers.worker import Worker, build_worker
from core.settings import Settings
from newsstream.stack.launchers import free_port
from search_api.app import create_app

from probes import wait_until


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


@contextmanager
def serving(settings: Settings, embedder: Any) -> Iterator[str]:
    """The API app of ``settings`` served by uvicorn on a free 127.0.0.1 port; yields its base
    URL once it listens."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, embedder), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 60, "the API to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
