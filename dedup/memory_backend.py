"""In-memory index storage for a single worker: compact LSH tables, a window and claims.

What goes in: entries (id, content hash, signature) with their band keys and times, from
``dedup.index.DedupIndex``. What comes out: lookups (exact, LSH candidates, claims) and the
window's size. Nothing survives the process: the worker rebuilds it at start from the window
of recent articles in Milvus (``DedupIndex.rebuild``).

Layout, chosen for memory (see ``newsstream bench dedup``): recorded entries live in slots
numbered in record order; the signatures in one ``uint32`` matrix; times and content-hash keys in
``numpy`` arrays; two ``dedup.band_table.BandTable`` multimaps (``uint64`` key and ``int32``
slot arrays, 12 bytes a cell) map every band key to the slots that have that band, and the first
64 bits of each content hash to its slot. Slots are not reused; dead slots are reclaimed by
compaction when they outnumber the live ones.

Guarantees: thread-safe (one lock; ``claim`` is atomic); expiry walks slots in record order, so
an entry never expires before its window (one recorded with an out-of-order old time may wait
behind newer ones); claims expire after their TTL.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from dedup.band_table import BandTable
from dedup.index import Entry, IndexParams, check_stored_params
from dedup.signature import Signature, SignatureParams

_INITIAL_SLOTS = 1024


def _hash_words(content_hash: str) -> tuple[int, int]:
    """The 128-bit hex content hash as two 64-bit words (16 bytes instead of an 81-byte str)."""
    if len(content_hash) != 32:
        raise ValueError(f"expected a 32-hex-digit content hash, got {content_hash!r}")
    try:
        return int(content_hash[:16], 16), int(content_hash[16:], 16)
    except ValueError:
        raise ValueError(f"expected a 32-hex-digit content hash, got {content_hash!r}") from None


def _hash_key(content_hash: str) -> int:
    # 64 bits of the digest key the exact lookup (collisions ~3e-8 at 1M entries).
    return _hash_words(content_hash)[0]


class MemoryBackend:
    """One worker's index storage (see the module docstring).

    ``params`` fixes the signature parameters every entry must have (checked on every write).
    """

    def __init__(self, params: IndexParams) -> None:
        self.params = params
        self._sig_params: SignatureParams = params.signature
        self._lock = threading.Lock()
        self._reset(_INITIAL_SLOTS)
        self._claims: dict[str, tuple[Entry, list[int], float]] = {}
        self._claim_owner: dict[int, str] = {}

    def stored_params(self) -> dict[str, Any]:
        """The parameters of this index (for comparing with another index's)."""
        return self.params.stored()

    def check_params(self, found: dict[str, Any]) -> None:
        """Raise ``ConfigurationError`` when ``found`` differs from this index's parameters."""
        check_stored_params(found, self.params.stored(), "memory")

    # --- claims ----------------------------------------------------------------------------
    def claim(
        self, entry: Entry, keys: npt.NDArray[np.uint64], now: float, ttl_s: float
    ) -> list[Entry]:
        """Claim the entry's hash and band keys until ``now + ttl_s``; return earlier claimants."""
        self._check_signature(entry.signature)
        claim_keys = [_hash_key(entry.content_hash) ^ 0x5BD1E995, *map(int, keys)]
        with self._lock:
            self._drop_expired_claims(now)
            rivals: dict[str, Entry] = {}
            for key in claim_keys:
                owner = self._claim_owner.get(key)
                if owner is None or owner == entry.article_id:
                    self._claim_owner[key] = entry.article_id
                elif owner not in rivals:
                    rivals[owner] = self._claims[owner][0]
            previous = self._claims.get(entry.article_id)
            held = [k for k in claim_keys if self._claim_owner.get(k) == entry.article_id]
            if previous is not None:
                held = sorted(set(held) | set(previous[1]))
            self._claims[entry.article_id] = (entry, held, now + ttl_s)
            return list(rivals.values())

    def release(self, article_id: str) -> None:
        """Drop the claim of ``article_id``, if any."""
        with self._lock:
            self._release_locked(article_id)

    def _release_locked(self, article_id: str) -> None:
        claim = self._claims.pop(article_id, None)
        if claim is None:
            return
        for key in claim[1]:
            if self._claim_owner.get(key) == article_id:
                del self._claim_owner[key]

    def _drop_expired_claims(self, now: float) -> None:
        expired = [aid for aid, (_, _, deadline) in self._claims.items() if deadline <= now]
        for article_id in expired:
            self._release_locked(article_id)

    # --- lookups ---------------------------------------------------------------------------
    def find_exact(self, content_hash: str) -> str | None:
        """The id of a recorded entry with this content hash, if any."""
        with self._lock:
            slot = self._by_hash.find_first(_hash_key(content_hash))
            return None if slot is None else self._ids[slot]

    def candidates(self, signature: Signature, keys: npt.NDArray[np.uint64]) -> list[Entry]:
        """Recorded entries sharing at least one band key with ``signature``."""
        self._check_signature(signature)
        with self._lock:
            slots = self._buckets.find_any(keys.tolist())
            result = []
            for slot in sorted(slots):
                article_id = self._ids[slot]
                if article_id is None:
                    continue
                stored = Signature(self._sig_params, self._sigs[slot].copy())
                high, low = self._hash_keys[slot].tolist()
                result.append(Entry(article_id, f"{high:016x}{low:016x}", stored))
            return result

    # --- writes ----------------------------------------------------------------------------
    def record(self, entry: Entry, keys: npt.NDArray[np.uint64], now: float) -> None:
        """Store (or replace) ``entry`` as recorded at ``now`` and drop its claim."""
        self._check_signature(entry.signature)
        with self._lock:
            old = self._slot_of.get(entry.article_id)
            if old is not None:
                self._kill(old)
            slot = self._next
            if slot == len(self._times):
                self._grow()
            self._next += 1
            self._ids.append(entry.article_id)
            self._slot_of[entry.article_id] = slot
            self._sigs[slot] = entry.signature.values
            self._times[slot] = now
            words = _hash_words(entry.content_hash)
            self._hash_keys[slot] = words
            self._by_hash.set(words[0], slot)  # one slot per hash: the latest recorded
            self._buckets.add_many(keys.tolist(), slot)
            self._live += 1
            self._release_locked(entry.article_id)

    def remove(self, article_id: str) -> bool:
        """Drop the entry and the claim of ``article_id``; True when an entry was recorded."""
        with self._lock:
            self._release_locked(article_id)
            slot = self._slot_of.get(article_id)
            if slot is None:
                return False
            self._kill(slot)
            return True

    def expire(self, now: float, window_s: float) -> int:
        """Remove entries recorded before ``now - window_s``; return how many."""
        cutoff = now - window_s
        removed = 0
        with self._lock:
            self._drop_expired_claims(now)
            while self._head < self._next:
                slot = self._head
                if self._ids[slot] is not None:
                    if self._times[slot] >= cutoff:
                        break
                    self._kill(slot)
                    removed += 1
                self._head += 1
            if self._head > self._live and self._head > _INITIAL_SLOTS:
                self._compact()
        return removed

    def size(self) -> int:
        """Recorded entries in the window."""
        return self._live

    def slot_bytes(self) -> int:
        """Bytes of array storage per slot (signature, time, content hash)."""
        return 4 * self._sig_params.num_perm + 8 + 16

    def unused_capacity_bytes(self) -> int:
        """Bytes of array storage allocated for slots not yet used (growth headroom)."""
        return (len(self._times) - self._next) * self.slot_bytes()

    def memory_bytes(self) -> int:
        """An estimate of the bytes held by the recorded entries (arrays, tables, dict, ids).

        Arrays and band tables count in full, their unused capacity (growth headroom, empty
        cells) included; the id dict and the id strings by ``sys.getsizeof``.
        """
        import sys

        total = self._sigs.nbytes + self._times.nbytes + self._hash_keys.nbytes
        total += self._buckets.nbytes + self._by_hash.nbytes
        total += sys.getsizeof(self._slot_of) + sys.getsizeof(self._ids)
        for article_id in self._slot_of:
            total += sys.getsizeof(article_id) + 32  # the id and its slot number
        return total

    # --- internals -------------------------------------------------------------------------
    def _check_signature(self, signature: Signature) -> None:
        if signature.params != self._sig_params:
            from dedup.signature import SignatureMismatch

            raise SignatureMismatch(
                f"signature made with {signature.params}, index uses {self._sig_params}"
            )

    def _reset(self, capacity: int) -> None:
        num_perm = self._sig_params.num_perm
        self._sigs = np.zeros((capacity, num_perm), dtype=np.uint32)
        self._times = np.zeros(capacity, dtype=np.float64)
        self._hash_keys = np.zeros((capacity, 2), dtype=np.uint64)
        self._ids: list[str | None] = []
        self._slot_of: dict[str, int] = {}
        self._by_hash = BandTable()  # first 64 bits of the content hash -> slot
        self._buckets = BandTable()  # band key -> slots with that band
        self._head = 0
        self._next = 0
        self._live = 0

    def _grow(self) -> None:
        capacity = max(_INITIAL_SLOTS, len(self._times) * 2)
        sigs = np.zeros((capacity, self._sig_params.num_perm), dtype=np.uint32)
        sigs[: len(self._sigs)] = self._sigs
        self._sigs = sigs
        self._times = np.resize(self._times, capacity)
        hash_keys = np.zeros((capacity, 2), dtype=np.uint64)
        hash_keys[: len(self._hash_keys)] = self._hash_keys
        self._hash_keys = hash_keys

    def _kill(self, slot: int) -> None:
        from dedup.lsh import band_keys

        article_id = self._ids[slot]
        if article_id is None:
            return
        signature = Signature(self._sig_params, self._sigs[slot])
        self._buckets.remove_many(band_keys(signature, self.params.lsh).tolist(), slot)
        self._by_hash.remove(int(self._hash_keys[slot, 0]), slot)  # unless a later slot took it
        if self._slot_of.get(article_id) == slot:
            del self._slot_of[article_id]
        self._ids[slot] = None
        self._live -= 1

    def _compact(self) -> None:
        """Rebuild the tables from the live slots (slot numbers change, order is kept)."""
        live = [s for s in range(self._head, self._next) if self._ids[s] is not None]
        renumber = np.full(max(1, self._next), -1, dtype=np.int64)
        renumber[live] = np.arange(len(live))
        buckets = self._buckets.remapped(renumber)
        sigs, times, hkeys = self._sigs[live], self._times[live], self._hash_keys[live]
        # Each content hash to its latest live slot (what rebuilding a dict slot by slot gives).
        _, from_end = np.unique(hkeys[::-1, 0], return_index=True)
        latest = len(live) - 1 - from_end
        by_hash = BandTable.from_pairs(hkeys[latest, 0], latest)
        ids = [self._ids[s] for s in live]
        self._reset(max(_INITIAL_SLOTS, 2 * len(live)))
        count = len(live)
        self._sigs[:count] = sigs
        self._times[:count] = times
        self._hash_keys[:count] = hkeys
        self._ids = ids
        for new, article_id in enumerate(ids):
            assert article_id is not None
            self._slot_of[article_id] = new
        self._buckets, self._by_hash = buckets, by_hash
        self._next = self._live = count
