"""The ``bench embed`` scenario: texts/s per embedding backend, and the quality check.

What goes in: settings (model, threads, batch size; the data dir holds the export cache), the
backends to compare, the number of timing rounds, and where to write the JSON. What comes out:
a JSON-able dict (also written to ``out_path``) and a printed table with, per backend,

- ``short_texts_per_s``: the shared news items (title + description, ~285 characters);
- ``long_texts_per_s``: bbc-news articles of at least 1,800 characters, so every one is cut at
  the token limit (``embedding_max_tokens``, 192 by default; the model's own limit is 256);
- ratios of both against torch fp32 measured in the same run: backends take turns within each
  round and the median round counts, so a machine busy with other work slows all of them alike;
- the quality figures of :mod:`newsstream.bench.embed_quality` (unless ``quality=False``): cosine
  and MRR@10 against fp32, and ``alone~batch``, the lowest cosine of a text embedded alone vs
  beside texts of other lengths.

With ``choice_path`` the result also becomes the reference record
(:data:`embedding.embedder.CHOICE_FILE`): the backends that passed, fastest first here. They are
the candidates that ``embedding_backend=auto`` measures on each machine it runs on
(:mod:`embedding.backend_choice`), and the backends the model fingerprint lets share a collection.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from core.settings import Settings
from embedding.embedder import BACKENDS, Embedder
from newsstream.bench.embed_quality import (
    MAX_MRR_DROP,
    MIN_BATCH_COSINE,
    MIN_MEAN_COSINE,
    SHARED_DATA,
    bbc_known_items,
    evaluate_backends,
    news_texts,
)

LONG_TEXT_MIN_CHARS = 1_800


def machine_info() -> dict[str, Any]:
    """CPU model, core count and load average: what makes two runs comparable or not."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def _rate(embedder: Embedder, texts: Sequence[str]) -> float:
    start = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - start)


def run_embed_bench(
    settings: Settings,
    out_path: Path,
    *,
    backends: Sequence[str] = BACKENDS,
    rounds: int = 3,
    n_long: int = 128,
    quality: bool = True,
    choice_path: Path | None = None,
    data_dir: Path = SHARED_DATA,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure ``backends`` (torch is always included as the baseline); see the module doc."""
    console = console or Console()
    short = news_texts(data_dir / "feeds" / "news")
    _, docs = bbc_known_items(data_dir / "eval" / "bbc-news")
    long = [d for d in docs if len(d) >= LONG_TEXT_MIN_CHARS][:n_long]
    names = ["torch", *[b for b in backends if b != "torch"]]
    started = machine_info()

    embedders: dict[str, Embedder] = {}
    load_s: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        embedders[name] = Embedder(settings.model_copy(update={"embedding_backend": name}))
        load_s[name] = time.perf_counter() - start
        embedders[name].embed(short[:8])  # warm-up: first-call allocations and graph setup

    rates: dict[str, dict[str, list[float]]] = {n: {"short": [], "long": []} for n in names}
    for _ in range(rounds):
        for name in names:
            rates[name]["short"].append(_rate(embedders[name], short))
            rates[name]["long"].append(_rate(embedders[name], long))

    results: dict[str, dict[str, Any]] = {}
    base_short = statistics.median(rates["torch"]["short"])
    base_long = statistics.median(rates["torch"]["long"])
    for name in names:
        s = statistics.median(rates[name]["short"])
        lo = statistics.median(rates[name]["long"])
        results[name] = {
            "short_texts_per_s": round(s, 1),
            "long_texts_per_s": round(lo, 1),
            "ratio_short": round(s / base_short, 2),
            "ratio_long": round(lo / base_long, 2),
            "load_s": round(load_s[name], 1),
        }
    if quality:
        for name, figures in evaluate_backends(
            settings,
            names,
            feeds_dir=data_dir / "feeds" / "news",
            eval_dir=data_dir / "eval" / "bbc-news",
            embedders=embedders,
        ).items():
            results[name]["quality"] = figures.as_dict()

    report: dict[str, Any] = {
        "scenario": "embed",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {**started, "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "model": settings.embedding_model,
        "threads": settings.embedding_threads or os.cpu_count(),
        "batch_size": settings.embedding_batch_size,
        "rounds": rounds,
        "texts": {
            "short": {"n": len(short), "mean_chars": round(sum(map(len, short)) / len(short))},
            "long": {
                "n": len(long),
                "min_chars": LONG_TEXT_MIN_CHARS,
                "tokens": embedders["torch"].max_seq_length,
            },
        },
        "thresholds": {
            "min_mean_cosine": MIN_MEAN_COSINE,
            "max_mrr10_drop": MAX_MRR_DROP,
            "min_batch_cosine": MIN_BATCH_COSINE,
        },
        "backends": results,
    }
    if quality:
        report["ranking"] = rank_backends(results)
        report["auto"] = report["ranking"][0]
    _print_table(console, report)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    if choice_path is not None and quality:
        write_choice(report, choice_path)
    return report


def rank_backends(results: dict[str, dict[str, Any]]) -> list[str]:
    """Backends that passed the quality check, fastest first.

    Speed is the geometric mean of the short- and long-text ratios to fp32: the worker embeds
    feed items day to day and full articles in a backfill, and both matter. torch fp32 is the
    reference, so it always passes and ends the list unless something slower passed.
    """
    passed = [n for n, r in results.items() if n == "torch" or r.get("quality", {}).get("passes")]
    return sorted(passed, key=lambda n: -(results[n]["ratio_short"] * results[n]["ratio_long"]))


def write_choice(report: dict[str, Any], path: Path) -> None:
    """Write the reference record whose passing backends ``embedding_backend=auto`` measures
    (see :mod:`embedding.backend_choice`)."""
    record = {
        "model": report["model"],
        "default": report["auto"],
        "ranking": report["ranking"],
        "measured_at": report["measured_at"],
        "machine": report["machine"],
        "thresholds": report["thresholds"],
        "command": "newsstream bench embed",
        "backends": report["backends"],
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def _print_table(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"embed: {report['model']}, {report['threads']} threads")
    tokens = report["texts"]["long"]["tokens"]
    columns = (
        "backend",
        "short/s",
        "x fp32",
        f"{tokens}-tok/s",
        "x fp32",
        "cos",
        "MRR@10",
        "alone~batch",
        "ok",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "backend" else "right")
    for name, row in report["backends"].items():
        q = row.get("quality", {})
        table.add_row(
            name,
            f"{row['short_texts_per_s']:.1f}",
            f"{row['ratio_short']:.2f}",
            f"{row['long_texts_per_s']:.1f}",
            f"{row['ratio_long']:.2f}",
            f"{q['mean_cosine']:.4f}" if q else "-",
            f"{q['mrr10']:.3f}" if q else "-",
            f"{q['batch_min_cosine']:.4f}" if q else "-",
            ("yes" if q["passes"] else "no") if q else "-",
        )
    console.print(table)
    if "auto" in report:
        console.print(f"auto picks: {report['auto']} (ranking {', '.join(report['ranking'])})")
