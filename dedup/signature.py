"""MinHash signatures: a text becomes a fixed-size sketch whose agreement estimates Jaccard.

What goes in: the :class:`SignatureParams` (shingle unit and size, number of permutations,
seed), validated when a :class:`MinHasher` is built, then texts. What comes out: a
:class:`Signature`, ``num_perm`` unsigned 32-bit values (datasketch ``MinHash``, scheme
``affine32``, shingles hashed with SHA-1 to 32 bits).

Guarantees: the same text and parameters give the same signature in every process and on every
machine (nothing depends on Python's per-process hash seed). Signatures made with different
parameters are never compared: :meth:`Signature.jaccard` raises :class:`SignatureMismatch`.
The parameters serialise to a stable JSON-able dict, which index backends store beside the
index so that a worker configured differently refuses to start (see ``dedup.index``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32

from core.errors import ConfigurationError
from dedup.shingles import Shingler, ShingleUnit, normalise_for_dedup

#: The permutation scheme and shingle hash; part of the stored parameters.
SCHEME = "affine32"
SHINGLE_HASH = "sha1_32"
MIN_PERM = 16
MAX_PERM = 1024


class SignatureMismatch(ConfigurationError):
    """Two signatures (or a signature and an index) were made with different parameters."""


@dataclass(frozen=True)
class SignatureParams:
    """Everything that decides a signature's values; two signatures compare only if equal.

    ``num_perm``: permutations (16..1024; error of the Jaccard estimate is about
    ``sqrt(J(1-J)/num_perm)``). ``seed``: the permutations' seed (a non-negative integer).
    ``unit`` and ``k``: the shingling (see :class:`dedup.shingles.Shingler`).
    Raises ``ValueError`` with what was expected and what was found.
    """

    num_perm: int = 128
    seed: int = 1
    unit: ShingleUnit = ShingleUnit.WORD
    k: int = 3
    scheme: str = SCHEME
    shingle_hash: str = SHINGLE_HASH

    def __post_init__(self) -> None:
        n = self.num_perm
        if isinstance(n, bool) or not isinstance(n, int) or not MIN_PERM <= n <= MAX_PERM:
            raise ValueError(
                f"num_perm must be an integer from {MIN_PERM} to {MAX_PERM}, got {n!r}"
            )
        s = self.seed
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
            raise ValueError(f"seed must be an integer from 0 to 2**32-1, got {s!r}")
        Shingler(self.unit, self.k)  # validates unit and k
        object.__setattr__(self, "unit", ShingleUnit(self.unit))
        if self.scheme != SCHEME or self.shingle_hash != SHINGLE_HASH:
            raise ValueError(
                f"this version computes scheme={SCHEME!r}, shingle_hash={SHINGLE_HASH!r}; "
                f"got scheme={self.scheme!r}, shingle_hash={self.shingle_hash!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the parameters (stable key names)."""
        data = asdict(self)
        data["unit"] = self.unit.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignatureParams:
        """Inverse of :meth:`to_dict` (raises ``ValueError`` on a bad or incomplete dict)."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a signature parameter dict: {data!r} ({exc})") from None


class Signature:
    """A MinHash signature: ``values`` (uint32, length ``params.num_perm``) and its params."""

    __slots__ = ("params", "values")

    def __init__(self, params: SignatureParams, values: npt.NDArray[np.uint32]) -> None:
        if values.shape != (params.num_perm,):
            raise ValueError(f"expected {params.num_perm} values, got shape {values.shape}")
        self.params = params
        self.values = values.astype(np.uint32, copy=False)

    def jaccard(self, other: Signature) -> float:
        """The estimated Jaccard similarity of the two shingle sets (0.0 to 1.0).

        Raises :class:`SignatureMismatch` when the parameters differ: such values are unrelated.
        """
        if other.params != self.params:
            raise SignatureMismatch(
                f"cannot compare signatures made with {self.params} and {other.params}"
            )
        return float(np.count_nonzero(self.values == other.values)) / self.params.num_perm

    def to_bytes(self) -> bytes:
        """The values as little-endian uint32 bytes (``4 * num_perm`` bytes)."""
        return self.values.astype("<u4", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, params: SignatureParams, data: bytes) -> Signature:
        """Inverse of :meth:`to_bytes` for signatures made with ``params``."""
        if len(data) != 4 * params.num_perm:
            raise SignatureMismatch(
                f"a stored signature has {len(data)} bytes; num_perm={params.num_perm} "
                f"needs {4 * params.num_perm}"
            )
        return cls(params, np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return self.params == other.params and bool(np.array_equal(self.values, other.values))

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"Signature(num_perm={self.params.num_perm}, head={self.values[:4].tolist()})"


class MinHasher:
    """Computes :class:`Signature` objects for one fixed :class:`SignatureParams`.

    The permutations are drawn once here (datasketch draws them per ``MinHash`` otherwise), so a
    signature costs only shingling, hashing and the vectorised permutation step.
    """

    def __init__(self, params: SignatureParams | None = None) -> None:
        self.params = params or SignatureParams()
        self.shingler = Shingler(self.params.unit, self.params.k)
        template = MinHash(num_perm=self.params.num_perm, seed=self.params.seed, scheme=SCHEME)
        self._permutations = template.permutations

    def signature(self, text: str) -> Signature:
        """The signature of ``text`` (normalised and shingled as the params say)."""
        return self.signature_of_normalised(normalise_for_dedup(text))

    def signature_of_normalised(self, normalised: str) -> Signature:
        """The signature of a text already passed through ``normalise_for_dedup``."""
        minhash = self.minhash_of(self.shingler.shingles_of_normalised(normalised))
        return Signature(self.params, minhash.hashvalues)

    def minhash_of(self, shingles: set[bytes]) -> MinHash:
        """A datasketch ``MinHash`` of a shingle set (empty set: all values at the maximum)."""
        minhash = MinHash(
            num_perm=self.params.num_perm,
            seed=self.params.seed,
            hashfunc=sha1_hash32,
            permutations=self._permutations,
            scheme=SCHEME,
        )
        if shingles:
            minhash.update_batch(list(shingles))
        return minhash

    def to_minhash(self, signature: Signature) -> MinHash:
        """A datasketch ``MinHash`` holding ``signature``'s values (for datasketch's LSH)."""
        if signature.params != self.params:
            raise SignatureMismatch(
                f"signature made with {signature.params}, this hasher uses {self.params}"
            )
        return MinHash(
            num_perm=self.params.num_perm,
            seed=self.params.seed,
            hashvalues=signature.values,
            scheme=SCHEME,
        )
