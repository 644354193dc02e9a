"""Reciprocal rank fusion: agreement wins, duplicates count once, ties are deterministic."""

from __future__ import annotations

import pytest

from search_api.fusion import rrf_fuse


def test_ids_high_in_both_rankings_win() -> None:
    fused = rrf_fuse([["a", "b", "c"], ["b", "d", "a"]], k=60)
    assert [ident for ident, _ in fused] == ["b", "a", "d", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_an_id_repeated_in_one_ranking_counts_once_at_its_best_rank() -> None:
    assert rrf_fuse([["a", "a", "b"]], k=0) == [("a", 1.0), ("b", 1 / 3)]


def test_ties_keep_first_seen_order_and_empty_input_is_empty() -> None:
    assert [i for i, _ in rrf_fuse([["x"], ["y"]])] == ["x", "y"]
    assert rrf_fuse([]) == []
    assert rrf_fuse([[], []]) == []


def test_negative_k_is_refused() -> None:
    with pytest.raises(ValueError):
        rrf_fuse([["a"]], k=-1)
