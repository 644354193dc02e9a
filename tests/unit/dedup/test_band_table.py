"""The open-addressing multimap behind the in-memory dedup index."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup import band_table
from dedup.band_table import BandTable


def _same_home_keys(table: BandTable, count: int, cell: int | None = None) -> list[int]:
    """``count`` distinct non-zero keys whose probe chains start in one cell of ``table``."""
    cell = table.home_cell(1) if cell is None else cell
    keys = np.arange(1, 4_000_000, dtype=np.uint64)
    homes = (keys * np.uint64(0x9E3779B97F4A7C15)) % np.uint64(table.capacity)
    found = keys[homes == cell][:count].tolist()
    assert len(found) == count and all(table.home_cell(k) == cell for k in found)
    return found


def _reference_check(table: BandTable, ref: dict[int, list[int]]) -> None:
    for key, values in ref.items():
        assert sorted(table.find(key)) == sorted(values), key
    assert len(table) == sum(len(v) for v in ref.values())
    keys, values = table.pairs()
    got = sorted(zip(keys.tolist(), values.tolist(), strict=True))
    assert got == sorted((k, v) for k, vs in ref.items() for v in vs)


def test_insert_and_find() -> None:
    table = BandTable()
    table.add(12345, 7)
    table.add(2**64 - 1, 8)
    assert table.find(12345) == [7]
    assert table.find(2**64 - 1) == [8]
    assert table.find(999) == []
    assert table.find_first(12345) == 7 and table.find_first(999) is None
    assert len(table) == 2


def test_several_values_under_one_key_and_removing_one() -> None:
    table = BandTable()
    for value in (1, 2, 3, 2):
        table.add(42, value)
    assert sorted(table.find(42)) == [1, 2, 2, 3]
    assert table.remove(42, 2)
    assert sorted(table.find(42)) == [1, 2, 3]
    assert not table.remove(42, 9)
    assert not table.remove(43, 1)
    assert table.remove(42, 1) and table.remove(42, 2) and table.remove(42, 3)
    assert table.find(42) == [] and len(table) == 0


def test_key_zero_is_a_real_key() -> None:
    table = BandTable()
    assert table.find(0) == [] and table.find_first(0) is None
    table.add(0, 5)
    table.add(0, 6)
    table.add(1, 7)
    assert sorted(table.find(0)) == [5, 6] and table.find(1) == [7]
    assert table.remove(0, 5) and not table.remove(0, 5)
    assert table.find(0) == [6] and len(table) == 2
    table.set(0, 9)
    assert table.find(0) == [9]


def test_keys_sharing_a_home_cell_and_tombstones_keep_chains() -> None:
    table = BandTable()
    cap = table.capacity
    a, b, c, d = _same_home_keys(table, 4)
    for value, key in enumerate((a, b, c, d)):
        table.add(key, value)
    assert table.capacity == cap  # no rebuild happened: the chain is a, b, c, d in a row
    # Removing the middle ones leaves tombstones; d, behind them, must still be found.
    assert table.remove(b, 1) and table.remove(c, 2)
    assert table.tombstones == 2
    assert table.find(d) == [3] and table.find(a) == [0]
    assert table.find(b) == [] and table.find(c) == []
    # An insert reuses a tombstone and keeps the rest of the chain reachable.
    table.add(c, 20)
    assert table.tombstones == 1
    assert table.find(c) == [20] and table.find(d) == [3]


def test_chains_wrap_around_the_end_of_the_table() -> None:
    table = BandTable()
    cap = table.capacity
    last = _same_home_keys(table, 3, cell=cap - 1)
    for value, key in enumerate(last):
        table.add(key, value)
    assert [table.find(k) for k in last] == [[0], [1], [2]]
    assert table.remove(last[0], 0)
    assert table.find(last[2]) == [2]


def test_growth_keeps_every_pair() -> None:
    table = BandTable()
    start = table.capacity
    ref: dict[int, list[int]] = {}
    rng = random.Random(3)
    for value in range(5000):
        key = rng.getrandbits(64) if value % 7 else rng.randrange(1, 50)  # some shared keys
        table.add(key, value)
        ref.setdefault(key, []).append(value)
    assert table.capacity > start
    assert table._used <= table.capacity * band_table.MAX_LOAD
    _reference_check(table, ref)


def test_rebuild_drops_tombstones_and_can_shrink() -> None:
    table = BandTable()
    for value in range(3000):
        table.add(value + 1, value)
    big = table.capacity
    for value in range(2990):
        assert table.remove(value + 1, value)
    for value in range(3000, 6000):  # tombstones and new pairs fill the table again
        table.add(value + 1, value)
    _reference_check(table, {k + 1: [k] for k in [*range(2990, 6000)]})
    assert table.capacity <= 2 * big


def test_set_behaves_like_a_dict() -> None:
    table = BandTable()
    table.set(5, 1)
    table.set(5, 2)
    assert table.find(5) == [2]
    assert table.remove(5, 2) and table.find_first(5) is None
    table.set(5, 3)
    assert table.find(5) == [3] and len(table) == 1


def test_out_of_range_pairs_are_refused() -> None:
    table = BandTable()
    with pytest.raises(ValueError, match="value"):
        table.add(1, -1)
    with pytest.raises(ValueError, match="value"):
        table.add(1, 2**31)
    with pytest.raises(ValueError, match="key"):
        table.add(2**64, 1)
    with pytest.raises(ValueError, match="values"):
        BandTable.from_pairs([1, 2], [1, -2])


def test_from_pairs_and_remapped_match_one_by_one_inserts() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2**64, size=20_000, dtype=np.uint64)
    keys[::50] = keys[1::50]  # shared keys
    keys[::997] = 0
    values = rng.integers(0, 1000, size=keys.size).astype(np.int32)
    built = BandTable.from_pairs(keys, values)
    ref: dict[int, list[int]] = {}
    for k, v in zip(keys.tolist(), values.tolist(), strict=True):
        ref.setdefault(k, []).append(v)
    _reference_check(built, ref)
    mapping = np.where(np.arange(1000) % 3 == 0, -1, np.arange(1000) * 2)
    remapped = built.remapped(mapping)
    expected = {k: [2 * v for v in vs if v % 3] for k, vs in ref.items() if any(v % 3 for v in vs)}
    _reference_check(remapped, expected)
    # The built table is a normal table: it takes inserts and removals.
    remapped.add(int(keys[1]), 4242)
    assert 4242 in remapped.find(int(keys[1]))


def test_vectorised_placement_fills_a_crowded_table_correctly() -> None:
    # Many keys sharing few home cells: long chains, many rounds of placement.
    table_keys = np.array(_same_home_keys(BandTable(3000), 40) * 50, dtype=np.uint64)
    values = np.arange(table_keys.size, dtype=np.int32)
    built = BandTable.from_pairs(table_keys, values)
    ref: dict[int, list[int]] = {}
    for k, v in zip(table_keys.tolist(), values.tolist(), strict=True):
        ref.setdefault(k, []).append(v)
    _reference_check(built, ref)


def test_randomized_against_a_dict_of_sets() -> None:
    rng = random.Random(11)
    table = BandTable()
    ref: dict[int, list[int]] = {}
    key_pool = [0, *(rng.getrandbits(64) for _ in range(300)), *range(1, 20)]
    for step in range(6000):
        key = rng.choice(key_pool)
        roll = rng.random()
        if roll < 0.55:
            value = rng.randrange(0, 200)
            table.add(key, value)
            ref.setdefault(key, []).append(value)
        elif roll < 0.9:
            values = ref.get(key, [])
            value = rng.choice(values) if values and rng.random() < 0.8 else rng.randrange(200)
            expected = value in values
            assert table.remove(key, value) is expected
            if expected:
                values.remove(value)
        else:
            assert sorted(table.find(key)) == sorted(ref.get(key, []))
        if step % 1000 == 999:
            _reference_check(table, ref)
    _reference_check(table, ref)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from([0, 1, 2, 3, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15]),
            st.integers(0, 5),
        ),
        max_size=300,
    )
)
def test_hypothesis_against_a_dict_of_sets(ops: list[tuple[bool, int, int]]) -> None:
    table = BandTable()
    ref: dict[int, list[int]] = {}
    for is_add, key, value in ops:
        if is_add:
            table.add(key, value)
            ref.setdefault(key, []).append(value)
        else:
            values = ref.get(key, [])
            assert table.remove(key, value) is (value in values)
            if value in values:
                values.remove(value)
    _reference_check(table, ref)
