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
    # A child that starts a grandchild: both count under the child's name.
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        for _ in range(100):
            groups = stack_memory(os.getpid())
            if sum(g["processes"] for g in groups.values()) >= 3:
                break
            time.sleep(0.05)
        name = service_of(child.pid)
        assert name.startswith("python") and name.endswith(" -c")
        assert groups[name]["processes"] == 2
        assert groups[name]["pss"] > 0
        table = stack_table({"articles": 10, "memory": groups})
        assert table.row_count == len(groups) + 1
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the grandchild too
        child.wait()
