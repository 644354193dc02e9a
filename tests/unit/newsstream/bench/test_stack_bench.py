"""The pure parts of `newsstream bench stack` (process trees: tests/integration)."""

from __future__ import annotations

import os

import numpy as np

from newsstream.bench.stack import (
    REBUILT,
    service_of,
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


def test_service_of_names_this_process_by_its_command_line() -> None:
    assert service_of(os.getpid()).startswith("python")


def test_stack_table_has_a_row_per_service_and_a_total() -> None:
    groups = {
        "python -u": {"processes": 2, "pss": 3 * 2**20, "rss": 4 * 2**20, "anon": 2**20},
        "milvus": {"processes": 1, "pss": 5 * 2**20, "rss": 6 * 2**20, "anon": 2**20},
    }
    table = stack_table({"articles": 10, "memory": groups})
    assert table.row_count == 3
    assert next(c.header for c in table.columns) == "service"
