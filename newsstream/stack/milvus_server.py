"""Run the PyPI ``milvus`` server (Milvus 2.3 standalone, C++ engine) in the foreground.

``python -m newsstream.stack.milvus_server --data DIR --port PORT`` serves gRPC on 127.0.0.1:PORT
with everything (etcd, segments, logs) under DIR, and keeps the data across restarts.

The ``milvus`` package ships the standalone binary and a Python wrapper that starts it as a
grandchild; a supervisor's SIGTERM (or the parent-death signal) would then leave the binary
running. This launcher lets the wrapper do what it is good at (write the config with free ports
for the internal services, unpack the binary) and then replaces itself with the binary
(``execve``), so the server is the supervised process itself and signals reach it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import types
from pathlib import Path
from typing import Any

from newsstream.stack.launchers import free_port

#: Staleness bound of Bounded-consistency reads, in ms (see ``milvus_search_consistency``).
GRACEFUL_TIME_MS = 500
#: Seconds the server may spend stopping gracefully after SIGTERM.
GRACEFUL_STOP_S = 2
#: Lease of the coordinators' etcd sessions, in seconds (Milvus's default 30). A restarted
#: server waits for the old sessions to lapse before it serves: 56 s at 30, 25 s at 10,
#: measured here. The lease is renewed every third of it inside the server's own process.
SESSION_TTL_S = 10


def main(argv: list[str] | None = None) -> None:
    """Parse ``--data`` and ``--port``, prepare the server and exec it (does not return)."""
    parser = argparse.ArgumentParser(prog="python -m newsstream.stack.milvus_server")
    parser.add_argument("--data", type=Path, required=True, help="data dir of the server")
    parser.add_argument("--port", type=int, required=True, help="gRPC port on 127.0.0.1")
    args = parser.parse_args(argv)
    try:
        import milvus
    except ImportError:
        sys.exit(
            "the PyPI `milvus` server is not installed: install the `local` extra "
            "(pip install 'newsstream[local]') or set NEWSSTREAM_LOCAL_MILVUS=lite"
        )
    data_dir = args.data.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = milvus.MilvusServer()
    server.set_base_dir(str(data_dir))
    # The wrapper probes each internal port upwards from Milvus's fixed defaults (53100, ...),
    # so two servers starting at once can pick the same one. Ports the kernel just handed out
    # as free make that unlikely.
    for key in list(server.config.configurable_items):
        if key.endswith("_port"):
            server.config.set(key, free_port())
    server.config.set("proxy_port", args.port)
    # Bounded-consistency reads see writes this many ms old (Milvus's default is 5000, which
    # would put 5 s into every article's time-to-searchable).
    server.config.set("common.gracefulTime", GRACEFUL_TIME_MS)
    # SIGTERM: stop within the supervisor's grace time instead of Milvus's default 30 minutes.
    server.config.set("common.gracefulStopTimeout", GRACEFUL_STOP_S)
    server.config.set("common.session.ttl", SESSION_TTL_S)
    # The wrapper probes each port with a plain bind and, when that fails, silently moves the
    # port upwards. Right after a SIGKILL the old server's connections linger in TIME_WAIT on
    # the gRPC port, so a plain bind fails and the server would come back on PORT+1, where no
    # client looks. Milvus itself listens with SO_REUSEADDR; probing the same way keeps PORT.
    server.config.try_bind_port = types.MethodType(_bind_reusing_address, server.config)
    server.config.resolve()  # writes configs/milvus.yaml; releases the ports it probed
    resolved = int(server.config.get("proxy_port"))
    if resolved != args.port:
        sys.exit(
            f"the Milvus server cannot listen on 127.0.0.1:{args.port} (another process holds "
            f"it); the wrapper would have moved it to {resolved}, where no client looks"
        )
    _embedded_etcd_on_free_ports(data_dir, server.config)
    milvus._initialize_data_files(server.config.base_data_dir)
    metrics_port = free_port()
    exe = server.get_milvus_executable_path()
    env = os.environ.copy()
    env.update(
        {
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(metrics_port),
            "MILVUS_RUN_DIR": str(data_dir / "run"),
            "LD_LIBRARY_PATH": os.pathsep.join(
                p for p in (str(Path(exe).parent), env.get("LD_LIBRARY_PATH", "")) if p
            ),
        }
    )
    os.chdir(data_dir)
    sys.stdout.flush()
    os.execve(exe, [exe, "run", "standalone"], env)


def _bind_reusing_address(_config: Any, port: int) -> socket.socket | None:
    """The wrapper's port probe (a listening socket on 127.0.0.1:``port``, or ``None`` when it
    cannot be bound), binding with SO_REUSEADDR as the server itself will."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


def _embedded_etcd_on_free_ports(data_dir: Path, config: Any) -> None:
    """Give the embedded etcd a config of its own: its peer port is otherwise the fixed 2380,
    which a second server on the machine cannot bind (it then crashes at start)."""
    client_port = int(config.configurable_items["etcd_port"][1])
    peer = f"http://127.0.0.1:{free_port()}"
    etcd_config = data_dir / "configs" / "etcd.yaml"
    etcd_config.write_text(
        "\n".join(
            [
                "name: newsstream",
                f"data-dir: {data_dir / 'data' / 'etcd.data'}",
                f"listen-client-urls: http://127.0.0.1:{client_port}",
                f"advertise-client-urls: http://127.0.0.1:{client_port}",
                f"listen-peer-urls: {peer}",
                f"initial-advertise-peer-urls: {peer}",
                f"initial-cluster: newsstream={peer}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    milvus_config = data_dir / "configs" / "milvus.yaml"
    text = milvus_config.read_text(encoding="utf-8")
    if "\netcd:\n" not in "\n" + text:
        raise RuntimeError(f"no etcd section in {milvus_config}")
    text = ("\n" + text).replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd_config}\n", 1)
    milvus_config.write_text(text[1:], encoding="utf-8")


if __name__ == "__main__":
    main()
