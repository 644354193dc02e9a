"""The one content hash and its two inputs: an article's dedup-normalised text (the stored
``content_hash`` and the exact-duplicate key) and a feed entry as published (the producer's
"delivered already?" check)."""

from __future__ import annotations

from core.ids import content_hash, entry_fingerprint
from dedup.index import DedupIndex, IndexParams, VerdictKind, text_hash
from dedup.memory_backend import MemoryBackend
from dedup.shingles import normalise_for_dedup

WIRE = "UPDATE 1: Oil prices rise as the storm closes Gulf refineries (AFP)"
PLAIN = "Oil prices rise as the storm closes Gulf refineries"


def test_an_article_hash_is_the_exact_duplicate_key_of_the_dedup_index() -> None:
    assert text_hash(WIRE) == text_hash(PLAIN) == content_hash(normalise_for_dedup(PLAIN))
    params = IndexParams()
    index = DedupIndex(MemoryBackend(params), params)
    first = index.check("a" * 32, PLAIN, 0.0)
    assert first.content_hash == text_hash(PLAIN)  # what the row stores
    index.record("a" * 32, first, 0.0)
    copy = index.check("b" * 32, WIRE, 1.0)
    assert copy.kind == VerdictKind.EXACT
    assert copy.content_hash == first.content_hash


def test_the_producer_notices_what_the_article_hash_ignores() -> None:
    assert entry_fingerprint(WIRE, "", "") != entry_fingerprint(PLAIN, "", "")
    assert entry_fingerprint(PLAIN, "<p>Brent up</p>", "") != entry_fingerprint(PLAIN, "", "")


def test_stored_hashes_stay_comparable_across_versions() -> None:
    """Rows and the producer's state keep hashes written by earlier versions: the values of a
    fixed input must not move."""
    assert text_hash("UPDATE 1: Oil prices rise (AFP)") == "d58e2fe2342238a78955c293462be0cd"
    assert entry_fingerprint("Oil prices rise", "<p>Brent up</p>", "") == (
        "00a410441395ac869cbf16d257a0591f"
    )
    assert entry_fingerprint("T", "S", "C") == content_hash("T\nS\nC")
