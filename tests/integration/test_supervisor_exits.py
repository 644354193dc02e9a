"""The `up` supervisor with real child processes: a child that dies is restarted, a child that
refuses its configuration (exit code 2) stops the supervisor with a ConfigurationError instead
of being restarted forever."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from newsstream.stack.supervisor import Child, Supervisor

pytestmark = pytest.mark.integration


def _child(tmp_path: Path, name: str, code: int) -> Child:
    return Child(
        name=name,
        argv=[sys.executable, "-c", f"import sys; sys.exit({code})"],
        env={},
        log_path=tmp_path / f"{name}.log",
    )


def _watch(supervisor: Supervisor) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            supervisor.watch(status_every_s=60)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def test_a_child_refusing_its_configuration_stops_the_supervisor(tmp_path: Path) -> None:
    supervisor = Supervisor()
    supervisor.add(_child(tmp_path, "worker", 2))
    thread, raised = _watch(supervisor)
    thread.join(10)
    supervisor.stop()
    assert not thread.is_alive(), "the supervisor kept restarting a misconfigured child"
    assert len(raised) == 1 and isinstance(raised[0], ConfigurationError)
    assert "worker refused its configuration" in str(raised[0])
    assert supervisor.children[0].restarts == 0


def test_a_child_that_dies_otherwise_is_restarted(tmp_path: Path) -> None:
    supervisor = Supervisor()
    child = _child(tmp_path, "producer", 1)
    supervisor.add(child)
    thread, raised = _watch(supervisor)
    # restarted after 1 s, then 2 s: two restarts within 10 s
    for _ in range(100):
        if child.restarts >= 2:
            break
        thread.join(0.1)
    supervisor.stop()
    thread.join(5)
    assert child.restarts >= 2
    assert not raised
