"""Reciprocal rank fusion of several rankings, for hybrid search done outside Milvus.

Where Milvus has no BM25 (the PyPI ``milvus`` 2.3 server), hybrid search fuses the dense
ranking from Milvus with the keyword ranking from :mod:`store.keyword_index` here, with the same
formula as Milvus's ``RRFRanker``: each id scores ``sum(1 / (k + rank))`` over the rankings it
appears in (rank from 1), so ids near the top of both lists win.
"""

from __future__ import annotations

from collections.abc import Sequence


def rrf_fuse(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """(id, score) pairs, best first, for ``rankings`` (each a list of ids, best first).

    An id repeated within one ranking counts at its best rank only. Ties keep the order in
    which ids were first seen (earlier rankings first), so the result is deterministic.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    scores: dict[str, float] = {}
    for ranking in rankings:
        seen: set[str] = set()
        for rank, ident in enumerate(ranking, start=1):
            if ident in seen:
                continue
            seen.add(ident)
            scores[ident] = scores.get(ident, 0.0) + 1.0 / (k + rank)
    order = {ident: n for n, ident in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))
