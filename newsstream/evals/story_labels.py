"""The labels ``newsstream eval stories`` judges by: BBC silver pairs, their groups, and the
rewrites read by hand.

What goes in: the BBC documents and silver pairs (:mod:`newsstream.evals.dedup`) and the
judgements file beside this module. What comes out: :class:`Labels` (is a pair one event, two
events, or unlabelled), the judgements and the stated days between a pair's articles, and the
documents left once copies are removed as dedup removes them.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from newsstream.evals.dedup import BbcDoc, SilverPair

#: Word-5 Jaccard range of the silver pairs that are rewrites of one event (not copies).
REWRITES = (0.2, 0.95)


def pair_key(a: str, b: str) -> tuple[str, str]:
    """An unordered pair of document ids, in one order."""
    return (a, b) if a < b else (b, a)


@dataclass(frozen=True)
class Labels:
    """What the silver labels say about a pair of documents (see the module docstring)."""

    category: dict[str, str]
    group: dict[str, int]
    silver: frozenset[tuple[str, str]]
    #: Silver pairs read and judged two events (see :func:`load_judgements`).
    apart: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(
        cls,
        docs: Sequence[BbcDoc],
        pairs: Sequence[SilverPair],
        judged: dict[tuple[str, str], str] | None = None,
    ) -> Labels:
        """Categories of ``docs`` and the silver groups of ``pairs`` (union-find); pairs
        ``judged`` ``no`` (two events) are neither silver pairs nor links of a group."""
        apart = frozenset(k for k, v in (judged or {}).items() if v == "no")
        pairs = [p for p in pairs if pair_key(p.a, p.b) not in apart]
        parent: dict[str, str] = {}

        def root(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for pair in pairs:
            parent[root(pair.a)] = root(pair.b)
        roots = sorted({root(x) for x in parent})
        number = {r: n for n, r in enumerate(roots)}
        return cls(
            category={d.doc_id: d.category for d in docs},
            group={x: number[root(x)] for x in parent},
            silver=frozenset(pair_key(p.a, p.b) for p in pairs),
            apart=apart,
        )

    def judge(self, a: str, b: str) -> Literal["correct", "wrong", "unlabelled"]:
        """``correct`` for a silver pair, ``wrong`` for two events, else ``unlabelled``."""
        if pair_key(a, b) in self.apart:
            return "wrong"
        if pair_key(a, b) in self.silver:
            return "correct"
        return "wrong" if self.different_events(a, b) else "unlabelled"

    def different_events(self, a: str, b: str) -> bool:
        """Judged two events, different categories, or both in silver groups but different
        ones."""
        if pair_key(a, b) in self.apart or self.category[a] != self.category[b]:
            return True
        ga, gb = self.group.get(a), self.group.get(b)
        return ga is not None and gb is not None and ga != gb

    def same_group(self, a: str, b: str) -> bool:
        """Both in one silver group."""
        ga = self.group.get(a)
        return ga is not None and ga == self.group.get(b)


#: The rewrites (silver pairs of Jaccard 0.2 to 0.95) read by hand and judged: ``yes`` (one
#: event), ``no`` (two events sharing background paragraphs) or ``unsure``; with a reason.
JUDGEMENTS = Path(__file__).with_name("story_judgements.csv")


def load_gaps(path: Path) -> dict[tuple[str, str], float]:
    """``{(doc a, doc b): days}`` between the two articles of a judged pair, where the texts
    tell (column ``days_apart``: ``N``, or ``>N`` read as N + 1; empty: unknown, left out)."""
    gaps: dict[tuple[str, str], float] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = (row.get("days_apart") or "").strip()
            if text:
                days = float(text.lstrip(">")) + (1 if text.startswith(">") else 0)
                gaps[pair_key(row["doc_a"], row["doc_b"])] = days
    return gaps


def load_judgements(path: Path) -> dict[tuple[str, str], str]:
    """``{(doc a, doc b): "yes" | "no" | "unsure"}`` from a judgements file (sorted keys)."""
    with path.open(encoding="utf-8") as handle:
        return {
            pair_key(row["doc_a"], row["doc_b"]): row["same_event"].strip()
            for row in csv.DictReader(handle)
        }


def copies_removed(docs: Sequence[BbcDoc], pairs: Sequence[SilverPair]) -> list[int]:
    """Positions of ``docs`` left once copies are removed as dedup removes them: of each group
    of exact copies and near-copies (silver pairs above the rewrite range), the first."""
    copy_of: dict[str, str] = {}

    def root(x: str) -> str:
        while copy_of.setdefault(x, x) != x:
            x = copy_of[x]
        return x

    for pair in pairs:
        if pair.exact or pair.jaccard > REWRITES[1]:
            a, b = sorted((root(pair.a), root(pair.b)))
            copy_of[b] = a
    seen: set[str] = set()
    kept = []
    for n, d in enumerate(docs):
        group = root(d.doc_id)
        if group not in seen:
            seen.add(group)
            kept.append(n)
    return kept
