"""The ``bench embed-memory`` scenario: a process's RSS over repeated passes, per backend.

What goes in: the backends to measure, the number of passes, the texts per embedding call and
the shared data dir. What comes out: a JSON-able dict (also written to ``out_path``) and a
printed table with, per backend, the resident memory (RSS) of the process after loading the
model and one warm-up call, after each pass, the growth of the first pass and of the later
ones, the last figure as a ratio to the first, and texts/s per pass.

The texts: the first 1,800 bbc-news articles, article ``i`` cut to its first ``4 + 37*i mod 180``
words (from a headline's length to past the token limit), sorted by length and embedded in
calls of 30. Sorted, almost every call is a new (rows, tokens) shape, as a worker's calls are
over days of feed items; a backend that keeps something per shape grows in pass 1 and not
after, and a backend whose memory is bounded barely grows at all. The later passes repeat the
same calls: growth there is a leak, not a cache.

Guarantees: each backend runs in a fresh child process (``python -m
newsstream.bench.embed_memory``), so one backend's libraries and caches never count in
another's figures; the settings come from the same ``NEWSSTREAM_*`` variables as the parent's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from newsstream.bench.embed import machine_info
from newsstream.bench.embed_quality import SHARED_DATA, bbc_known_items

MEMORY_TEXTS = 1_800
CALL_SIZE = 30


def memory_texts(eval_dir: Path = SHARED_DATA / "eval" / "bbc-news") -> list[str]:
    """The scenario's texts (see the module docstring), shortest first."""
    _, documents = bbc_known_items(eval_dir)
    texts = [
        " ".join(doc.split()[: 4 + (i * 37) % 180])
        for i, doc in enumerate(documents[:MEMORY_TEXTS])
    ]
    return sorted(texts, key=len)


def rss_mb() -> float:
    """This process's resident set size in MiB (``/proc/self/statm``, Linux)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_in_process(
    backend: str, texts: Sequence[str], passes: int, call_size: int
) -> dict[str, Any]:
    """Load ``backend`` here and embed ``texts`` ``passes`` times; RSS after each pass."""
    from core.settings import load_settings
    from embedding.embedder import Embedder

    embedder = Embedder(load_settings(embedding_backend=backend))
    embedder.embed(texts[:8])  # warm-up: first-call allocations, the smallest shape
    loaded = rss_mb()
    rows: list[dict[str, float]] = []
    for _ in range(passes):
        start = time.perf_counter()
        for i in range(0, len(texts), call_size):
            embedder.embed(texts[i : i + call_size])
        elapsed = time.perf_counter() - start
        rows.append({"rss_mb": round(rss_mb(), 1), "texts_per_s": round(len(texts) / elapsed, 1)})
    return {"loaded_rss_mb": round(loaded, 1), "passes": rows}


def run_embed_memory_bench(
    out_path: Path,
    *,
    backends: Sequence[str],
    passes: int = 3,
    call_size: int = CALL_SIZE,
    data_dir: Path = SHARED_DATA,
    console: Console | None = None,
) -> dict[str, Any]:
    """Measure each of ``backends`` in its own child process; see the module docstring."""
    console = console or Console()
    eval_dir = data_dir / "eval" / "bbc-news"
    n_texts = len(memory_texts(eval_dir))  # fails here, naming the folder, if data is missing
    started = machine_info()
    results: dict[str, dict[str, Any]] = {}
    for backend in backends:
        command = [
            sys.executable,
            "-m",
            "newsstream.bench.embed_memory",
            backend,
            f"--passes={passes}",
            f"--call-size={call_size}",
            f"--eval-dir={eval_dir}",
        ]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"measuring {backend} failed:\n{done.stderr[-3000:]}")
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        rss = [figures["loaded_rss_mb"], *(p["rss_mb"] for p in figures["passes"])]
        figures["growth_first_pass_mb"] = round(rss[1] - rss[0], 1)
        figures["growth_later_passes_mb"] = round(rss[-1] - rss[1], 1)
        figures["ratio_last_to_loaded"] = round(rss[-1] / rss[0], 2)
        results[backend] = figures
    report: dict[str, Any] = {
        "scenario": "embed-memory",
        "machine": {**started, "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "texts": {"n": n_texts, "call_size": call_size, "order": "shortest first"},
        "backends": results,
    }
    _print_table(console, report, passes)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _print_table(console: Console, report: dict[str, Any], passes: int) -> None:
    texts = report["texts"]
    table = Table(
        title=f"embed-memory: RSS (MiB), {texts['n']} texts in calls of {texts['call_size']}"
    )
    columns = ["backend", "loaded", *(f"pass {i + 1}" for i in range(passes))]
    for column in [*columns, "growth 1st", "growth later", "x loaded", "texts/s"]:
        table.add_column(column, justify="left" if column == "backend" else "right")
    for name, row in report["backends"].items():
        table.add_row(
            name,
            f"{row['loaded_rss_mb']:.0f}",
            *(f"{p['rss_mb']:.0f}" for p in row["passes"]),
            f"{row['growth_first_pass_mb']:+.0f}",
            f"{row['growth_later_passes_mb']:+.0f}",
            f"{row['ratio_last_to_loaded']:.2f}",
            " / ".join(f"{p['texts_per_s']:.0f}" for p in row["passes"]),
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> None:
    """The child process: measure one backend, print its figures as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backend")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--call-size", type=int, default=CALL_SIZE)
    parser.add_argument("--eval-dir", type=Path, default=SHARED_DATA / "eval" / "bbc-news")
    args = parser.parse_args(argv)
    texts = memory_texts(args.eval_dir)
    print(json.dumps(measure_in_process(args.backend, texts, args.passes, args.call_size)))


if __name__ == "__main__":
    main()
