"""Shingling and the normalisation that keeps syndication noise out of near-dup detection."""

from __future__ import annotations

import pytest

from dedup.shingles import Shingler, ShingleUnit, normalise_for_dedup

ITEM = "Oil prices jump as OPEC agrees output cut. Prices rose sharply on Monday."


@pytest.mark.parametrize(
    "wrapped",
    [
        f"Update 1: {ITEM}",
        f"UPDATE 2-{ITEM}",
        f"BREAKING: {ITEM}",
        f"Exclusive - {ITEM}",
        f"Update 1: EXCLUSIVE: {ITEM}",
        f"{ITEM} (AFP)",
        f"{ITEM} [Reuters]",
        f"{ITEM} - Reuters",
        f"{ITEM} | AP",
        f"LONDON (Reuters) - {ITEM}",
        "Oil prices jump as OPEC agrees output cut (AFP). Prices rose sharply on Monday.",
    ],
)
def test_syndication_wrapping_normalises_to_the_same_text(wrapped: str) -> None:
    assert normalise_for_dedup(wrapped) == normalise_for_dedup(ITEM)


def test_normalisation_keeps_words_that_only_look_like_markers() -> None:
    # "update" inside a sentence and "AP" as a word are content, not syndication markers.
    text = "Apple will update its AP style guide"
    assert normalise_for_dedup(text) == "apple will update its ap style guide"


def test_normalisation_folds_case_punctuation_and_width() -> None:
    assert normalise_for_dedup("  Ｏil—PRICES,  rise!! ") == "oil prices rise"


def test_word_shingles_are_consecutive_word_groups() -> None:
    shingles = Shingler(ShingleUnit.WORD, 3).shingles("One two three four")
    assert shingles == {b"one two three", b"two three four"}


def test_text_shorter_than_k_gives_one_shingle_with_everything() -> None:
    assert Shingler("word", 5).shingles("Two words") == {b"two words"}
    assert Shingler("char", 8).shingles("Abc") == {b"abc"}


def test_char_shingles_include_spaces() -> None:
    assert Shingler("char", 3).shingles("ab cd") == {b"ab ", b"b c", b" cd"}


def test_no_words_gives_no_shingles() -> None:
    assert Shingler().shingles("  ... !!! ") == set()


@pytest.mark.parametrize(("unit", "k"), [("token", 3), ("word", 0), ("word", 33), ("char", True)])
def test_bad_parameters_are_refused(unit: str, k: int) -> None:
    with pytest.raises(ValueError, match="shingle"):
        Shingler(unit, k)
