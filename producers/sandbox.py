"""The parse sandbox: feed parsing in a small pool of child processes bounded in CPU and memory.

What goes in: the arguments of :func:`producers.parser.parse_feed`. What comes out: its
:class:`~producers.parser.ParsedFeed`, or a :class:`core.errors.FeedError` (``parse_error``
when the parser ran out of CPU time or memory, crashed, or died; ``timeout`` when it did not
answer within the wall-clock bound). Nothing a feed does inside the parser can take the
producer down.

Guarantees:
- Each worker runs with ``RLIMIT_AS`` (address space) set to ``memory_mb``; an allocation past
  it fails inside the worker (MemoryError) and becomes a ``parse_error``.
- Before each parse the worker sets its soft ``RLIMIT_CPU`` to its CPU time so far plus
  ``cpu_s``: a parse that burns more is killed by the kernel (SIGXCPU), the parent sees the
  worker die, replaces it and reports a ``parse_error``.
- A parse that does not answer within ``timeout_s`` of wall-clock time (blocked, or stuck in C
  code) has its worker killed (SIGKILL) and replaced.
- One bad feed only costs its own worker; the other parses in flight are not affected.
- Workers are fresh interpreters (``python -c``) talking pickles over their stdin and stdout:
  the producer has threads (Kafka's among them) that must not be forked, and multiprocessing's
  spawn would re-run the caller's main module.

Cost, measured on the 2-core box: about 1 ms of IPC per feed for the real news feeds, and the
pool parses on two cores instead of one thread under the GIL, so it is a net gain for a cycle
where many feeds changed.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from core.errors import FeedError
from core.metrics import FetchResult
from producers.parser import ParsedFeed, parse_feed

log = logging.getLogger(__name__)

ParseFunction = Callable[..., Any]


def _limit_cpu(cpu_s: float) -> None:
    """Let this process use at most ``cpu_s`` more seconds of CPU (soft RLIMIT_CPU)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + cpu_s)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _worker_main(conn: Connection, target: ParseFunction, cpu_s: float, memory_mb: int) -> None:
    """A worker: receives ``(args, kwargs)``, answers ``("ok", result)`` or ``("err", kind, msg)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        args, kwargs = request
        _limit_cpu(cpu_s)
        try:
            answer: tuple[Any, ...] = ("ok", target(*args, **kwargs))
        except FeedError as exc:
            answer = ("err", exc.kind, str(exc).removeprefix(f"{exc.kind}: "))
        except MemoryError:
            answer = ("err", FetchResult.PARSE_ERROR, f"parser exceeded {memory_mb} MB")
        except RecursionError:
            answer = ("err", FetchResult.PARSE_ERROR, "parser exceeded the recursion limit")
        except Exception as exc:
            # A hostile body that trips a parser bug is that feed's named error, not a crash.
            answer = ("err", FetchResult.PARSE_ERROR, f"parser failed: {type(exc).__name__}")
        try:
            conn.send(answer)
        except MemoryError:
            conn.send(("err", FetchResult.PARSE_ERROR, f"result exceeded {memory_mb} MB"))


def serve_stdio() -> None:
    """Entry point of a worker process: the first message on stdin says what to run.

    stdout carries the answers, so anything the parser prints goes to stderr instead.
    """
    reader = Connection(os.dup(0), writable=False)
    writer = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    path, target_spec, cpu_s, memory_mb = reader.recv()
    sys.path[:] = path
    module_name, _, qualname = target_spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    _worker_main(_Duplex(reader, writer), target, cpu_s, memory_mb)  # type: ignore[arg-type]


class _Duplex:
    """Two one-way connections used as one (the worker's stdin and stdout)."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self._reader = reader
        self._writer = writer

    def recv(self) -> Any:
        return self._reader.recv()

    def send(self, obj: Any) -> None:
        self._writer.send(obj)

    def poll(self, timeout: float) -> bool:
        return self._reader.poll(timeout)

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    @property
    def closed(self) -> bool:
        return self._reader.closed


class _Worker:
    """One child process (a fresh interpreter started with subprocess) and its pipes.

    Not multiprocessing: its spawn method re-imports the parent's main module, which breaks
    under scripts without a ``__main__`` guard, and fork is unsafe in a threaded producer.
    """

    def __init__(self, target_spec: str, cpu_s: float, memory_mb: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from producers.sandbox import serve_stdio; serve_stdio()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.conn = _Duplex(
            Connection(os.dup(self.process.stdout.fileno()), writable=False),
            Connection(os.dup(self.process.stdin.fileno()), readable=False),
        )
        self.process.stdin.close()
        self.process.stdout.close()
        self.conn.send((list(sys.path), target_spec, cpu_s, memory_mb))

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.process.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class ParserPool:
    """A fixed number of sandboxed parser processes shared by the scheduler's threads.

    ``target`` is the parse function run in the workers (:func:`parse_feed` unless a test
    passes another importable function). :meth:`parse` blocks until a worker is free.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        cpu_s: float = 10.0,
        memory_mb: int = 1024,
        timeout_s: float = 30.0,
        target: ParseFunction = parse_feed,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a parser pool needs at least one worker, got {workers}")
        self._target = f"{target.__module__}:{target.__qualname__}"
        self._cpu_s = cpu_s
        self._memory_mb = memory_mb
        self._timeout_s = timeout_s
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.replaced = 0  # workers killed or lost and started again (for tests and logs)
        for _ in range(workers):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        worker = _Worker(self._target, self._cpu_s, self._memory_mb)
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            self.replaced += 1
            closed = self._closed
        if not closed:
            self._idle.put(self._spawn())

    def parse(self, body: bytes, **kwargs: Any) -> ParsedFeed:
        """Parse ``body`` in a worker (keyword arguments as :func:`parse_feed` takes them)."""
        if self._closed:
            raise RuntimeError("the parser pool is closed")
        worker = self._idle.get()
        try:
            worker.conn.send(((body,), kwargs))
            if not worker.conn.poll(self._timeout_s):
                self._replace(worker)
                raise FeedError(
                    FetchResult.TIMEOUT, f"parsing took longer than {self._timeout_s} s"
                )
            answer = worker.conn.recv()
        except (EOFError, OSError):
            try:
                code: int | None = worker.process.wait(2)
            except subprocess.TimeoutExpired:
                code = None
            self._replace(worker)
            cause = _death_cause(code, self._cpu_s)
            raise FeedError(FetchResult.PARSE_ERROR, f"parser process died: {cause}") from None
        except BaseException:
            if not worker.conn.closed:
                self._replace(worker)
            raise
        self._idle.put(worker)
        if answer[0] == "ok":
            result: ParsedFeed = answer[1]
            return result
        raise FeedError(answer[1], answer[2])

    def pids(self) -> list[int]:
        """Process ids of the live workers (for memory accounting)."""
        with self._lock:
            return [w.process.pid for w in self._all]

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.stop()


def _death_cause(exitcode: int | None, cpu_s: float) -> str:
    if exitcode is None:
        return "no answer"
    if exitcode == -signal.SIGXCPU:
        return f"CPU time over {cpu_s} s"
    if exitcode == -signal.SIGKILL:
        return "killed (out of memory?)"
    if exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"
