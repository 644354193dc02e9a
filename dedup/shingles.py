"""Shingling: a text becomes the set of overlapping pieces that MinHash estimates Jaccard on.

What goes in: any text (already cleaned to plain text by the worker). What comes out: a set of
byte strings, the shingles, built on a normalised form of the text.

Normalisation (:func:`normalise_for_dedup`) makes the wrapping that syndication adds invisible,
because on a short feed item ("a title and one or two sentences") a four-word prefix is enough
to push word-shingle Jaccard well below any sensible threshold:

- Unicode NFKC and case folding;
- leading update / breaking / exclusive markers (``Update 1:``, ``UPDATE 2-``, ``BREAKING:``,
  ``Exclusive -``, ``Watch:``, ``Live:``, ...), repeated markers too;
- agency credits and datelines anywhere (``(AFP)``, ``[Reuters]``, ``LONDON (Reuters) -``) and a
  trailing credit after a dash or bar (``... - Reuters``, ``| AP``);
- punctuation and white space (only letters and digits survive, separated by single spaces).

Guarantees: pure and total (any string gives a set; the empty text gives an empty set); a text
with fewer words (or characters) than the shingle size gives one shingle holding all of it, so
very short texts still get a signature; the same text always gives the same set in every process
(no per-process hash seeds are involved).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class ShingleUnit(StrEnum):
    """What a shingle is made of."""

    WORD = "word"
    CHAR = "char"


#: Agencies and broadcasters whose credit lines are added by syndication, never by the story.
AGENCIES = (
    "afp",
    "reuters",
    "ap",
    "associated press",
    "dpa",
    "ani",
    "pti",
    "ians",
    "xinhua",
    "bloomberg",
    "upi",
    "efe",
    "ansa",
    "kyodo",
    "yonhap",
    "tass",
    "anadolu",
    "aa",
    "cnn",
    "bbc",
    "nyt",
)
_AGENCY = "|".join(sorted((re.escape(a) for a in AGENCIES), key=len, reverse=True))

_MARKERS = (
    r"update(?:d)?(?:\s*\d+)?",
    r"correct(?:ed|ion)(?:\s*\d+)?",
    r"refile(?:d)?",
    r"rpt",
    r"breaking(?:\s+news)?",
    r"exclusive",
    r"developing(?:\s+story)?",
    r"just\s+in",
    r"urgent",
    r"flash",
    r"live(?:\s+updates?)?",
    r"watch",
    r"video",
    r"analysis",
    r"explainer",
    r"factbox",
    r"opinion",
)
_PREFIX = re.compile(r"^\s*(?:" + "|".join(_MARKERS) + r")\s*[:\-–—|]+\s*")
# "LONDON (Reuters) -" and a bare "(AFP)" or "[Reuters]" anywhere in the text.
_DATELINE = re.compile(r"^[^\W\d_][\w .,'/]{0,40}?\s*[(\[](?:" + _AGENCY + r")[)\]]\s*[-–—:]\s*")
_CREDIT = re.compile(r"\s*[(\[](?:" + _AGENCY + r")[)\]]")
_TRAILING_CREDIT = re.compile(r"\s*[-–—|]\s*(?:" + _AGENCY + r")\s*\.?\s*$")
_NON_WORD = re.compile(r"[\W_]+")


def normalise_for_dedup(text: str) -> str:
    """The form of ``text`` that shingles and exact hashes are computed on (see the module doc).

    >>> normalise_for_dedup("UPDATE 1: Oil prices rise (AFP)")
    'oil prices rise'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    for _ in range(3):  # "UPDATE 2-EXCLUSIVE-..." stacks markers
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    text = _DATELINE.sub("", text, count=1)
    text = _CREDIT.sub(" ", text)
    text = _TRAILING_CREDIT.sub("", text)
    return _NON_WORD.sub(" ", text).strip()


class Shingler:
    """Turns texts into shingle sets of a fixed unit and size.

    ``unit`` is ``word`` (k consecutive words) or ``char`` (k consecutive characters of the
    normalised text, spaces included). ``k`` must be between 1 and 32. Raises ``ValueError``
    on anything else, at construction.
    """

    def __init__(self, unit: ShingleUnit | str = ShingleUnit.WORD, k: int = 3) -> None:
        try:
            self.unit = ShingleUnit(unit)
        except ValueError:
            raise ValueError(
                f"shingle unit must be one of {[u.value for u in ShingleUnit]}, got {unit!r}"
            ) from None
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 32:
            raise ValueError(f"shingle size k must be an integer from 1 to 32, got {k!r}")
        self.k = k

    def __repr__(self) -> str:
        return f"Shingler(unit={self.unit.value!r}, k={self.k})"

    def shingles(self, text: str) -> set[bytes]:
        """The shingle set of ``text`` (normalised first); empty only for a text with no word."""
        return self.shingles_of_normalised(normalise_for_dedup(text))

    def shingles_of_normalised(self, normalised: str) -> set[bytes]:
        """The shingle set of a text already passed through :func:`normalise_for_dedup`."""
        if not normalised:
            return set()
        k = self.k
        if self.unit is ShingleUnit.WORD:
            words = normalised.split(" ")
            if len(words) <= k:
                return {normalised.encode("utf-8")}
            return {" ".join(words[i : i + k]).encode("utf-8") for i in range(len(words) - k + 1)}
        if len(normalised) <= k:
            return {normalised.encode("utf-8")}
        data = normalised
        return {data[i : i + k].encode("utf-8") for i in range(len(data) - k + 1)}
