"""`newsstream eval search`: retrieval quality of each search mode on bbc-news.

What it does: indexes the 2,225 bbc-news articles (title + full text, the worker's row shape)
into a fresh collection of the local Milvus it starts (``local_milvus``; or ``milvus_uri``), through
the same write path as the worker (the keyword index included), then runs through
the same :class:`search_api.searcher.Searcher` the API uses:

- known-item search: the headline as query, its article as the one right answer; MRR@10 and
  recall@10 per mode (semantic, keyword, hybrid). bbc-news holds 129 pairs of articles with the
  same headline (100 of them word for word the same article), for which the query cannot tell
  the target from its copy: the table also gives MRR@10 counting any article with the query's
  headline as found, and the MRR@10 a perfect ranker reaches when it orders such copies at
  random (the cap of the strict figure on the sample);
- category precision@10: the first body sentence as query; a hit is relevant when it is from
  the same category (the query's own article excluded).

Prints one table (the default mode marked) and returns the figures. ``sample`` limits the number of queries
(spread evenly over the collection) to keep the run short on small machines.
"""

from __future__ import annotations

import csv
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from consumers.stories import StoryAssigner
from core.metrics import SearchMode
from core.settings import Settings
from embedding.embedder import Embedder
from newsstream.stack.launchers import throwaway_milvus
from search_api.filters import SearchFilters
from search_api.ranking import collapse_stories
from search_api.results import SearchResult as Hit
from search_api.searcher import Searcher
from store.client import connect
from store.compaction import wait_for_index
from store.row import ArticleRow
from store.writer import ArticleWriter

BASELINE = {"recall@10": 0.991, "MRR@10": 0.919, "precision@10": 0.894}
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _load(root: Path) -> list[dict[str, str]]:
    docs: list[dict[str, str]] = []
    with open(root / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            text = (root / row["path"]).read_bytes().decode("utf-8", "replace")
            lines = [line.strip() for line in text.split("\n") if line.strip()]
            body = " ".join(lines[1:])
            first = _SENTENCE.split(body, maxsplit=1)[0] if body else row["title"]
            docs.append(
                {
                    "id": f"{len(docs):032x}",
                    "title": row["title"],
                    "body": body,
                    "category": row["category"],
                    "first": first,
                }
            )
    return docs


def reciprocal_rank(ids: Sequence[str], targets: set[str]) -> float:
    """1 / rank of the first of ``ids`` in ``targets`` (rank from 1); 0.0 when none is."""
    for rank, ident in enumerate(ids, start=1):
        if ident in targets:
            return 1.0 / rank
    return 0.0


def mrr_ceiling(group_sizes: Sequence[int]) -> float:
    """MRR of a perfect ranker over queries whose headline ``group_sizes`` articles share.

    The ranker puts the group first in a random order (nothing in the headline tells copies
    apart), so the target's expected reciprocal rank in a group of ``g`` is the mean of 1/r for
    r in 1..g.
    """
    if not group_sizes:
        return 0.0
    expected = [sum(1.0 / r for r in range(1, g + 1)) / g for g in group_sizes]
    return sum(expected) / len(expected)


def story_of(hits: Sequence[Hit], article_id: str) -> str:
    """The story of ``article_id`` among ``hits`` (its own id when it starts one)."""
    hit = next(h for h in hits if h.id == article_id)
    return hit.story_id or hit.id


def run_search_eval(
    data_dir: Path,
    *,
    sample: int = 500,
    milvus_uri: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Index bbc-news and measure each mode (see the module docstring)."""
    console = console or Console()
    docs = _load(data_dir / "eval" / "bbc-news")
    store = Settings().local_milvus
    with throwaway_milvus(milvus_uri, kind=store) as milvus_uri:
        settings = Settings(
            milvus_uri=milvus_uri, milvus_collection="eval_bbc", data_dir=Settings().data_dir
        )
        embedder = Embedder(settings)
        client = connect(milvus_uri)
        writer = ArticleWriter.fresh(client, settings, embedder.dimension)
        # Strong reads: every earlier chunk is a candidate story, as in a worker that keeps up.
        stories = StoryAssigner(client, settings.milvus_collection, consistency="Strong")
        started = time.monotonic()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("embedding and indexing bbc-news", total=len(docs))
            for start in range(0, len(docs), 64):
                chunk = docs[start : start + 64]
                texts = [f"{d['title']}. {d['body']}" for d in chunk]
                vectors = embedder.embed(texts)
                rows = [
                    ArticleRow(
                        id=d["id"],
                        embedding=v.tolist(),
                        title=d["title"],
                        text=t[:16000],
                        url=f"https://bbc.example/{d['id']}",
                        source="bbc.example",
                        feed_id=d["category"],
                        language="en",
                        model=embedder.model_name,
                    )
                    for d, v, t in zip(chunk, vectors, texts, strict=True)
                ]
                rows = stories.assign(rows)  # the worker's story rule, batch by batch
                writer.upsert(rows)
                progress.advance(task, len(chunk))
        # Unflushed rows are searched slowly (Milvus Lite: about 1 s a query) and a Milvus
        # server's Bounded reads lag the writes: seal, and wait for the index.
        client.flush(settings.milvus_collection)
        wait_for_index(client, settings.milvus_collection, len(docs), 600)
        time.sleep(1)
        index_s = time.monotonic() - started
        searcher = Searcher(settings, client, embedder)
        step = max(1, len(docs) // sample)
        queries = docs[::step][:sample]
        by_id = {d["id"]: d for d in docs}
        by_headline: dict[str, set[str]] = defaultdict(set)
        for d in docs:
            by_headline[d["title"]].add(d["id"])
        sizes = [len(by_headline[d["title"]]) for d in queries]
        modes = [SearchMode.SEMANTIC]
        if searcher.has_bm25():
            modes += [SearchMode.KEYWORD, SearchMode.HYBRID]
        default = searcher.default_mode()
        results: dict[str, Any] = {
            "articles": len(docs),
            "queries": len(queries),
            "index_s": index_s,
            "default_mode": str(default),
            "shared_headline_queries": sum(1 for g in sizes if g > 1),
            "MRR@10 cap": mrr_ceiling(sizes),
            "modes": {},
        }
        with Progress(console=console, transient=True) as progress:
            for mode in modes:
                task = progress.add_task(f"{mode} queries", total=len(queries) * 2)
                rr, rr_copies, found, precision = [], [], 0, []
                found_collapsed = hidden_wrongly = 0
                for doc in queries:
                    deep = searcher.search(doc["title"], k=30, mode=mode, filters=SearchFilters())
                    hits = deep[:10]
                    ids = [h.id for h in hits]
                    found += doc["id"] in ids
                    # What the API shows by default: one result per story.
                    shown = collapse_stories(deep)[:10]
                    found_collapsed += doc["id"] in {h.id for h in shown}
                    if doc["id"] in ids and doc["id"] not in {h.id for h in shown}:
                        behind = next(h for h in shown if h.story_id == story_of(deep, doc["id"]))
                        hidden_wrongly += by_id[behind.id]["category"] != doc["category"]
                    rr.append(reciprocal_rank(ids, {doc["id"]}))
                    rr_copies.append(reciprocal_rank(ids, by_headline[doc["title"]]))
                    hits = searcher.search(doc["first"], k=11, mode=mode, filters=SearchFilters())
                    others = [h.id for h in hits if h.id != doc["id"]][:10]
                    same = sum(1 for i in others if by_id[i]["category"] == doc["category"])
                    precision.append(same / max(1, len(others)))
                    progress.advance(task, 2)
                results["modes"][str(mode)] = {
                    "MRR@10": sum(rr) / len(rr),
                    "MRR@10 any copy": sum(rr_copies) / len(rr_copies),
                    "recall@10": found / len(queries),
                    "precision@10": sum(precision) / len(precision),
                    "collapsed recall@10": found_collapsed / len(queries),
                    "hidden behind another category": hidden_wrongly,
                }
        table = Table(
            title=f"retrieval quality on bbc-news ({len(queries)} queries of {len(docs)} articles)"
        )
        table.add_column("mode", no_wrap=True)
        for column in (
            "known-item\nMRR@10",
            "known-item\nrecall@10",
            "collapsed\nrecall@10",
            "any copy\nMRR@10",
            "category\nP@10",
        ):
            table.add_column(column, justify="right")
        for mode, figures in results["modes"].items():
            table.add_row(
                f"{mode} (default)" if mode == str(default) else mode,
                f"{figures['MRR@10']:.3f}",
                f"{figures['recall@10']:.3f}",
                f"{figures['collapsed recall@10']:.3f}",
                f"{figures['MRR@10 any copy']:.3f}",
                f"{figures['precision@10']:.3f}",
                style="bold" if mode == str(default) else None,
            )
        table.add_row(
            "baseline (FLAT semantic)",
            f"{BASELINE['MRR@10']:.3f}",
            f"{BASELINE['recall@10']:.3f}",
            "",
            "",
            f"{BASELINE['precision@10']:.3f}",
        )
        console.print(table)
        console.print(
            f"{results['shared_headline_queries']} of {len(queries)} queries are headlines "
            "another article shares; a perfect ranker ordering such copies at random reaches "
            f"known-item MRR@10 {results['MRR@10 cap']:.3f} here ('any copy' counts them found)."
        )
        console.print(
            "collapsed: the article itself among the first 10 results when results are collapsed "
            "by story (the API's default); a known item hidden behind another article of its "
            "story counts as missed. Known items hidden behind an article of another category: "
            + ", ".join(
                f"{mode} {figures['hidden behind another category']}"
                for mode, figures in results["modes"].items()
            )
        )
        console.print(
            "targets (default mode): known-item recall@10 >= 0.995 and MRR@10 >= 0.97; "
            "category P@10 (precision@10) >= 0.89"
        )
        return results
