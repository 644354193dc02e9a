"""Shared fixtures: the real local broker (Tansu) and Milvus Lite server, test data, settings.

The broker and Milvus servers are started once per test session on free 127.0.0.1 ports and
stopped at the end. Each test gets its own topic, group and collection names through
:func:`make_settings`, so tests never see each other's data. Tests under ``tests/unit`` run
behind :func:`unit_layer_guard`: a subprocess, a network socket or a model load fails them.
"""

from __future__ import annotations

import multiprocessing.process
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from newsstream.stack.launchers import (
    free_port,
    local_milvus_command,
    tansu_command,
    wait_for_milvus,
    wait_for_port,
)
from newsstream.stack.proctree import stop_process

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()
NEWS_FEEDS = SHARED_DATA / "feeds" / "news"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def require_shared_data(*parts: str) -> Path:
    """The path of shared test data, or skip the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (see ../shared/data/README.md)")
    return path


# The unit layer's guard lives here rather than in tests/unit/conftest.py: both files would be
# imported as the module ``conftest``, and `from conftest import ...` in the other layers would
# then find the wrong one.
UNIT_DIR = ROOT / "tests" / "unit"

#: Fixtures that start servers or load the model: never in the unit layer.
SERVER_FIXTURES = frozenset(
    {
        "local_broker",
        "kafka_bootstrap",
        "local_milvus",
        "milvus_uri",
        "make_settings",
        "embedder",
        "redis_server",
    }
)


class UnitLayerViolation(AssertionError):
    """A unit test reached outside the process: a child process, a network socket, a model."""


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise UnitLayerViolation(
            f"tests/unit is pure and fast, but this test {what}: "
            "move it (or the part that does this) to tests/integration"
        )

    return refuse


def _network_only(what: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` for AF_UNIX sockets (socketpairs of event loops), refused otherwise."""

    def guarded(sock: socket.socket, *args: Any, **kwargs: Any) -> Any:
        if sock.family == socket.AF_UNIX:
            return original(sock, *args, **kwargs)
        return _refuse(what)()

    return guarded


def install_unit_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make child processes, network sockets and model loading raise :class:`UnitLayerViolation`."""
    started = "started a subprocess"
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse(started))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", _refuse(started))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        monkeypatch.setattr(os, name, _refuse(started))
    for name in ("connect", "connect_ex", "bind", "sendto"):
        original = getattr(socket.socket, name)
        monkeypatch.setattr(socket.socket, name, _network_only("opened a network socket", original))
    from embedding.embedder import Embedder

    monkeypatch.setattr(Embedder, "__init__", _refuse("loaded an embedding model"))


@pytest.fixture(autouse=True)
def unit_layer_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In ``tests/unit``: no subprocess, no network socket, no model (see :func:`install_unit_guard`)."""
    path = Path(request.node.path)
    if not path.is_relative_to(UNIT_DIR):
        return
    servers = sorted(SERVER_FIXTURES & set(request.fixturenames))
    if servers:  # session fixtures start before any function-scoped guard could refuse them
        raise UnitLayerViolation(f"tests/unit is pure, but this test uses {servers}")
    install_unit_guard(monkeypatch)


@pytest.fixture(scope="session")
def news_feeds_dir() -> Path:
    return require_shared_data("feeds", "news")


class LocalServer:
    """A child process on a port, stopped (SIGTERM, then SIGKILL) at teardown."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        handle = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(self.argv, stdout=handle, stderr=subprocess.STDOUT)
        if not wait_for_port(self.port, timeout_s):
            self.stop()
            raise RuntimeError(f"{self.argv[0]} did not listen on {self.port}; see {self.log}")

    def stop(self) -> None:
        if self.process:
            stop_process(self.process, grace_s=10)


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A Tansu broker for the session (in memory)."""
    port = free_port()
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    server = LocalServer(tansu_command(port), port, log)
    server.start(30)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalServer) -> str:
    return f"127.0.0.1:{local_broker.port}"


#: Which local Milvus the integration and fault layers run against: ``lite`` (Milvus Lite 3,
#: the default here: every feature in Milvus itself) or ``server`` (the PyPI ``milvus`` 2.3
#: server that `newsstream up` starts by default; `make test-server` runs the suite on it).
TEST_MILVUS = os.environ.get("NEWSSTREAM_TEST_MILVUS", "lite")


@pytest.fixture(scope="session")
def local_milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A local Milvus gRPC server (:data:`TEST_MILVUS`) for the session, on a fresh data dir."""
    yield from start_local_milvus(tmp_path_factory, TEST_MILVUS)


def start_local_milvus(
    tmp_path_factory: pytest.TempPathFactory, kind: str
) -> Iterator[LocalServer]:
    """Run a local Milvus of ``kind`` until the generator is closed."""
    if kind not in ("lite", "server"):
        raise ValueError(f"NEWSSTREAM_TEST_MILVUS must be lite or server, not {kind!r}")
    port = free_port()
    base = tmp_path_factory.mktemp(f"milvus-{kind}")
    argv = local_milvus_command("server" if kind == "server" else "lite", base, port)
    server = LocalServer(argv, port, base / "milvus.log")
    server.start(120)
    if not wait_for_milvus(f"http://127.0.0.1:{port}", 120):
        server.stop()
        raise RuntimeError(f"local Milvus ({kind}) did not answer; see {server.log}")
    try:
        yield server
    finally:  # closing the generator raises GeneratorExit at the yield: stop it there too
        server.stop()


@pytest.fixture(scope="module")
def milvus_server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a PyPI `milvus` 2.3.5 server for one module's tests that must run on it,
    whichever store the layer uses (stopped after the module)."""
    servers = start_local_milvus(tmp_path_factory, "server")
    server = next(servers)
    yield f"http://127.0.0.1:{server.port}"
    servers.close()


@pytest.fixture(scope="session")
def milvus_uri(local_milvus: LocalServer) -> str:
    return f"http://127.0.0.1:{local_milvus.port}"


@pytest.fixture
def unique_name() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def make_settings(
    kafka_bootstrap: str, milvus_uri: str, tmp_path: Path, unique_name: str, model_cache_dir: Path
) -> Callable[..., Settings]:
    """Settings on the session's broker and Milvus, with names unique to this test."""

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "kafka_bootstrap": kafka_bootstrap,
            "kafka_topic": f"{unique_name}.articles",
            "kafka_dlq_topic": f"{unique_name}.dlq",
            "kafka_search_events_topic": f"{unique_name}.search",
            "kafka_ledger_topic": f"{unique_name}.ledger",
            "kafka_group_id": f"{unique_name}-workers",
            "kafka_partitions": 3,
            "kafka_max_poll_interval_ms": 10_000,
            "kafka_session_timeout_ms": 6_000,
            "milvus_uri": milvus_uri,
            "milvus_collection": f"{unique_name}_articles",
            "embedding_cache_dir": model_cache_dir,
            "fetch_allow_networks": ["127.0.0.1/32"],
            "worker_batch_time_s": 0.3,
            # Tests read right after writing: on a Milvus server, Bounded reads lag by the
            # graceful time; Strong sees every acknowledged write.
            "milvus_search_consistency": "Strong",
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of exported models for the session's workers and `up`s: each of them would
    otherwise export the int8 model again into its fresh data dir (tests of the export itself
    use caches of their own).

    Under pytest-xdist the processes of one run share it (the parent of each process's base
    temp dir is the run's): the export cache serialises builders on a file lock and renames
    each finished entry into place, so two processes never see a half-written export.

    ``embedding_backend=auto`` is resolved into it here, once per run (a first start on a
    machine exports the int8 backends and measures them; the processes of a run share the
    record under a file lock), so that no test's `up` or worker spends its own time limit on
    that measurement.
    """
    from embedding.embedder import backend_decision

    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "models"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("models")
    backend_decision(Settings(embedding_cache_dir=path))
    return path


@pytest.fixture(scope="session")
def embedder(model_cache_dir: Path) -> Any:
    """The default embedding model, loaded once for the session."""
    from embedding.embedder import Embedder

    return Embedder(Settings(embedding_cache_dir=model_cache_dir))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A Debian redis-server on a free port (skips when the binary is missing)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    port = free_port()
    base = tmp_path_factory.mktemp("redis")
    argv = [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(base),
    ]
    server = LocalServer(argv, port, base / "redis.log")
    server.start(20)
    yield server
    server.stop()
