"""The shapes the OpenVINO backend hands its graph: few, whatever the texts (pure functions)."""

from __future__ import annotations

import pytest

from embedding.openvino_backend import bucket_length, length_buckets, row_chunks


def test_every_length_maps_to_one_of_a_few_buckets_never_shorter() -> None:
    buckets = length_buckets(192)
    assert buckets == [16, 32, 48, 64, 80, 96, 112, 128, 160, 192]
    for length in range(1, 193):
        padded = bucket_length(length, 192)
        assert padded in buckets
        assert padded >= length


@pytest.mark.parametrize("limit", [128, 200, 256, 512])
def test_buckets_never_pass_the_model_limit(limit: int) -> None:
    assert max(length_buckets(limit)) == limit
    assert all(bucket_length(n, limit) <= limit for n in range(1, limit + 1))


def test_padding_stays_small_for_short_texts() -> None:
    # Headlines and feed items are 10-80 tokens: padding them to 192 would cost 2-10x.
    assert bucket_length(17, 192) == 32
    assert bucket_length(65, 192) == 80
    assert bucket_length(129, 192) == 160


@pytest.mark.parametrize("rows", [1, 2, 7, 16, 17, 30, 32])
def test_rows_split_into_decreasing_powers_of_two_that_add_up(rows: int) -> None:
    chunks = row_chunks(rows)
    assert sum(chunks) == rows
    assert chunks == sorted(chunks, reverse=True)
    assert all(c & (c - 1) == 0 for c in chunks)
    assert len(set(chunks)) == len(chunks)


def test_a_full_batch_is_one_run() -> None:
    assert row_chunks(32) == [32]
