"""How commands find a running `newsstream up`: the marker file it keeps in its data dir.

While it runs, `up` writes ``<data dir>/up.json`` with its pid and the addresses its services
use: the API base URL, the Kafka bootstrap and the Milvus URI (the local broker's and Milvus'
free ports when it started them, the configured ones otherwise). It removes the file when it
stops. ``newsstream search``, ``stats``, ``dlq`` and ``reconcile`` read it when their own
settings leave an address unset; explicit settings always win.

Guarantees: the marker is replaced atomically (a reader never sees half of it); a marker whose
process is gone (an `up` killed with -9) counts as nothing running.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

MARKER_NAME = "up.json"


@dataclass(frozen=True)
class RunningUp:
    """What a running `up` wrote: its pid and its services' addresses (``None`` when unknown)."""

    pid: int
    api: str | None = None
    kafka_bootstrap: str | None = None
    milvus_uri: str | None = None


def marker_path(data_dir: Path) -> Path:
    """Where `up` keeps its marker inside ``data_dir``."""
    return data_dir / MARKER_NAME


def write_marker(data_dir: Path, running: RunningUp) -> Path:
    """Write ``running`` as the marker of ``data_dir`` (atomically); returns its path."""
    path = marker_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{MARKER_NAME}.{os.getpid()}")
    partial.write_text(json.dumps(asdict(running)), encoding="utf-8")
    partial.replace(path)
    return path


def remove_marker(data_dir: Path) -> None:
    """Remove the marker of ``data_dir`` (nothing when there is none)."""
    marker_path(data_dir).unlink(missing_ok=True)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def running_up(data_dir: Path) -> RunningUp | None:
    """The `up` running with ``data_dir``, or ``None`` when no marker names a live process."""
    try:
        info = json.loads(marker_path(data_dir).read_text(encoding="utf-8"))
        pid = int(info.get("pid", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, run by another user
    return RunningUp(
        pid=pid,
        api=_text(info.get("api")),
        kafka_bootstrap=_text(info.get("kafka_bootstrap")),
        milvus_uri=_text(info.get("milvus_uri")),
    )
