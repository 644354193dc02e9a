"""``newsstream eval dedup``: how well dedup and the quality gate work.

What goes in: the shared evaluation data (``eval/bbc-news``: texts, ``manifest.csv`` and the
silver pairs ``near_duplicate_pairs_computed.csv``; ``eval/msrp/msrp_train.jsonl``; the 15
feeds in ``feeds/news``) and index parameters. What comes out: a JSON-able dict of results and
a rich table per part. Stories are measured by ``newsstream eval stories``
(:mod:`newsstream.evals.stories`, which reuses the loaders here).

Definitions (pairs are unordered pairs of BBC documents):

- exact: the silver pairs marked ``exact_normalized_match``; found when both texts have the
  same dedup content hash. Precision counts every same-hash pair.
- near: positives are silver pairs with word-5 Jaccard >= 0.8. Every BBC document is recorded
  in a real :class:`dedup.index.DedupIndex` (LSH included) and matched against the others.
  ``precision``: a flagged pair is correct when it is a silver pair (the same story) of one
  category, so any merge across categories is wrong; ``precision_strict``: only silver pairs
  with Jaccard >= 0.5 (near) or an exact match on the full text (exact) count as correct
  (on cut texts, rewritten versions with an identical start are legitimately identical). ``curve`` sweeps the threshold on all pairs
  (estimated Jaccard, no LSH) to show the choice.
- short: the same on texts cut to the title plus the first 40 words, and again with
  syndication noise ("Update 1: " prefix and " (AFP)" after the title) added to one side.
- msrp: human paraphrase labels; how many non-paraphrase sentence pairs near-dup detection
  would merge, per threshold.
- quality: the gate over every item of the 15 feeds; each rejection with its reason.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from dedup.index import DedupIndex, IndexParams
from dedup.memory_backend import MemoryBackend

NEAR_MIN_JACCARD = 0.8
LENIENT_JACCARD = 0.5
CUT_WORDS = 40
THRESHOLDS_NEAR = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class BbcDoc:
    """One BBC article: id ``category/NNN``, category, title and body."""

    doc_id: str
    category: str
    title: str
    body: str

    def full(self) -> str:
        """Title and body, as the worker's ``CleanArticle.text`` joins them."""
        return f"{self.title}. {self.body}"

    def cut(self, words: int = CUT_WORDS) -> str:
        """Title plus the first ``words`` words of the body: a typical feed item."""
        return f"{self.title}. {' '.join(self.body.split()[:words])}"


@dataclass(frozen=True)
class SilverPair:
    """A silver pair from ``near_duplicate_pairs_computed.csv``."""

    a: str
    b: str
    jaccard: float
    exact: bool


def load_bbc(root: Path) -> tuple[list[BbcDoc], list[SilverPair]]:
    """Read the BBC corpus and its silver pairs (one Latin-1 file is decoded as such)."""
    docs = []
    with (root / "manifest.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            raw = (root / row["path"]).read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            title, _, body = text.strip().partition("\n")
            docs.append(
                BbcDoc(row["doc_id"], row["category"], title.strip(), " ".join(body.split()))
            )
    pairs = []
    with (root / "near_duplicate_pairs_computed.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            pairs.append(
                SilverPair(
                    row["doc_a"],
                    row["doc_b"],
                    float(row["jaccard_word5gram"]),
                    row["exact_normalized_match"] == "True",
                )
            )
    return docs, pairs


def load_msrp(path: Path) -> list[tuple[str, str, int]]:
    """MSRP pairs as ``(sentence 1, sentence 2, label)`` (1 = paraphrase)."""
    with path.open(encoding="utf-8") as handle:
        return [
            (row["s1"], row["s2"], int(row["label"]))
            for row in (json.loads(line) for line in handle if line.strip())
        ]


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _prf(tp: int, flagged: int, positives_found: int, positives: int) -> dict[str, Any]:
    return {
        "flagged": flagged,
        "precision": round(tp / flagged, 4) if flagged else 1.0,
        "recall": round(positives_found / positives, 4) if positives else 1.0,
        "positives": positives,
    }


def _ratio(good: int, flagged: set[tuple[str, str]]) -> float:
    return round(good / len(flagged), 4) if flagged else 1.0


def _noisy(doc: BbcDoc) -> str:
    return f"Update 1: {doc.title} (AFP). {' '.join(doc.body.split()[:CUT_WORDS])}"


def evaluate_dedup(
    docs: list[BbcDoc],
    pairs: list[SilverPair],
    params: IndexParams,
    *,
    cut: bool = False,
    noisy: bool = False,
) -> dict[str, Any]:
    """Exact and near-duplicate precision/recall with a real index at ``params``."""
    silver = {_key(p.a, p.b): p for p in pairs}
    category = {d.doc_id: d.category for d in docs}
    texts = {d.doc_id: (d.cut() if cut else d.full()) for d in docs}
    index = DedupIndex(MemoryBackend(params), params)
    hashes: dict[str, str] = {}
    for number, doc in enumerate(docs):
        if noisy and number % 2 == 0:
            texts[doc.doc_id] = _noisy(doc)  # syndication noise on every other document
        verdict = index.check(doc.doc_id, texts[doc.doc_id], 0.0)
        index.record(doc.doc_id, verdict, 0.0)
        hashes[doc.doc_id] = verdict.content_hash
    by_hash: dict[str, list[str]] = {}
    for doc_id, digest in hashes.items():
        by_hash.setdefault(digest, []).append(doc_id)
    exact_flagged = {
        _key(a, b)
        for group in by_hash.values()
        for i, a in enumerate(group)
        for b in group[i + 1 :]
    }
    near_flagged = set(exact_flagged)
    for doc in docs:
        for other, _score in index.matches(texts[doc.doc_id]):
            if other != doc.doc_id:
                near_flagged.add(_key(doc.doc_id, other))
    exact_pos = {k for k, p in silver.items() if p.exact}
    near_pos = {k for k, p in silver.items() if p.jaccard >= NEAR_MIN_JACCARD}

    def correct(pair: tuple[str, str], floor: float) -> bool:
        p = silver.get(pair)
        return p is not None and p.jaccard >= floor and category[pair[0]] == category[pair[1]]

    exact = _prf(
        sum(correct(k, 0.0) for k in exact_flagged),
        len(exact_flagged),
        len(exact_pos & exact_flagged),
        len(exact_pos),
    )
    exact["precision_strict"] = _ratio(sum(correct(k, 1.0) for k in exact_flagged), exact_flagged)
    near = _prf(
        sum(correct(k, 0.0) for k in near_flagged),
        len(near_flagged),
        len(near_pos & near_flagged),
        len(near_pos),
    )
    near["precision_strict"] = _ratio(
        sum(correct(k, LENIENT_JACCARD) for k in near_flagged), near_flagged
    )
    near["cross_category_merges"] = sum(category[a] != category[b] for a, b in near_flagged)
    near["missed"] = sorted(f"{a}~{b}" for a, b in near_pos - near_flagged)
    return {"exact": exact, "near": near, "index_size": index.size()}


def near_curve(
    docs: list[BbcDoc], pairs: list[SilverPair], params: IndexParams, *, cut: bool
) -> list[dict[str, Any]]:
    """Recall and strict precision per threshold on all pairs (estimated Jaccard, no LSH)."""
    index = DedupIndex(MemoryBackend(params), params)
    matrix = np.stack([index.hasher.signature(d.cut() if cut else d.full()).values for d in docs])
    ids = [d.doc_id for d in docs]
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    silver = {_key(p.a, p.b): p.jaccard for p in pairs}
    n = len(docs)
    scores = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        scores[i] = (matrix == matrix[i]).mean(axis=1)
    positives = [(position[p.a], position[p.b]) for p in pairs if p.jaccard >= NEAR_MIN_JACCARD]
    rows = []
    for threshold in THRESHOLDS_NEAR:
        flagged = np.argwhere(np.triu(scores >= threshold, 1))
        good = sum(silver.get(_key(ids[a], ids[b]), 0.0) >= LENIENT_JACCARD for a, b in flagged)
        found = sum(scores[a, b] >= threshold for a, b in positives)
        rows.append({"threshold": threshold, **_prf(good, len(flagged), found, len(positives))})
    return rows


def msrp_curve(msrp: list[tuple[str, str, int]], params: IndexParams) -> dict[str, Any]:
    """Per threshold, the share of paraphrase and non-paraphrase pairs that would be merged."""
    index = DedupIndex(MemoryBackend(params), params)
    labels = np.array([label for _, _, label in msrp])
    jac = np.array(
        [index.hasher.signature(a).jaccard(index.hasher.signature(b)) for a, b, _ in msrp]
    )
    result: dict[str, Any] = {"pairs": len(msrp), "paraphrases": int(labels.sum()), "minhash": []}
    for threshold in THRESHOLDS_NEAR:
        merged = jac >= threshold
        result["minhash"].append(_merge_rates(threshold, merged, labels))
    return result


def _merge_rates(
    threshold: float, merged: npt.NDArray[np.bool_], labels: npt.NDArray[Any]
) -> dict[str, Any]:
    return {
        "threshold": threshold,
        "paraphrase_merged": round(float(merged[labels == 1].mean()), 4),
        "non_paraphrase_merged": round(float(merged[labels == 0].mean()), 4),
        "precision": round(float(labels[merged].mean()), 4) if merged.any() else 1.0,
    }


def quality_report(feeds_dir: Path, *, now: float | None = None) -> dict[str, Any]:
    """Run parse -> clean -> quality gate over every feed in ``feeds_dir/index.tsv``."""
    from consumers.clean import clean_article
    from consumers.quality import check_quality, detect_language
    from producers.parser import parse_feed

    items = 0
    rejected: list[dict[str, str]] = []
    languages: dict[str, int] = {}
    with (feeds_dir / "index.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        body = (feeds_dir / f"{row['file']}.xml").read_bytes()
        parsed = parse_feed(body, feed_url=row["channel_link"], feed_id=row["file"])
        for article in parsed.articles:
            clean = clean_article(article)
            items += 1
            language = detect_language(clean.text)
            languages[language] = languages.get(language, 0) + 1
            reason = check_quality(clean, now=now)
            if reason is not None:
                rejected.append(
                    {
                        "feed": row["file"],
                        "reason": reason.value,
                        "title": clean.title[:100],
                        "url": article.url,
                    }
                )
    return {
        "feeds": len(rows),
        "items": items,
        "rejected": len(rejected),
        "rejection_rate": round(len(rejected) / items, 4) if items else 0.0,
        "rejections": rejected,
        "languages": dict(sorted(languages.items(), key=lambda kv: -kv[1])),
    }


def run_eval(
    data_dir: Path, params: IndexParams, *, console: Console | None = None
) -> dict[str, Any]:
    """Every part of the evaluation (see the module docstring)."""
    console = console or Console()
    started = time.perf_counter()
    docs, pairs = load_bbc(data_dir / "eval" / "bbc-news")
    msrp = load_msrp(data_dir / "eval" / "msrp" / "msrp_train.jsonl")
    results: dict[str, Any] = {"params": {**params.stored(), "threshold": params.lsh.threshold}}
    steps = 6
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("dedup eval", total=steps)

        def step(name: str, value: Any) -> None:
            results[name] = value
            progress.advance(task)

        step("full", evaluate_dedup(docs, pairs, params))
        step("short", evaluate_dedup(docs, pairs, params, cut=True))
        step("short_noisy", evaluate_dedup(docs, pairs, params, cut=True, noisy=True))
        step("near_curve_full", near_curve(docs, pairs, params, cut=False))
        step("near_curve_short", near_curve(docs, pairs, params, cut=True))
        step("msrp", msrp_curve(msrp, params))
    results["quality"] = quality_report(data_dir / "feeds" / "news")
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _table(title: str, rows: Iterable[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    return table


def print_eval(results: dict[str, Any], console: Console) -> None:
    """Print the results as rich tables (the JSON file holds everything)."""
    summary = []
    for name in ("full", "short", "short_noisy"):
        if name in results:
            for kind in ("exact", "near"):
                summary.append({"texts": name, "kind": kind, **results[name][kind]})
    console.print(
        _table(
            "Dedup at the defaults (BBC silver pairs)",
            summary,
            [
                "texts",
                "kind",
                "positives",
                "flagged",
                "precision",
                "precision_strict",
                "recall",
                "cross_category_merges",
            ],
        )
    )
    for name in ("near_curve_full", "near_curve_short"):
        if name in results:
            console.print(
                _table(
                    f"Near-dup threshold curve ({name})",
                    results[name],
                    ["threshold", "positives", "flagged", "precision", "recall"],
                )
            )
    msrp = results.get("msrp", {})
    if "minhash" in msrp:
        console.print(
            _table(
                "MSRP merge rates (MinHash)",
                msrp["minhash"],
                ["threshold", "paraphrase_merged", "non_paraphrase_merged", "precision"],
            )
        )
    quality = results.get("quality")
    if quality:
        console.print(
            f"Quality gate: {quality['rejected']} of {quality['items']} items rejected "
            f"({quality['rejection_rate']:.1%}) over {quality['feeds']} feeds"
        )
        if quality["rejections"]:
            console.print(
                _table("Rejections", quality["rejections"], ["feed", "reason", "title", "url"])
            )
