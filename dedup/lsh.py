"""LSH banding: which stored signatures are worth comparing with a new one.

A signature of ``num_perm`` values is cut into ``bands`` bands of ``rows`` values; two texts
become candidates when at least one band is identical, which happens with probability
``1 - (1 - J**rows)**bands`` for Jaccard ``J``. Candidates are then confirmed by the estimated
Jaccard against ``threshold`` (see ``dedup.index``), so banding only decides recall and cost.

What goes in: :class:`LshParams` (validated at construction) and signatures. What comes out:
64-bit band keys, the same in every process (they key the in-memory tables and the Redis
claims), and candidate probabilities for reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dedup.signature import Signature

_MULT = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


@dataclass(frozen=True)
class LshParams:
    """Banding and confirmation: ``bands * rows <= num_perm``; ``threshold`` in (0, 1].

    ``threshold`` is the estimated Jaccard at or above which a candidate is a near duplicate.
    Raises ``ValueError`` saying what was expected and what was found.
    """

    threshold: float = 0.7
    bands: int = 12
    rows: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        for name in ("bands", "rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.bands < 2:
            raise ValueError(f"bands must be at least 2, got {self.bands}")

    def check_fits(self, num_perm: int) -> None:
        """Raise ``ValueError`` when ``bands * rows`` exceeds the signature length."""
        if self.bands * self.rows > num_perm:
            raise ValueError(
                f"bands * rows = {self.bands} * {self.rows} = {self.bands * self.rows} must be at "
                f"most num_perm = {num_perm}"
            )

    def candidate_probability(self, jaccard: float) -> float:
        """Probability that a pair with this Jaccard shares at least one band."""
        return float(1.0 - (1.0 - jaccard**self.rows) ** self.bands)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the parameters."""
        return asdict(self)


def band_keys(signature: Signature, params: LshParams) -> npt.NDArray[np.uint64]:
    """One 64-bit key per band; equal keys mean (up to 2**-64 collisions) equal bands.

    The band index is mixed in, so equal values in different bands give different keys.
    """
    params.check_fits(signature.params.num_perm)
    used = signature.values[: params.bands * params.rows].astype(np.uint64)
    table = used.reshape(params.bands, params.rows)
    with np.errstate(over="ignore"):
        keys = np.arange(1, params.bands + 1, dtype=np.uint64) * _MIX
        for column in range(params.rows):
            keys = (keys ^ table[:, column]) * _MULT
        keys ^= keys >> np.uint64(31)
    return keys
