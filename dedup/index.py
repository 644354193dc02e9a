"""The dedup index: is this article new, an exact copy, or a near copy of one already kept?

What goes in: article ids, cleaned texts and the current time (epoch seconds), plus a storage
backend (``dedup.memory_backend.MemoryBackend`` for one worker, ``dedup.redis_backend.RedisBackend``
shared by all workers). What comes out: a :class:`Verdict` per article.

The worker's protocol, in this order (see DESIGN.md, "stage order"):

1. ``verdict = index.check(article_id, text, now)`` for every article that passed the quality
   gate. A unique article is *claimed*: it becomes visible to every later ``check`` (in this
   worker and, with Redis, in all workers) for ``claim_ttl_s`` seconds, so two near copies in
   one batch or on two partitions at the same moment cannot both come out unique.
2. Embed and upsert the unique ones.
3. ``index.record(article_id, verdict.signature, now)`` only after Milvus acknowledged the row;
   this stores it for the sliding window (default 72 h) and drops the claim. If the article is
   not stored after all (sent to the DLQ), call ``index.release(article_id)``; copies that
   were judged duplicates of it meanwhile are not revisited (the claim TTL bounds the window).
4. ``index.expire(now)`` once per batch (or every few seconds): ``check`` never expires by
   itself, so that its cost stays flat. ``index.size()`` feeds the index-size gauge.
5. ``index.remove(article_ids)`` when articles are deleted: their entries and claims go, so a
   text like theirs checked later is compared with the others only (it is no duplicate of a
   deleted article). Removing an id the index does not hold is a no-op.

At worker start with the in-memory backend: ``index.rebuild(items, now)`` with
``(id, text, ingested_at)`` of the window's articles read back from Milvus.

Guarantees:

- An article is never a duplicate of itself: its own id (claimed or recorded) is ignored, so a
  redelivered or re-published article (same id, new text) is checked against the others only,
  and ``record`` replaces its previous entry.
- Exact duplicates are found by :func:`text_hash` (``core.ids.content_hash`` of the
  dedup-normalised text, ``dedup.shingles.normalise_for_dedup``): recall 1.0 for texts that
  normalise equally. The worker stores the same hash in each row's ``content_hash``.
- Near duplicates are LSH candidates whose estimated Jaccard reaches ``lsh.threshold``; the
  best one (highest Jaccard, then smallest id) is reported.
- Races (see ``dedup.redis_backend``): the claim is taken before the index is read and
  ``record`` writes the index before it drops the claim, so of two near copies checked at the
  same moment the second always sees the first, either as a claim or as a recorded entry.
- Entries older than ``window_s`` (by the ``now`` given to ``record``) are expired; they never
  expire earlier than that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from core.errors import ConfigurationError
from core.ids import content_hash
from dedup.lsh import LshParams, band_keys
from dedup.shingles import normalise_for_dedup
from dedup.signature import MinHasher, Signature, SignatureMismatch, SignatureParams

DEFAULT_WINDOW_S = 72 * 3600.0
DEFAULT_CLAIM_TTL_S = 900.0


def text_hash(text: str) -> str:
    """The content hash of an article's cleaned text: ``core.ids.content_hash`` of its
    dedup-normalised form. Texts with the same hash are exact duplicates to the index (a wire
    copy with another "UPDATE 1:" marker, dateline or credit included); it is the value of a
    stored row's ``content_hash`` and of :attr:`Verdict.content_hash`."""
    return content_hash(normalise_for_dedup(text))


class VerdictKind(StrEnum):
    """What :meth:`DedupIndex.check` found."""

    UNIQUE = "unique"
    EXACT = "exact"
    NEAR = "near"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check.

    ``duplicate_of`` is the kept article's id (``None`` when unique); ``jaccard`` is 1.0 for
    an exact copy, the estimate for a near copy, ``None`` when unique. ``content_hash`` and
    ``signature`` are what :meth:`DedupIndex.record` stores (pass the signature back to it).
    """

    kind: VerdictKind
    article_id: str
    content_hash: str
    signature: Signature
    duplicate_of: str | None = None
    jaccard: float | None = None

    @property
    def is_duplicate(self) -> bool:
        """True for an exact or near copy."""
        return self.kind is not VerdictKind.UNIQUE


@dataclass(frozen=True)
class Entry:
    """What a backend keeps per article: id, exact key and signature."""

    article_id: str
    content_hash: str
    signature: Signature


@dataclass(frozen=True)
class IndexParams:
    """All parameters of an index. ``stored()`` is what must match the stored index.

    ``window_s``: how long a recorded article stays (seconds, > 0). ``claim_ttl_s``: how long a
    checked-but-not-recorded article blocks its near copies (seconds, > 0; longer than the
    worst embed + upsert time, shorter than a redelivery after a crash matters).
    """

    signature: SignatureParams = field(default_factory=SignatureParams)
    lsh: LshParams = field(default_factory=LshParams)
    window_s: float = DEFAULT_WINDOW_S
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S

    def __post_init__(self) -> None:
        self.lsh.check_fits(self.signature.num_perm)
        for name in ("window_s", "claim_ttl_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")

    def stored(self) -> dict[str, Any]:
        """The parameters that make stored entries (in)compatible: signature and banding."""
        return {
            "signature": self.signature.to_dict(),
            "bands": self.lsh.bands,
            "rows": self.lsh.rows,
        }


def check_stored_params(found: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    """Raise :class:`ConfigurationError` naming each differing parameter."""
    if found == expected:
        return
    flat_found, flat_expected = _flatten(found), _flatten(expected)
    diffs = [
        f"{key}: index has {flat_found.get(key)!r}, configured {flat_expected.get(key)!r}"
        for key in sorted(set(flat_found) | set(flat_expected))
        if flat_found.get(key) != flat_expected.get(key)
    ]
    raise ConfigurationError(
        f"the dedup index at {where} was built with other parameters ({'; '.join(diffs)}). "
        "Signatures made with different parameters are never compared: configure the same "
        "values, or use a new index name (or delete the old index) to start afresh."
    )


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class DedupBackend(Protocol):
    """Storage of an index: recorded entries (windowed), claims (TTL) and their lookups.

    Implementations: ``MemoryBackend`` and ``RedisBackend``. ``keys`` are the band keys of the
    entry's signature (``dedup.lsh.band_keys``); ``claim`` must be atomic with respect to other
    ``claim`` calls on the same storage.
    """

    def claim(
        self, entry: Entry, keys: npt.NDArray[np.uint64], now: float, ttl_s: float
    ) -> list[Entry]:
        """Claim the entry's content hash and band keys; return other claimants already there."""
        ...

    def find_exact(self, content_hash: str) -> str | None:
        """The id of a recorded entry with this content hash, if any."""
        ...

    def candidates(self, signature: Signature, keys: npt.NDArray[np.uint64]) -> list[Entry]:
        """Recorded entries sharing at least one band with ``signature``."""
        ...

    def record(self, entry: Entry, keys: npt.NDArray[np.uint64], now: float) -> None:
        """Store (or replace) the entry as of ``now``, then drop its claim."""
        ...

    def release(self, article_id: str) -> None:
        """Drop the claim of ``article_id`` (no-op when there is none)."""
        ...

    def remove(self, article_id: str) -> bool:
        """Drop the recorded entry and the claim of ``article_id``; True when an entry went."""
        ...

    def expire(self, now: float, window_s: float) -> int:
        """Remove entries recorded before ``now - window_s``; return how many."""
        ...

    def size(self) -> int:
        """Recorded entries currently in the window."""
        ...


class DedupIndex:
    """Exact and near-duplicate detection over a sliding window (see the module docstring)."""

    def __init__(self, backend: DedupBackend, params: IndexParams | None = None) -> None:
        self.params = params or IndexParams()
        self.backend = backend
        self.hasher = MinHasher(self.params.signature)

    def check(self, article_id: str, text: str, now: float) -> Verdict:
        """Classify ``text`` as unique, an exact copy or a near copy; claim it when unique."""
        normalised = normalise_for_dedup(text)
        signature = self.hasher.signature_of_normalised(normalised)
        entry = Entry(article_id, content_hash(normalised), signature)
        return self.check_entry(entry, now)

    def check_entry(self, entry: Entry, now: float) -> Verdict:
        """:meth:`check` for an entry whose hash and signature are already computed."""
        keys = band_keys(entry.signature, self.params.lsh)
        # Claim first, read second: see "Races" in the module docstring.
        rivals = self.backend.claim(entry, keys, now, self.params.claim_ttl_s)
        exact = self.backend.find_exact(entry.content_hash)
        if exact is not None and exact != entry.article_id:
            self.backend.release(entry.article_id)
            return self._verdict(entry, VerdictKind.EXACT, exact, 1.0)
        for rival in rivals:
            if rival.article_id != entry.article_id and rival.content_hash == entry.content_hash:
                self.backend.release(entry.article_id)
                return self._verdict(entry, VerdictKind.EXACT, rival.article_id, 1.0)
        best = self._best_match(entry, [*rivals, *self.backend.candidates(entry.signature, keys)])
        if best is not None:
            self.backend.release(entry.article_id)
            return self._verdict(entry, VerdictKind.NEAR, best[1], best[0])
        return self._verdict(entry, VerdictKind.UNIQUE, None, None)

    def matches(self, text: str) -> list[tuple[str, float]]:
        """Every recorded article whose estimated Jaccard with ``text`` reaches the threshold.

        Read-only (nothing is claimed); sorted by Jaccard, highest first. For evaluation and
        for the "also reported by" view.
        """
        signature = self.hasher.signature(text)
        keys = band_keys(signature, self.params.lsh)
        found = {
            (c.article_id, signature.jaccard(c.signature))
            for c in self.backend.candidates(signature, keys)
        }
        kept = [m for m in found if m[1] >= self.params.lsh.threshold]
        return sorted(kept, key=lambda m: (-m[1], m[0]))

    def record(self, article_id: str, source: Verdict | str, now: float) -> None:
        """Store an article kept in Milvus: pass its unique :class:`Verdict` (no recomputation)
        or its text. Call only after the upsert was acknowledged; replaces an earlier entry of
        the same id and drops its claim. Raises ``ValueError`` for a verdict of another id.
        """
        if isinstance(source, Verdict):
            if source.article_id != article_id:
                raise ValueError(f"verdict of {source.article_id!r} recorded as {article_id!r}")
            if source.signature.params != self.params.signature:
                raise SignatureMismatch(
                    f"verdict signature made with {source.signature.params}, "
                    f"index uses {self.params.signature}"
                )
            entry = Entry(article_id, source.content_hash, source.signature)
        else:
            normalised = normalise_for_dedup(source)
            entry = Entry(
                article_id,
                content_hash(normalised),
                self.hasher.signature_of_normalised(normalised),
            )
        self.record_entry(entry, now)

    def record_entry(self, entry: Entry, now: float) -> None:
        """Store a fully computed entry (see :meth:`record`)."""
        self.backend.record(entry, band_keys(entry.signature, self.params.lsh), now)

    def release(self, article_id: str) -> None:
        """Drop the claim of a checked article that will not be stored (e.g. sent to the DLQ)."""
        self.backend.release(article_id)

    def remove(self, article_ids: Iterable[str]) -> int:
        """Forget deleted articles: their entries and claims (see the module docstring, 5);
        returns how many entries were removed."""
        return sum(1 for article_id in article_ids if self.backend.remove(article_id))

    def expire(self, now: float) -> int:
        """Remove entries older than the window; returns how many were removed."""
        return self.backend.expire(now, self.params.window_s)

    def size(self) -> int:
        """Recorded entries in the window (the ``newsstream_dedup_index_size`` gauge)."""
        return self.backend.size()

    def rebuild(self, items: Iterable[tuple[str, str, float]], now: float) -> int:
        """Record ``(article_id, text, timestamp)`` items (e.g. the window read back from
        Milvus at worker start); items already outside the window are skipped. Returns the
        number recorded.

        Items are recorded as they come (one at a time: the texts of a large window are never
        held together), so give them oldest first: expiry walks entries in record order, and an
        item older than one before it expires only after that one (late, never early).
        """
        cutoff = now - self.params.window_s
        recorded = 0
        for article_id, text, timestamp in items:
            if timestamp < cutoff:
                continue
            self.record(article_id, text, timestamp)
            recorded += 1
        self.expire(now)
        return recorded

    def _best_match(self, entry: Entry, others: Sequence[Entry]) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        for other in others:
            if other.article_id == entry.article_id:
                continue
            score = entry.signature.jaccard(other.signature)
            if score < self.params.lsh.threshold:
                continue
            if best is None or (score, _neg(other.article_id)) > (best[0], _neg(best[1])):
                best = (score, other.article_id)
        return best

    @staticmethod
    def _verdict(
        entry: Entry, kind: VerdictKind, duplicate_of: str | None, jaccard: float | None
    ) -> Verdict:
        return Verdict(
            kind, entry.article_id, entry.content_hash, entry.signature, duplicate_of, jaccard
        )


def _neg(article_id: str) -> tuple[int, ...]:
    # Ties on Jaccard go to the smallest id: invert the code points so that max() picks it.
    return tuple(-ord(ch) for ch in article_id)
