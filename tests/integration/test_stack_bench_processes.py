"""`newsstream bench stack` on real process trees: grouping by service, exited processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from newsstream.bench.stack import service_of, stack_memory, stack_table

pytestmark = pytest.mark.integration


def test_stack_memory_groups_grandchildren_with_their_parent_service() -> None:
    # root -> child ("python -u") -> grandchild: the grandchild counts under the child's name.
    spawn = "import subprocess, sys, time; subprocess.Popen([sys.executable, {}]); time.sleep(30)"
    child_code = spawn.format(repr("-c") + ", " + repr("import time; time.sleep(30)"))
    root_code = spawn.format(repr("-u") + ", " + repr("-c") + ", " + repr(child_code))
    root = subprocess.Popen([sys.executable, "-c", root_code], start_new_session=True)
    try:
        groups: dict[str, dict[str, int]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            groups = stack_memory(root.pid)
            child = [name for name in groups if name.endswith(" -u")]
            if child and groups[child[0]]["processes"] == 2:
                break
            time.sleep(0.05)
        assert [name for name in groups if name.endswith(" -u")], groups
        name = next(name for name in groups if name.endswith(" -u"))
        assert name.startswith("python")
        assert groups[name]["processes"] == 2
        assert groups[name]["pss"] > 0
        assert sum(g["processes"] for g in groups.values()) == 3  # the root on its own
        table = stack_table({"articles": 10, "memory": groups})
        assert table.row_count == len(groups) + 1
    finally:
        os.killpg(root.pid, signal.SIGKILL)  # the child and grandchild too
        root.wait()


def test_service_of_a_process_that_exited_is_gone() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert service_of(gone.pid) == "gone"
