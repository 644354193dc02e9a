"""The quality check a non-baseline embedding backend must pass before it may be the default.

What goes in: the shared data (``../shared/data``): the 15 news feeds in ``feeds/news`` and the
2,225 articles of ``eval/bbc-news``. What comes out: per backend,

- ``mean_cosine`` (and ``min_cosine``): cosine between the backend's vector and torch fp32's
  for each news item (title + description, ~285 characters, cleaned as the worker cleans);
- ``mrr10``: known-item MRR@10 on bbc-news. The query is an article's headline, its target is
  the article (title + body); the search is exact (numpy dot products over all 2,225 article
  vectors), so the figure measures the embedding alone, not an index;
- ``batch_min_cosine``: the lowest cosine between a news item embedded alone and the same item
  embedded in one call with the other extremes of length (the shortest and the longest items,
  interleaved): an article's vector must not depend on its batch-mates;
- ``passes``: ``mean_cosine >= 0.99``, ``mrr10 >= fp32's mrr10 - 0.01`` and
  ``batch_min_cosine >= 0.999``.

Guarantees: the fp32 reference is computed in the same run with the same texts; a missing
shared data folder raises :class:`FileNotFoundError` naming the folder.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from consumers.clean import clean_article
from core.settings import Settings
from embedding.embedder import Embedder
from producers.parser import parse_feed

MIN_MEAN_COSINE = 0.99
MAX_MRR_DROP = 0.01
MIN_BATCH_COSINE = 0.999
#: Items taken from each end of the length order for the batch-independence figure.
BATCH_PROBE_EACH_END = 16
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def news_texts(feeds_dir: Path = SHARED_DATA / "feeds" / "news") -> list[str]:
    """Title + description of every item of the shared news feeds, cleaned as the worker does.

    The feed's full ``content`` is left out on purpose: a few feeds carry whole articles there
    (TIME, ~1 MB); the issue's "short text" is the feed item as most publishers send it.
    """
    files = sorted(feeds_dir.glob("*.xml"))
    if not files:
        raise FileNotFoundError(f"no feed files in {feeds_dir} (see ../shared/data/README.md)")
    texts: list[str] = []
    for path in files:
        parsed = parse_feed(
            path.read_bytes(), feed_url=f"https://feeds.example/{path.name}", feed_id=path.stem
        )
        for article in parsed.articles:
            text = clean_article(article.model_copy(update={"content": ""})).text
            if text.strip():
                texts.append(text)
    return texts


def bbc_known_items(
    eval_dir: Path = SHARED_DATA / "eval" / "bbc-news",
) -> tuple[list[str], list[str]]:
    """``(queries, documents)`` of bbc-news: query i is the headline of document i."""
    manifest = eval_dir / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"no {manifest} (see ../shared/data/README.md)")
    queries: list[str] = []
    documents: list[str] = []
    with manifest.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            # One file holds a Latin-1 byte (see the data README): replace, do not fail.
            body = (eval_dir / "bbc" / row["path"].removeprefix("bbc/")).read_text(
                encoding="utf-8", errors="replace"
            )
            queries.append(row["title"])
            documents.append(body.strip())
    return queries, documents


def mrr_at_k(queries: np.ndarray, documents: np.ndarray, k: int = 10) -> float:
    """MRR@k when query row i's only relevant item is document row i (exact dot-product search).

    Both inputs are L2-normalised rows; a target ranked below ``k`` scores 0.
    """
    scores = queries @ documents.T
    target = scores[np.arange(len(queries)), np.arange(len(queries))]
    # Rank = 1 + number of documents scoring strictly higher than the target.
    ranks = 1 + np.sum(scores > target[:, None], axis=1)
    return float(np.mean(np.where(ranks <= k, 1.0 / ranks, 0.0)))


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two arrays of L2-normalised rows."""
    result: np.ndarray = np.sum(vectors * reference, axis=1)
    return result


def batch_min_cosine(
    embed: Callable[[Sequence[str]], np.ndarray],
    texts: Sequence[str],
    each_end: int = BATCH_PROBE_EACH_END,
) -> float:
    """Lowest cosine between a text embedded alone and embedded beside texts of other lengths.

    The ``each_end`` shortest and longest of ``texts`` are interleaved into one call (so that a
    backend that batches puts headlines and articles into the same run, padding and all), and
    each row is compared with the same text embedded on its own.
    """
    by_length = sorted(set(texts), key=len)
    short, long = by_length[:each_end], by_length[-each_end:][::-1]
    mixed = [t for pair in zip(short, long, strict=False) for t in pair]
    mixed += short[len(long) :] + long[len(short) :]
    together = embed(mixed)
    alone = np.vstack([embed([t]) for t in mixed])
    return float(np.min(cosines(together, alone)))


@dataclass(frozen=True)
class QualityResult:
    """The quality figures of one backend, measured against fp32 in the same run."""

    backend: str
    mean_cosine: float
    min_cosine: float
    mrr10: float
    mrr10_fp32: float
    seconds: float
    batch_min_cosine: float

    @property
    def passes(self) -> bool:
        """The default rule: mean cosine >= 0.99, MRR@10 within 0.01 of fp32, and vectors
        independent of their batch-mates (cosine alone vs batched >= 0.999)."""
        return (
            self.mean_cosine >= MIN_MEAN_COSINE
            and self.mrr10 >= self.mrr10_fp32 - MAX_MRR_DROP
            and self.batch_min_cosine >= MIN_BATCH_COSINE
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, including ``passes``."""
        return {**asdict(self), "passes": self.passes}


@dataclass(frozen=True)
class _Figures:
    news: np.ndarray
    mrr10: float
    seconds: float
    batch_min_cosine: float


def _figures(
    embedder: Embedder, news: Sequence[str], queries: Sequence[str], docs: Sequence[str]
) -> _Figures:
    start = time.perf_counter()
    news_vectors = embedder.embed(news)
    mrr = mrr_at_k(embedder.embed(queries), embedder.embed(docs))
    seconds = time.perf_counter() - start
    # Articles beside headlines: the bbc bodies are the long end, the news items the short one.
    batch_cos = batch_min_cosine(embedder.embed, [*news, *docs[:200]])
    return _Figures(news_vectors, mrr, seconds, batch_cos)


def evaluate_backends(
    settings: Settings,
    backends: Sequence[str],
    *,
    feeds_dir: Path = SHARED_DATA / "feeds" / "news",
    eval_dir: Path = SHARED_DATA / "eval" / "bbc-news",
    embedders: dict[str, Embedder] | None = None,
) -> dict[str, QualityResult]:
    """Quality of each of ``backends`` (``torch`` always included, as the reference).

    ``settings`` supplies the model, threads, batch size and data dir (for the export cache);
    its ``embedding_backend`` is overridden per backend. ``embedders`` may hand in already
    loaded embedders by backend name (the bench reuses its own).
    """
    news = news_texts(feeds_dir)
    queries, docs = bbc_known_items(eval_dir)
    loaded = dict(embedders or {})

    def embedder_for(backend: str) -> Embedder:
        if backend not in loaded:
            loaded[backend] = Embedder(settings.model_copy(update={"embedding_backend": backend}))
        return loaded[backend]

    reference = _figures(embedder_for("torch"), news, queries, docs)
    results: dict[str, QualityResult] = {}
    for backend in ["torch", *[b for b in backends if b != "torch"]]:
        figures = (
            reference
            if backend == "torch"
            else _figures(embedder_for(backend), news, queries, docs)
        )
        cos = cosines(figures.news, reference.news)
        results[backend] = QualityResult(
            backend=backend,
            mean_cosine=float(np.mean(cos)),
            min_cosine=float(np.min(cos)),
            mrr10=figures.mrr10,
            mrr10_fp32=reference.mrr10,
            seconds=figures.seconds,
            batch_min_cosine=figures.batch_min_cosine,
        )
    return results
