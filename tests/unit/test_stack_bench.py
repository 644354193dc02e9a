"""The pure parts of `newsstream bench stack` (the bench itself runs the whole stack)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from newsstream.stack_bench import (
    REBUILT,
    service_of,
    stack_memory,
    stack_table,
    synthetic_texts,
    vocabulary,
)


def test_vocabulary_is_sorted_distinct_lower_case_words_of_three_letters_or_more() -> None:
    assert vocabulary(["The Cat sat", "on the MAT, the cat!"]) == ["cat", "mat", "sat", "the"]


def test_synthetic_texts_are_reproducible_and_distinct() -> None:
    words = [f"w{i}" for i in range(5000)]
    first = synthetic_texts(words, 200, 60, np.random.default_rng(3))
    again = synthetic_texts(words, 200, 60, np.random.default_rng(3))
    assert first == again
    assert len(set(first)) == 200
    assert all(len(text.split()) == 60 for text in first)


def test_rebuilt_pattern_reads_the_workers_log_line() -> None:
    line = "2026-11-22 INFO consumers.dedup_stage dedup index rebuilt from Milvus: 1234 articles"
    found = REBUILT.search(line)
    assert found is not None and found.group(1) == "1234"


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


def test_service_of_names_a_process_by_its_command_line() -> None:
    assert service_of(os.getpid()).startswith("python")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert service_of(gone.pid) == "gone"
