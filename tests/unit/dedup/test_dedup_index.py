"""The dedup index with the in-memory backend: verdicts, claims, window, rebuild."""

from __future__ import annotations

import random

import pytest

from core.errors import ConfigurationError
from dedup.index import DedupIndex, IndexParams, VerdictKind, check_stored_params
from dedup.lsh import LshParams
from dedup.memory_backend import MemoryBackend
from dedup.signature import SignatureMismatch, SignatureParams

A, B, C, D = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
HOUR = 3600.0
STORY = (
    "Oil prices jump as OPEC agrees output cut. Oil prices rose sharply on Monday after the "
    "producers' group agreed to cut output for the third time this year, traders said."
)
OTHER = (
    "Local team wins the cup final. Supporters celebrated in the streets after a late goal "
    "settled a tense match that had gone to extra time."
)


def _index(params: IndexParams | None = None) -> DedupIndex:
    params = params or IndexParams()
    return DedupIndex(MemoryBackend(params), params)


def _kept(index: DedupIndex, article_id: str, text: str, now: float) -> None:
    verdict = index.check(article_id, text, now)
    assert verdict.kind is VerdictKind.UNIQUE
    index.record(article_id, verdict, now)


def test_first_copy_unique_then_exact_and_near_copies_point_to_it() -> None:
    index = _index()
    _kept(index, A, STORY, 0.0)
    exact = index.check(B, STORY.upper(), 1.0)
    assert (exact.kind, exact.duplicate_of, exact.jaccard) == (VerdictKind.EXACT, A, 1.0)
    near = index.check(C, STORY.replace("Monday", "Tuesday"), 2.0)
    assert near.kind is VerdictKind.NEAR and near.duplicate_of == A
    assert near.jaccard is not None and 0.7 <= near.jaccard < 1.0
    assert index.check(D, OTHER, 3.0).kind is VerdictKind.UNIQUE
    assert index.size() == 1  # duplicates and unrecorded articles are not stored


def test_short_syndicated_copies_are_duplicates() -> None:
    index = _index()
    item = "Oil prices jump as OPEC agrees output cut. Prices rose sharply on Monday."
    _kept(index, A, item, 0.0)
    assert index.check(B, f"Update 1: {item}", 1.0).duplicate_of == A
    assert index.check(C, item.replace(". Prices", " (AFP). Prices"), 1.0).duplicate_of == A


def test_two_copies_in_one_batch_cannot_both_be_unique() -> None:
    index = _index()
    first = index.check(A, STORY, 0.0)
    second = index.check(B, STORY.replace("traders", "analysts"), 0.0)
    assert first.kind is VerdictKind.UNIQUE
    assert second.kind is VerdictKind.NEAR and second.duplicate_of == A


def test_claim_expires_or_is_released_when_the_article_is_not_stored() -> None:
    params = IndexParams(claim_ttl_s=60.0)
    index = _index(params)
    index.check(A, STORY, 0.0)
    assert index.check(B, STORY, 61.0).kind is VerdictKind.UNIQUE  # A never recorded
    index.release(B)
    assert index.check(C, STORY, 62.0).kind is VerdictKind.UNIQUE


def test_an_article_is_never_a_duplicate_of_itself() -> None:
    index = _index()
    _kept(index, A, STORY, 0.0)
    assert index.check(A, STORY, 1.0).kind is VerdictKind.UNIQUE  # redelivered


def test_republished_article_replaces_its_previous_text() -> None:
    index = _index()
    _kept(index, A, STORY, 0.0)
    _kept(index, A, OTHER, 1.0)  # same id, new text
    assert index.size() == 1
    assert index.check(B, STORY, 2.0).kind is VerdictKind.UNIQUE
    assert index.check(C, OTHER, 3.0).duplicate_of == A


def test_entries_expire_after_the_window_and_not_before() -> None:
    index = _index(IndexParams(window_s=72 * HOUR))
    _kept(index, A, STORY, 0.0)
    assert index.expire(72 * HOUR - 1) == 0
    assert index.check(B, STORY, 72 * HOUR - 1).duplicate_of == A
    assert index.expire(72 * HOUR + 1) == 1
    assert index.size() == 0
    assert index.check(C, STORY, 72 * HOUR + 2).kind is VerdictKind.UNIQUE


def test_many_records_and_expiries_keep_lookups_right() -> None:
    index = _index(IndexParams(window_s=100.0))
    for i in range(3000):  # enough to grow and compact the tables
        index.record(f"{i:032x}", f"story number {i} about topic {i * 7} in city {i * 13}", i)
        index.expire(float(i))
    assert index.size() == 101
    assert (
        index.check(
            "f" * 32, "story number 2999 about topic 20993 in city 38987", 3000.0
        ).duplicate_of
        == f"{2999:032x}"
    )
    assert (
        index.check("e" * 32, "story number 10 about topic 70 in city 130", 3000.0).kind
        is VerdictKind.UNIQUE
    )


def test_rebuild_records_the_window_and_skips_older_items() -> None:
    index = _index(IndexParams(window_s=10 * HOUR))
    now = 100 * HOUR
    count = index.rebuild([(A, STORY, now - HOUR), (B, OTHER, now - 11 * HOUR)], now)
    assert count == 1 and index.size() == 1
    assert index.check(C, STORY, now).duplicate_of == A
    assert index.check(D, OTHER, now).kind is VerdictKind.UNIQUE


def test_record_refuses_a_verdict_of_another_article_or_index() -> None:
    index = _index()
    verdict = index.check(A, STORY, 0.0)
    with pytest.raises(ValueError, match="recorded as"):
        index.record(B, verdict, 0.0)
    other = _index(IndexParams(signature=SignatureParams(seed=5)))
    with pytest.raises(SignatureMismatch):
        other.record(A, verdict, 0.0)


def test_matches_lists_every_near_copy_best_first() -> None:
    index = _index()
    _kept(index, A, STORY, 0.0)
    index.record(B, STORY.replace("traders said", "said traders in London"), 0.0)
    found = index.matches(STORY)
    assert [m[0] for m in found] == [A, B]
    assert found[0][1] == 1.0


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="num_perm"):
        IndexParams(signature=SignatureParams(num_perm=32), lsh=LshParams(bands=12, rows=3))
    with pytest.raises(ValueError, match="window_s"):
        IndexParams(window_s=0)
    with pytest.raises(ValueError, match="threshold"):
        LshParams(threshold=1.5)


def test_stored_parameter_mismatch_names_each_difference() -> None:
    stored = IndexParams().stored()
    wanted = IndexParams(signature=SignatureParams(num_perm=256, seed=3)).stored()
    with pytest.raises(ConfigurationError) as info:
        check_stored_params(stored, wanted, "test")
    message = str(info.value)
    assert "signature.num_perm: index has 128, configured 256" in message
    assert "signature.seed: index has 1, configured 3" in message


def test_a_removed_article_is_no_longer_anyones_original() -> None:
    index = _index()
    _kept(index, A, STORY, 0.0)
    _kept(index, D, OTHER, 0.0)
    assert index.remove([A, C]) == 1  # C was never recorded: a no-op
    assert index.size() == 1
    # Neither an exact nor a near copy of the deleted text is a duplicate any more.
    assert index.check(B, STORY, 1.0).kind is VerdictKind.UNIQUE
    index.release(B)
    assert index.check(C, STORY.replace("Monday", "Tuesday"), 1.0).kind is VerdictKind.UNIQUE
    assert index.check(B, OTHER, 1.0).duplicate_of == D  # the others stay
    assert index.remove([A]) == 0  # removing again is a no-op


def test_removing_a_claimed_article_drops_its_claim() -> None:
    index = _index()
    assert index.check(A, STORY, 0.0).kind is VerdictKind.UNIQUE  # claimed, not yet recorded
    index.remove([A])
    assert index.check(B, STORY, 1.0).kind is VerdictKind.UNIQUE


def _distinct_text(n: int) -> str:
    """A text of its own for each ``n``: distinct words, so the texts share no LSH band (texts
    that differ in one number share most bands, and thousands of them would make one long probe
    chain in the band tables, which is not what this test is about)."""
    rng = random.Random(n)
    return " ".join(f"w{rng.randrange(10**6)}" for _ in range(40))


def test_removed_slots_are_reclaimed_and_expiry_goes_on() -> None:
    index = _index(IndexParams(window_s=10 * HOUR))
    ids = [f"{n:032x}" for n in range(3000)]  # more than the slots first allocated
    for n, article_id in enumerate(ids):
        index.record(article_id, _distinct_text(n), float(n))
    assert index.remove(ids[::2]) == 1500 and index.size() == 1500
    assert index.expire(10 * HOUR + 1000.0) == 500  # only live entries expire, in order
    assert index.size() == 1000
    survivor = ids[2001]
    again = index.check("f" * 32, _distinct_text(2001), 2e4)
    assert again.duplicate_of == survivor
