"""MinHash signatures: deterministic, validated, never compared across parameters."""

from __future__ import annotations

import random

import pytest

from core.errors import ConfigurationError
from dedup.shingles import Shingler
from dedup.signature import MinHasher, Signature, SignatureMismatch, SignatureParams


def _text(seed: int, words: int = 200) -> list[str]:
    rng = random.Random(seed)
    return [f"w{rng.randrange(5000)}" for _ in range(words)]


def test_same_text_same_signature_across_hashers() -> None:
    text = " ".join(_text(1))
    assert MinHasher().signature(text) == MinHasher(SignatureParams()).signature(text)


def test_estimate_tracks_true_jaccard() -> None:
    base = _text(2)
    edited = base[:150] + _text(3, 50)
    shingler = Shingler("word", 3)
    a, b = shingler.shingles(" ".join(base)), shingler.shingles(" ".join(edited))
    true = len(a & b) / len(a | b)
    hasher = MinHasher(SignatureParams(num_perm=256))
    estimate = hasher.signature(" ".join(base)).jaccard(hasher.signature(" ".join(edited)))
    assert abs(estimate - true) < 0.1
    assert hasher.signature(" ".join(base)).jaccard(hasher.signature(" ".join(base))) == 1.0


def test_signatures_with_other_seed_or_size_are_never_compared() -> None:
    text = "the same words in both signatures"
    one = MinHasher(SignatureParams(seed=1)).signature(text)
    with pytest.raises(SignatureMismatch, match="cannot compare"):
        one.jaccard(MinHasher(SignatureParams(seed=2)).signature(text))
    with pytest.raises(ConfigurationError):
        one.jaccard(MinHasher(SignatureParams(num_perm=64)).signature(text))


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_perm", 8), ("num_perm", 4096), ("num_perm", True), ("seed", -1), ("seed", 2**32)],
)
def test_constructor_validates_num_perm_and_seed(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        SignatureParams(**{field: value})


def test_params_round_trip_through_a_dict() -> None:
    params = SignatureParams(num_perm=64, seed=9, unit="char", k=5)  # type: ignore[arg-type]
    assert SignatureParams.from_dict(params.to_dict()) == params
    with pytest.raises(ValueError):
        SignatureParams.from_dict({"num_perm": 64, "colour": "red"})


def test_bytes_round_trip_and_length_check() -> None:
    params = SignatureParams()
    signature = MinHasher(params).signature("a few words of text")
    assert Signature.from_bytes(params, signature.to_bytes()) == signature
    with pytest.raises(SignatureMismatch):
        Signature.from_bytes(SignatureParams(num_perm=64), signature.to_bytes())
