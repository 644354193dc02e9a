"""One process of a test topology (:class:`Service`: start, restart in place, kill -9, stop,
its log) and a worker's outcome counters read from its /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from metrics_scrape import scrape

from newsstream.stack.launchers import wait_for_port
from newsstream.stack.proctree import stop_process

from worker_procs import ROOT


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@dataclass
class Service:
    """One process of the topology: how to start it, its log, the ports it answers on.

    ``start`` may be called again after the process exited or was killed: the same argv,
    environment and ports (a restart in place, as an orchestrator does).
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None  # the port that tells it is up (its /metrics, API or server port)
    metrics_port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Service:
        handle = open(self.log, "ab")  # noqa: SIM115 - closed by the OS when the child exits
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_listening(self, timeout_s: float) -> None:
        """Wait until :attr:`port` accepts connections; fail with the log when it exits first."""
        assert self.port is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited: {self.tail()}")
            if wait_for_port(self.port, 0.5):
                return
        raise AssertionError(f"{self.name} did not listen on {self.port}: {self.tail()}")

    def kill9(self) -> None:
        """SIGKILL, no goodbye (no last commit, no last status), and reap it."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, grace_s: float = 20) -> int | None:
        """SIGTERM, SIGKILL after ``grace_s``; the exit code (None when never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:  # a stopped (SIGSTOP) process must see the SIGTERM
            os.kill(self.process.pid, signal.SIGCONT)
        return stop_process(self.process, grace_s)

    def tail(self) -> str:
        return f"\n--- {self.log} ---\n{_log_tail(self.log)}"


def worker_counters(port: int) -> dict[str, float] | None:
    """A worker's outcome counters from its /metrics: consumed and each outcome (summed over
    reasons); None when nothing answers on ``port``."""
    samples = scrape(port)
    if samples is None:
        return None
    counters = {
        "consumed": sum(s.value for s in samples.get("newsstream_messages_consumed_total", []))
    }
    for sample in samples.get("newsstream_outcomes_total", []):
        outcome = sample.labels["outcome"]
        counters[outcome] = counters.get(outcome, 0.0) + sample.value
    return counters
