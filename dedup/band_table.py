"""A compact multimap from 64-bit keys to small non-negative ints, stored in two numpy arrays.

What goes in: pairs ``(key, value)`` with ``0 <= key < 2**64`` (LSH band keys, content-hash
words) and ``0 <= value < 2**31`` (slot numbers). What comes out: for a key, the values of every
pair stored under it (in no particular order); the pair count; the bytes held.

Layout: open addressing with linear probing in ``keys`` (``uint64``) and ``values`` (``int32``),
12 bytes a cell, instead of a dict entry and a boxed int key (about 80 bytes) per pair. Key 0
marks an empty cell, so pairs whose key is 0 are kept apart in a small list. Several pairs may
share a key (and even a value): each is its own cell, and a lookup collects every cell with the
key until it meets an empty cell. Removing a pair turns its cell into a tombstone (value -1, key
kept, so probe chains that run through it stay unbroken); inserts reuse tombstones. When live
cells plus tombstones would exceed ``MAX_LOAD`` of the capacity, the table is rebuilt without the
tombstones at about ``REHASH_LOAD`` (capacity need not be a power of two); the rebuild is
vectorised (see :meth:`BandTable._place`), so growing to tens of millions of pairs takes seconds,
not minutes. Scalar work (one lookup, insert or removal: a few probes) goes through memoryviews
of the arrays, which read and write plain Python ints without numpy scalar overhead.

Guarantees: ``find`` returns exactly the values of the pairs added under the key and not yet
removed, with multiplicity; ``remove`` removes one such pair; nothing is lost on growth. Not
thread-safe: the caller locks (``dedup.memory_backend.MemoryBackend`` does).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

MAX_LOAD = 0.5
REHASH_LOAD = 1 / 3
MIN_CAPACITY = 64
MAX_VALUE = 2**31 - 1

_M64 = (1 << 64) - 1
_MULT = 0x9E3779B97F4A7C15  # odd: multiplying permutes the keys and spreads nearby ones
_NP_MULT = np.uint64(_MULT)
_PLACE_CHUNK = 1 << 20  # cells of the old table rehashed at a time (bounds temporary memory)


class BandTable:
    """An open-addressing multimap ``uint64 -> int32`` (see the module docstring).

    ``capacity`` is a hint: the table starts with room for about that many pairs.
    """

    def __init__(self, capacity: int = 0) -> None:
        cells = max(MIN_CAPACITY, int(capacity / REHASH_LOAD) + 1)
        self._zero: list[int] = []  # values of the pairs whose key is 0
        self._allocate(cells)

    # --- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Pairs stored (tombstones not counted)."""
        return self._live + len(self._zero)

    @property
    def capacity(self) -> int:
        """Cells allocated (pairs fit up to ``MAX_LOAD`` of it before a rebuild)."""
        return self._cap

    @property
    def tombstones(self) -> int:
        """Cells of removed pairs not yet reused or dropped by a rebuild."""
        return self._used - self._live

    @property
    def nbytes(self) -> int:
        """Bytes held: both arrays in full (unused cells included) and the key-0 list."""
        return int(self._keys.nbytes + self._values.nbytes) + 8 * len(self._zero)

    def find(self, key: int) -> list[int]:
        """The values of every pair stored under ``key`` (empty when there is none)."""
        if key == 0:
            return list(self._zero)
        return [self._vview[i] for i in self._cells(key)]

    def find_first(self, key: int) -> int | None:
        """The value of one pair stored under ``key``, or ``None``: for single-valued use."""
        if key == 0:
            return self._zero[0] if self._zero else None
        cell = next(self._cells(key), None)
        return None if cell is None else self._vview[cell]

    def find_any(self, keys: Iterable[int]) -> set[int]:
        """The values of the pairs stored under any of ``keys`` (``find`` for each, inlined)."""
        table_keys, values, cap = self._kview, self._vview, self._cap
        found: set[int] = set()
        for key in keys:
            if key == 0:
                found.update(self._zero)
                continue
            i = ((key * _MULT) & _M64) % cap
            while True:
                k = table_keys[i]
                if k == 0:
                    break
                if k == key:
                    value = values[i]
                    if value >= 0:
                        found.add(value)
                i += 1
                if i == cap:
                    i = 0
        return found

    def home_cell(self, key: int) -> int:
        """The cell where the probe chain of ``key`` starts (for tests and diagnostics)."""
        return ((key * _MULT) & _M64) % self._cap

    def pairs(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32]]:
        """Every stored pair as two arrays ``(keys, values)``, in no particular order."""
        live = (self._keys != 0) & (self._values >= 0)
        keys = np.concatenate([self._keys[live], np.zeros(len(self._zero), dtype=np.uint64)])
        values = np.concatenate([self._values[live], np.array(self._zero, dtype=np.int32)])
        return keys, values

    # --- writes ----------------------------------------------------------------------------
    def add(self, key: int, value: int) -> None:
        """Store the pair ``(key, value)`` (also when the same pair is already stored).

        Raises ``ValueError`` when ``key`` or ``value`` is out of range.
        """
        self.add_many((key,), value)

    def add_many(self, keys: Iterable[int], value: int) -> None:
        """Store ``(key, value)`` for every key of ``keys`` (``ValueError`` as ``add``)."""
        if not 0 <= value <= MAX_VALUE:
            raise ValueError(f"value must be in [0, 2**31), got {value!r}")
        batch = keys if isinstance(keys, list | tuple) else list(keys)
        if self._used + len(batch) > self._limit:  # room for the whole batch first
            self._rebuild(self._live + len(batch))
        table_keys, values, cap = self._kview, self._vview, self._cap
        added = fresh = 0
        try:
            for key in batch:
                if key == 0:
                    self._zero.append(value)
                    continue
                i = ((key * _MULT) & _M64) % cap
                while True:
                    if table_keys[i] == 0:
                        fresh += 1
                        break
                    if values[i] < 0:  # a tombstone: any key may take it (it is on every chain)
                        break
                    i += 1
                    if i == cap:
                        i = 0
                try:
                    table_keys[i] = key
                except (TypeError, ValueError):
                    fresh -= table_keys[i] == 0
                    raise ValueError(f"key must be an int in [0, 2**64), got {key!r}") from None
                values[i] = value
                added += 1
        finally:
            self._live += added
            self._used += fresh

    def set(self, key: int, value: int) -> None:
        """Replace the value of one pair stored under ``key``, or store the pair if none is.

        With only ``set`` (never ``add``) for a key, the table holds at most one pair for it and
        behaves like a dict.
        """
        if not 0 <= value <= MAX_VALUE:
            raise ValueError(f"value must be in [0, 2**31), got {value!r}")
        if key == 0:
            if self._zero:
                self._zero[0] = value
            else:
                self._zero.append(value)
            return
        cell = next(self._cells(key), None)
        if cell is None:
            self.add(key, value)
        else:
            self._vview[cell] = value

    def remove(self, key: int, value: int) -> bool:
        """Remove one pair ``(key, value)``; return whether there was one."""
        return self.remove_many((key,), value) == 1

    def remove_many(self, keys: Iterable[int], value: int) -> int:
        """Remove one pair ``(key, value)`` for each key of ``keys``; return how many were."""
        table_keys, values, cap = self._kview, self._vview, self._cap
        removed = 0
        for key in keys:
            if key == 0:
                if value in self._zero:
                    self._zero.remove(value)
                    removed += 1
                continue
            i = ((key * _MULT) & _M64) % cap
            while True:
                k = table_keys[i]
                if k == 0:
                    break
                if k == key and values[i] == value:
                    values[i] = -1  # tombstone: the key stays so the chain goes on
                    self._live -= 1
                    removed += 1
                    break
                i += 1
                if i == cap:
                    i = 0
        return removed

    def remapped(self, mapping: npt.NDArray[np.integer]) -> BandTable:
        """A new table with every value ``v`` replaced by ``mapping[v]``; pairs mapped to a
        negative value are left out. Vectorised (for renumbering slots after a compaction).
        """
        keys, values = self.pairs()
        mapped = np.asarray(mapping)[values]
        kept = mapped >= 0
        return BandTable.from_pairs(keys[kept], mapped[kept])

    @classmethod
    def from_pairs(cls, keys: npt.ArrayLike, values: npt.ArrayLike) -> BandTable:
        """A table holding the pairs ``zip(keys, values)``, built vectorised."""
        key_array = np.asarray(keys, dtype=np.uint64).ravel()
        value_array = np.asarray(values).ravel()
        if key_array.shape != value_array.shape:
            raise ValueError(f"{key_array.size} keys but {value_array.size} values")
        if value_array.size and (value_array.min() < 0 or value_array.max() > MAX_VALUE):
            raise ValueError("values must be in [0, 2**31)")
        table = cls(int(key_array.size))
        zero = key_array == 0
        table._zero = value_array[zero].astype(np.int64).tolist()
        table._place(key_array[~zero], value_array[~zero].astype(np.int32))
        return table

    # --- internals -------------------------------------------------------------------------
    def _cells(self, key: int) -> Iterator[int]:
        """The cells holding a pair under non-zero ``key``, in probe order."""
        keys, values, cap = self._kview, self._vview, self._cap
        i = ((key * _MULT) & _M64) % cap
        while True:
            k = keys[i]
            if k == 0:
                return
            if k == key and values[i] >= 0:
                yield i
            i += 1
            if i == cap:
                i = 0

    def _allocate(self, cells: int) -> None:
        cells |= 1  # odd: ``x % cells`` then depends on every bit of ``x``
        if cells >= 2**32:
            raise ValueError(f"a table of {cells} cells is too large")
        self._cap = cells
        self._limit = int(cells * MAX_LOAD)
        self._keys: npt.NDArray[np.uint64] = np.zeros(cells, dtype=np.uint64)
        self._values: npt.NDArray[np.int32] = np.zeros(cells, dtype=np.int32)
        self._kview = memoryview(self._keys)  # type: ignore[arg-type]
        self._vview = memoryview(self._values)  # type: ignore[arg-type]
        self._live = 0  # cells holding a pair
        self._used = 0  # cells holding a pair or a tombstone

    def _rebuild(self, pairs: int) -> None:
        """Move the live cells to a new table sized for ``pairs`` at ``REHASH_LOAD``."""
        old_keys, old_values = self._keys, self._values
        del self._kview, self._vview
        self._allocate(max(MIN_CAPACITY, int(pairs / REHASH_LOAD) + 1))
        for start in range(0, len(old_keys), _PLACE_CHUNK):
            keys = old_keys[start : start + _PLACE_CHUNK]
            values = old_values[start : start + _PLACE_CHUNK]
            live = (keys != 0) & (values >= 0)
            self._place(keys[live], values[live])

    def _place(self, keys: npt.NDArray[np.uint64], values: npt.NDArray[np.int32]) -> None:
        """Insert pairs with non-zero keys into this table (no tombstones in it), vectorised.

        In rounds: every pair not yet placed looks at its current cell; among those looking at
        an empty cell one winner per cell takes it (each contender writes its number into the
        cell's value, and the one whose number is read back wins); all others move one cell on.
        A pair only passes cells that are taken, so each ends on its own probe chain, as a
        one-by-one insert would leave it.
        """
        if self._used + len(keys) > self._limit:
            raise AssertionError("_place called without room")  # callers size the table first
        cap = self._cap
        for start in range(0, len(keys), _PLACE_CHUNK):
            k = keys[start : start + _PLACE_CHUNK]
            v = values[start : start + _PLACE_CHUNK]
            pos = ((k * _NP_MULT) % np.uint64(cap)).astype(np.int64)
            while k.size:
                empty = np.flatnonzero(self._keys[pos] == 0)
                cells = pos[empty]
                self._values[cells] = empty
                won = empty[self._values[cells] == empty]
                self._keys[pos[won]] = k[won]
                self._values[pos[won]] = v[won]
                rest = np.ones(k.size, dtype=bool)
                rest[won] = False
                k, v, pos = k[rest], v[rest], pos[rest] + 1
                pos[pos == cap] = 0
        self._used += len(keys)
        self._live += len(keys)
