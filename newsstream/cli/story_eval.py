"""``newsstream eval stories``: how well the story rule groups the reports of one event.

The evaluation lives in :mod:`newsstream.evals.stories`; this module parses options, loads the
embedding model and prints the results as tables (the JSON file holds everything).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from newsstream.cli.common import console, settings_or_exit
from newsstream.cli.eval_group import (
    DEFAULT_DATA,
    DataOption,
    OutputOption,
    attach,
    eval_app,
    require_eval_data,
)

#: Member titles printed per large story of the feed day (the JSON file has them all).
TITLES_SHOWN = 12


def eval_stories(
    data: DataOption = DEFAULT_DATA,
    output: OutputOption = None,
) -> None:
    """Precision, recall and false links of the story rule, before and after (loads the model)."""
    require_eval_data(data, "eval/bbc-news", "eval/msrp/msrp_train.jsonl", "feeds/news/index.tsv")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from embedding.embedder import Embedder
    from newsstream.evals.stories import run_eval

    started = time.perf_counter()
    embedder = Embedder(settings_or_exit())
    results = run_eval(data, embedder.embed, console=console)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["model"] = {"name": embedder.model_name, "backend": embedder.backend}
    print_eval(results, console)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=1), encoding="utf-8")
        console.print(f"results written to {output}")


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    # A light box: the tables fit 80 columns (what a pipe or CI log gets).
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _bars(bars: dict[str, Any]) -> str:
    return (
        f"cosine >= {bars['strong']} with {bars['min_terms']} shared key term(s), "
        f"or >= {bars['mid']} with {bars['mid_terms']}"
    )


_SCORE_COLUMNS = ["flagged", "right", "wrong", "unlab.", "P", "P strict", "R", "R copy", "R event"]


def _scores(row: dict[str, Any]) -> list[str]:
    return [
        str(row["flagged"]),
        str(row["correct"]),
        str(row["wrong"]),
        str(row["unlabelled"]),
        f"{row['precision']:.3f}",
        f"{row['precision_strict']:.3f}",
        f"{row['recall']:.3f}",
        f"{row['recall_copies']:.3f}",
        f"{row['recall_events']:.3f}",
    ]


def print_eval(results: dict[str, Any], console: Console) -> None:
    """Print every part of ``results`` (from :func:`newsstream.evals.stories.run_eval`)."""
    rule = results["rule"]
    console.print(
        f"Story rule: long texts {_bars(rule['long'])}; below {rule['short_words']} words "
        f"{_bars(rule['short'])}; below the strong bar {rule['min_names']} shared name(s) or "
        "number(s) when both have some; "
        f"window {rule['window_s'] / 3600:g} h, {rule['weak_window_s'] / 3600:g} h below the "
        "strong bar."
    )
    pairs = results["pairs"]
    first = next(iter(pairs.values()))
    console.print(
        _table(
            f"Rewrite pairs at the defaults (BBC, {results['documents']} documents once dedup "
            f"removed the copies: {first['positives']} rewrites, "
            f"{first['copies']} of one copy, {first['events']} read as one event; each "
            "document's 10 nearest)",
            ["texts", *_SCORE_COLUMNS],
            [
                [label, *_scores(report[part])]
                for kind, report in pairs.items()
                for label, part in ((kind, "defaults"), (f"{kind}, window", "defaults_in_window"))
            ],
        )
    )
    console.print(
        "P counts labelled pairs only (right: silver pair; wrong: read as two events, two "
        "categories or two silver groups); P strict counts unlabelled pairs as wrong; R: all "
        "rewrites; R copy: rewrites with Jaccard >= 0.5; R event: rewrites read as one event. "
        "BBC has no dates: the plain rows ignore the time window; the window rows leave out "
        f"the pairs their texts place further apart than the window ({first['gaps_known']} "
        f"of the {first['positives']} rewrites have a stated gap)."
    )
    for kind, report in pairs.items():
        rows = [
            [
                f"{row['param']} {row['value']:.2f}{'*' if row['chosen'] else ''}",
                str(row["flagged"]),
                str(row["wrong"]),
                f"{row['precision']:.3f}",
                f"{row['recall_events']:.3f}",
                f"{row['precision_in_window']:.3f}",
                f"{row['recall_events_in_window']:.3f}",
            ]
            for row in report["curve"]
        ]
        console.print(
            _table(
                f"Rewrite pairs, {kind} texts: the {report['bars_varied']} bars varied "
                "(* = defaults)",
                ["bars", "flagged", "wrong", "P", "R event", "P window", "R ev. window"],
                rows,
            )
        )
    console.print(
        _table(
            f"Stream of the {results['documents']} BBC items in one window (seed 7). Before: "
            "nearest member at cosine >= 0.5; after: the story rule",
            ["texts", "rule", "stories", "in multi", "largest", "false", "bound"],
            [
                [
                    kind,
                    name,
                    str(scores["stories"]),
                    _pct(scores["share_in_multi"]),
                    ", ".join(map(str, scores["largest"][:3])),
                    _pct(scores["false_link_rate"]),
                    _pct(scores["upper_bound"]),
                ]
                for kind, report in results["stream"].items()
                for name, scores in report.items()
            ],
        )
    )
    console.print(
        "false: share of items whose story holds another event (two categories or two silver "
        "groups); bound: also counting members outside the item's silver group."
    )
    msrp = results["msrp"]
    console.print(
        _table(
            f"MSRP: pairs joined ({msrp['pairs']} pairs, {msrp['paraphrases']} paraphrases; "
            "the short bars' mid varied, * = defaults)",
            ["mid", "paraphrases", "non-paraphrases"],
            [
                [
                    f"{row['mid']:.2f}{'*' if row['chosen'] else ''}",
                    _pct(row["paraphrase_joined"]),
                    _pct(row["non_paraphrase_joined"]),
                ]
                for row in msrp["curve"]
            ],
        )
    )
    console.print(msrp["note"])
    _print_feeds(results["feeds"], console)
    console.print(summary(results))


def _print_feeds(feeds: dict[str, Any], console: Console) -> None:
    buckets = list(feeds["after"]["by_size"])
    console.print(
        _table(
            f"A day of 15 real feeds ({feeds['items']} items, {feeds['undated']} undated): "
            "stories by size",
            ["rule", *buckets, "stories", "in multi", "largest"],
            [
                [
                    name,
                    *(str(feeds[name]["by_size"][b]) for b in buckets),
                    str(feeds[name]["stories"]),
                    _pct(feeds[name]["share_in_multi"]),
                    str(max(feeds[name]["largest"], default=0)),
                ]
                for name in ("before", "after")
            ],
        )
    )
    for name in ("before", "after"):
        table = Table(
            title=f"Feed day, {name}: the largest stories", box=box.SIMPLE_HEAD, show_lines=True
        )
        table.add_column("size", justify="right")
        table.add_column("members (source: title)", overflow="fold")
        for members in feeds[name]["largest_stories"]:
            shown = members[:TITLES_SHOWN]
            more = len(members) - len(shown)
            text = "\n".join(escape(m) for m in shown) + (f"\n... and {more} more" if more else "")
            table.add_row(str(len(members)), text)
        console.print(table)


def summary(results: dict[str, Any]) -> str:
    """One line: the goals and whether each is met at the defaults."""
    from newsstream.evals.stories import GOAL_FALSE_LINK, GOAL_PRECISION, GOAL_RECALL

    goals = results["goals"]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    full, short, links = goals["rewrites_full"], goals["rewrites_short"], goals["false_links_short"]
    return (
        f"Goals at the defaults: rewrites precision >= {GOAL_PRECISION} at recall >= "
        f"{GOAL_RECALL} (of the rewrites read as one event; window applied): full texts {full['precision']:.3f}/{full['recall']:.3f} "
        f"{met(full['met'])}, short items {short['precision']:.3f}/{short['recall']:.3f} "
        f"{met(short['met'])}; "
        f"false links <= {GOAL_FALSE_LINK:.0%} on short items: {links['rate']:.2%} "
        f"{met(links['met'])}"
    )


def register(app: typer.Typer) -> None:
    """Add ``eval stories`` to ``app`` through the shared ``eval`` group."""
    attach(app)
    eval_app.command("stories")(eval_stories)
