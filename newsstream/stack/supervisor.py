"""The `up` supervisor: starts the local parts and the services as child processes, watches
them, restarts the ones that die (with backoff), and stops everything on Ctrl-C or SIGTERM.

Guarantees:
- children run in their own process group and are told by the kernel to die with the
  supervisor (PR_SET_PDEATHSIG), so even a kill -9 of `up` leaves no child behind;
- on stop, services get SIGTERM first (API, worker, producer, then Milvus and the broker),
  and whatever is still alive after ``STOP_GRACE_S`` gets SIGKILL: everything is gone within
  10 s;
- a child that exits unexpectedly is reported on stderr and restarted after 1, 2, 4 ... 30 s;
- except a child that exits with :data:`CONFIGURATION_EXIT` (the CLI's code for bad
  configuration: a model the collection refuses, an invalid setting): restarting cannot help, so
  :meth:`Supervisor.watch` raises :class:`core.errors.ConfigurationError` naming it, and `up`
  stops everything and exits with that code.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from core.errors import ConfigurationError

log = logging.getLogger(__name__)

STOP_GRACE_S = 7.0
MAX_RESTART_BACKOFF_S = 30.0
#: The exit code of a command that refused its configuration (``newsstream.cli.common.fail``).
CONFIGURATION_EXIT = 2
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    os.setpgrp()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    restart: bool = True
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start_at: float = 0.0
    started_at: float = 0.0
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.close_log()  # the previous run's (a restart must not leak a file descriptor)
        handle = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's life
        self._log_file = handle
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT if self.name in ("broker", "milvus") else None,
            preexec_fn=_die_with_parent,
        )
        self.started_at = time.monotonic()

    def close_log(self) -> None:
        """Close the log file the last start opened, if any."""
        handle, self._log_file = self._log_file, None
        if handle is not None:
            handle.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)


class Supervisor:
    """Runs children in order and keeps them alive until :meth:`stop`."""

    def __init__(self, on_status: Callable[[], None] | None = None) -> None:
        self.children: list[Child] = []
        self._stop = threading.Event()
        # Held while the watch loop restarts a child and while stop() runs, so stop() never
        # closes the log of a child that is being started (the restart would then hand the
        # child a closed file: EBADF) and no child starts once stop() began.
        self._starting = threading.Lock()
        self.on_status = on_status

    def add(
        self, child: Child, ready: Callable[[], bool] | None = None, timeout_s: float = 60
    ) -> None:
        """Start ``child`` now; with ``ready``, wait until it reports ready (or fail loudly)."""
        self.children.append(child)
        child.start()
        if ready is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if not child.alive():
                raise RuntimeError(f"{child.name} exited during start; see {child.log_path}")
            if ready():
                return
            time.sleep(0.2)
        if not self._stop.is_set():
            raise RuntimeError(
                f"{child.name} not ready after {timeout_s:.0f} s; see {child.log_path}"
            )

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def watch(self, status_every_s: float = 2.0) -> None:
        """Restart dead children with backoff until :meth:`request_stop`.

        Raises :class:`ConfigurationError` when a child exits with :data:`CONFIGURATION_EXIT`
        (its own error is already on stderr or in its log)."""
        last_status = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            for child in self.children:
                if child.process is None or child.alive():
                    if child.alive() and now - child.started_at > 60:
                        child.restarts = 0  # a minute up resets the backoff
                    continue
                if child.next_start_at == 0.0:
                    code = child.process.returncode
                    if code == CONFIGURATION_EXIT:
                        raise ConfigurationError(
                            f"{child.name} refused its configuration (exit code {code}; its "
                            f"error is above, or in {child.log_path}): fix it and start again"
                        )
                    delay = min(MAX_RESTART_BACKOFF_S, 2.0**child.restarts)
                    print(
                        f"newsstream: {child.name} exited with code {code}; restarting in "
                        f"{delay:.0f} s (log: {child.log_path})",
                        file=sys.stderr,
                        flush=True,
                    )
                    child.next_start_at = now + delay
                elif now >= child.next_start_at and child.restart:
                    with self._starting:
                        if self._stop.is_set():
                            return
                        child.restarts += 1
                        child.next_start_at = 0.0
                        child.start()
            if self.on_status and now - last_status >= status_every_s:
                last_status = now
                self.on_status()
            self._stop.wait(0.25)

    def stop(self) -> None:
        """SIGTERM every child (services first), SIGKILL what is left after the grace time."""
        self._stop.set()
        with self._starting:  # a restart in progress finishes first; none starts after
            self._stop_children()

    def _stop_children(self) -> None:
        services = [c for c in self.children if c.name not in ("broker", "milvus")]
        infra = [c for c in self.children if c.name in ("broker", "milvus")]
        for group, grace in (
            (list(reversed(services)), STOP_GRACE_S * 0.7),
            (infra, STOP_GRACE_S * 0.3),
        ):
            for child in group:
                child.signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in group:
                while child.alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
            for child in group:
                if child.alive():
                    log.warning("%s did not stop in time; killing it", child.name)
                    child.signal(signal.SIGKILL)
        for child in self.children:
            if child.process is not None:
                try:
                    child.process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    child.signal(signal.SIGKILL)
            child.close_log()
