"""The local Milvus stores `newsstream bench stores` compares, and how each one is started.

In: a store key of :data:`STORES` and, for a store that cannot share ``.venv``, the newsstream
data dir (its side venv lives in ``<data dir>/stores/<venv>``, created on first use with pip).
Out: :func:`running_store` yields a :class:`RunningStore` (client URI, server process, RSS
sampler) once a client can list collections.

Guaranteed: each store runs on a throw-away data dir in its own session (process group), and its
whole process tree is killed and the data dir deleted on exit, whatever happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from newsstream.stack.launchers import free_port, milvus_lite_command, milvus_server_command
from newsstream.stack.proctree import kill_tree, tree_rss
from store.client import connect


@dataclass(frozen=True)
class StoreSpec:
    """A local Milvus: its key, a label, the vector index it can build, and its side venv.

    ``requirements`` empty means the store runs from the project's own environment; otherwise
    they are installed in ``<data dir>/stores/<venv>``.
    """

    key: str
    label: str
    index_type: str
    requirements: tuple[str, ...] = ()
    venv: str = ""


STORES: dict[str, StoreSpec] = {
    spec.key: spec
    for spec in (
        StoreSpec("lite-3.2", "Milvus Lite 3.2.2 (Python)", "HNSW"),
        StoreSpec(
            "lite-2.5",
            "Milvus Lite 2.5.1 (C++)",
            "FLAT",
            ("milvus-lite==2.5.1", "setuptools<81"),
            "milvus-lite-2.5.1",
        ),
        StoreSpec("milvus-2.3", "milvus 2.3.5 standalone", "HNSW"),
    )
}


def parse_stores(value: str) -> list[str]:
    """Store keys from a comma-separated list (``all`` for every store), in the order given.

    Raises ValueError naming the unknown keys.
    """
    if value.strip() in ("", "all"):
        return list(STORES)
    keys: list[str] = []
    for raw in value.split(","):
        key = raw.strip()
        if key and key not in keys:
            keys.append(key)
    unknown = [k for k in keys if k not in STORES]
    if unknown:
        raise ValueError(f"unknown store(s) {unknown}: choose from {sorted(STORES)}")
    return keys


def side_venv(spec: StoreSpec, data_dir: Path, console: Console) -> Path:
    """The venv ``<data_dir>/stores/<spec.venv>`` with ``spec.requirements``, made if missing.

    A venv is marked complete by a ``.complete`` file, so an interrupted install is redone.
    """
    venv = data_dir / "stores" / spec.venv
    marker = venv / ".complete"
    if marker.exists():
        return venv
    console.print(f"[dim]creating {venv} with {' '.join(spec.requirements)}[/dim]")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *spec.requirements],
        check=True,
        timeout=1800,
    )
    marker.write_text(" ".join(spec.requirements) + "\n")
    return venv


def store_command(
    spec: StoreSpec, workdir: Path, port: int, venv: Path | None
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of ``spec``'s gRPC server on 127.0.0.1:``port`` in ``workdir``.

    Milvus Lite 2.5.1's C++ binary serves TCP when given ``host:port`` instead of a unix socket
    (``<bin> <db file> <address> <log level>``); the ``milvus`` 2.3.5 server runs through
    :mod:`newsstream.stack.milvus_server`.
    """
    env = dict(os.environ)
    if spec.key == "lite-3.2":
        return milvus_lite_command(workdir / "milvus", port), env
    if spec.key == "milvus-2.3":
        # The `local` extra installs it; the same launcher as `newsstream up` (free ports for
        # every internal service, the embedded etcd's included).
        return milvus_server_command(workdir, port), env
    assert venv is not None
    if spec.key == "lite-2.5":
        binaries = sorted(venv.glob("lib/python*/site-packages/milvus_lite/lib/milvus"))
        if not binaries:
            raise RuntimeError(f"no milvus_lite/lib/milvus in {venv}")
        libdir = binaries[0].parent
        env["LD_LIBRARY_PATH"] = f"{libdir}:{env.get('LD_LIBRARY_PATH', '')}"
        return [str(binaries[0]), str(workdir / "lite.db"), f"127.0.0.1:{port}", "ERROR"], env
    raise ValueError(spec.key)


class RssSampler:
    """Samples the RSS of a process tree every ``interval_s`` in a thread; keeps the peak."""

    def __init__(self, root: int, interval_s: float = 0.5) -> None:
        self.root = root
        self.peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.sample()

    def sample(self) -> int:
        """Measure now; returns the current RSS in bytes."""
        self.last = tree_rss(self.root)
        self.peak = max(self.peak, self.last)
        return self.last

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class RunningStore:
    """A started store: its client URI, server process and RSS sampler."""

    uri: str
    process: subprocess.Popen[bytes]
    rss: RssSampler
    workdir: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        """The end of the server's own logs (for an error report)."""
        parts = []
        for log in [self.workdir / "server.log", self.workdir / "logs" / "milvus-stderr.log"]:
            if log.exists():
                parts.append(f"{log.name}: " + log.read_text(errors="replace")[-chars:])
        return "\n".join(parts)


@contextmanager
def running_store(
    spec: StoreSpec, venv: Path | None, timeout_s: float = 180
) -> Iterator[RunningStore]:
    """Start ``spec`` on a temporary data dir; yield once a client can list collections.

    The server's tree is killed and the data dir deleted on exit, whatever happened.
    """
    with tempfile.TemporaryDirectory(prefix=f"newsstream-store-{spec.key}-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        argv, env = store_command(spec, workdir, port, venv)
        with open(workdir / "server.log", "wb") as log:
            process = subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        store = RunningStore(f"http://127.0.0.1:{port}", process, RssSampler(process.pid), workdir)
        try:
            _wait_ready(store, timeout_s)
            yield store
        finally:
            store.rss.stop()
            kill_tree(process.pid)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_ready(store: RunningStore, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not store.alive():
            raise RuntimeError(f"server exited at start:\n{store.log_tail()}")
        try:
            connect(store.uri, timeout=5).list_collections()
            return
        except Exception as exc:  # not listening yet, or still starting its coordinators
            last = exc
            time.sleep(1)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s: {last}")
