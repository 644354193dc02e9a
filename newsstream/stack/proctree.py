"""Processes on Linux: the descendants of a process, their memory, and stopping one or a tree.

Used by the benchmarks (peak RSS of a server and its helpers, killing what a store started) and
by the tests (nothing left behind after `newsstream up` stops).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from typing import Any


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(pid, ppid) from the text of ``/proc/<pid>/stat`` (the name may hold spaces and ')')."""
    pid = int(text.split(" ", 1)[0])
    rest = text[text.rindex(")") + 2 :].split()
    return pid, int(rest[1])


def descendants(parents: dict[int, int], root: int) -> set[int]:
    """``root`` and every process below it, from a pid -> ppid map."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tree_pids(root: int) -> set[int]:
    """``root`` and its live descendants (psutil when installed, else /proc); empty when
    ``root`` is gone."""
    try:
        import psutil  # type: ignore[import-untyped]

        proc = psutil.Process(root)
        return {root, *(c.pid for c in proc.children(recursive=True))}
    except ImportError:
        pass
    except Exception:
        return set()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                pid, ppid = parse_proc_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
            parents[pid] = ppid
    return descendants(parents, root) if root in parents else set()


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and its descendants (shared pages counted in each)."""
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def memory(pid: int) -> dict[str, int]:
    """Bytes of one process: ``rss`` (resident), ``pss`` (resident with each shared page divided
    among the processes that map it: sums over processes without counting a page twice),
    ``anon`` (anonymous resident: what the kernel cannot drop; memory-mapped files it can) and
    ``swap``; empty when the process is gone."""
    keys = {"Rss:": "rss", "Pss:": "pss", "Anonymous:": "anon", "Swap:": "swap"}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    figures: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in keys:
            figures[keys[parts[0]]] = int(parts[1]) * 1024
    return figures


def tree_memory(root: int) -> dict[str, int]:
    """:func:`memory` summed over ``root`` and its descendants."""
    total = {"rss": 0, "pss": 0, "anon": 0, "swap": 0}
    for pid in tree_pids(root):
        for key, value in memory(pid).items():
            total[key] += value
    return total


def format_mib(value: float | None) -> str:
    """``value`` bytes as MiB (GiB past 10 GiB), or '-'."""
    if value is None:
        return "-"
    mib = value / 2**20
    return f"{mib / 1024:.1f} GiB" if mib >= 10 * 1024 else f"{mib:.0f} MiB"


def stop_process(process: subprocess.Popen[Any], grace_s: float = 30) -> int | None:
    """SIGTERM ``process`` if it still runs, SIGKILL it after ``grace_s``; its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def kill_tree(root: int, grace_s: float = 10.0) -> None:
    """SIGTERM ``root``'s tree (children first), then SIGKILL what is left after ``grace_s``."""
    pids = [*sorted(tree_pids(root) - {root}), root]
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        if alive(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2 :].split()[0] != "Z"
