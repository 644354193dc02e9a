"""`newsstream bench stack`: the memory of the whole `newsstream up` stack holding N articles.

In: an article count, the shared data dir (its news feeds are replayed by the stack and give the
vocabulary of the bench texts) and the seconds of search load. Steps, each bounded in time:

1. The configured local Milvus alone, on a throw-away newsstream data dir; N article rows are
   written through the worker's :class:`store.writer.ArticleWriter` (Milvus and the
   keyword index), flushed, indexed and compacted, and the server is stopped. The rows are
   distinct texts of words drawn from the shared feeds (~60 words, as a feed item's title and
   description), ingested over the last 60 hours, so every one of them is inside the 72-hour
   dedup window.
2. ``newsstream up --replay <shared feeds>`` on that data dir, as a user starts it: the server
   reloads the collection, the worker rebuilds its dedup index from the window, the producer
   polls the replayed feeds. The bench waits for the worker's rebuild and the API's first answer.
3. Search load on the API (hybrid, then semantic, one client each) for ``seconds`` each.
4. RSS, PSS and anonymous memory of every process of the stack, grouped by service (the
   supervisor's direct children with their own children), with the total PSS, which counts
   shared pages once.

Out: a dict (JSON-able) and a table. The whole ``up`` tree is stopped and the data dir deleted
on exit, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from core.settings import Settings
from embedding.embedder import Embedder
from newsstream.bench.search import _measure, _perturbed, _rows, _texts
from newsstream.stack.launchers import local_milvus_process
from newsstream.stack.local_stores import RssSampler
from newsstream.stack.proctree import (
    alive,
    format_mib,
    memory,
    parse_proc_stat,
    stop_process,
    tree_pids,
)
from store.client import connect
from store.compaction import compact_and_wait
from store.writer import ArticleWriter

BATCH = 2_000
WORDS_PER_TEXT = 60
WORDS_PER_TITLE = 8
#: The bench's articles are spread over this much of the past (inside the 72-hour dedup window).
SPREAD_S = 60 * 3600
REBUILT = re.compile(r"dedup index rebuilt from Milvus: (\d+) articles")


def vocabulary(texts: list[str]) -> list[str]:
    """The distinct lower-case words of ``texts`` (letters only), sorted (a fixed order)."""
    return sorted({w for t in texts for w in re.findall(r"[a-z]+", t.lower()) if len(w) > 2})


def synthetic_texts(
    words: list[str], count: int, length: int, rng: np.random.Generator
) -> list[str]:
    """``count`` texts of ``length`` words drawn uniformly from ``words`` (distinct in practice:
    their shingles, and so their MinHash bands, differ like those of unrelated articles)."""
    picks = rng.integers(0, len(words), (count, length))
    return [" ".join(words[i] for i in row) for row in picks.tolist()]


def fill_store(settings: Settings, n: int, data: Path, console: Console) -> dict[str, float]:
    """Step 1 of the module docstring; returns the seconds of each phase."""
    with local_milvus_process(settings.local_milvus, settings.data_dir, 180) as (uri, _pid):
        texts = _texts(data)
        words = vocabulary(texts)
        embedder = Embedder(settings)
        base = embedder.embed(texts)
        client = connect(uri)
        writer = ArticleWriter.fresh(
            client,
            settings.model_copy(update={"milvus_uri": uri}),
            embedder.dimension,
            embedder.fingerprint,  # the stack's workers and API then find their own model
        )
        rng = np.random.default_rng(11)
        started = time.monotonic()
        now = int(time.time())
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"writing {n} articles", total=n)
            for start in range(0, n, BATCH):
                count = min(BATCH, n - start)
                chunk = _perturbed(base, np.arange(start, start + count) % len(base), rng)
                bodies = synthetic_texts(words, count, WORDS_PER_TEXT, rng)
                titles = synthetic_texts(words, count, WORDS_PER_TITLE, rng)
                rows = _rows(start, chunk, np.arange(count), bodies)
                for j, (row, title) in enumerate(zip(rows, titles, strict=True)):
                    # Oldest first, every one inside the window.
                    at = now - int((n - start - j) * SPREAD_S / n)
                    row.update(title=title, ingested_at=at, published_at=at)
                writer.upsert(rows)
                progress.advance(task, count)
        client.flush(settings.milvus_collection)
        fill_s = time.monotonic() - started
        console.print(f"[dim]{n} articles written in {fill_s:.0f} s; waiting for the index "
                      "and the server's compaction[/dim]")  # fmt: skip
        settled = compact_and_wait(client, settings.milvus_collection, n, 3600)
        client.close()
        if writer.keywords is not None:
            writer.keywords.close()
        return {"fill_s": fill_s, "settle_s": time.monotonic() - started - fill_s,
                "settled": float(settled)}  # fmt: skip


@contextmanager
def running_up(settings: Settings, feeds: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``newsstream up --replay feeds`` on ``settings.data_dir``; stopped on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
    env["NEWSSTREAM_DATA_DIR"] = str(settings.data_dir)
    env["NEWSSTREAM_API_RATE_LIMIT_PER_MINUTE"] = "0"
    env["NEWSSTREAM_LOCAL_MILVUS"] = settings.local_milvus
    env["NEWSSTREAM_MILVUS_COLLECTION"] = settings.milvus_collection  # the one filled
    out = open(settings.data_dir / "bench-up.out", "wb")  # noqa: SIM115
    up = subprocess.Popen(
        [sys.executable, "-m", "newsstream", "up", "--replay", str(feeds), "--port", "0"],
        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield up
    finally:
        stop_process(up, grace_s=60)
        out.close()


def wait_for_stack(
    settings: Settings, up: subprocess.Popen[bytes], timeout_s: float
) -> dict[str, Any]:
    """Wait until the worker logged its dedup rebuild and the API answers a search; returns the
    API URL, the rebuilt count and the seconds each took. Raises RuntimeError on timeout or
    when ``up`` exits."""
    started = time.monotonic()
    deadline = started + timeout_s
    worker_log = settings.data_dir / "logs" / "worker.log"
    marker = settings.data_dir / "up.json"
    api: str | None = None
    rebuilt: int | None = None
    result: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if up.poll() is not None:
            output = (settings.data_dir / "bench-up.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"newsstream up exited with {up.returncode}:\n{output}")
        if api is None and marker.exists():
            api = json.loads(marker.read_text())["api"]
        if rebuilt is None and worker_log.exists():
            found = REBUILT.search(worker_log.read_text(errors="replace"))
            if found:
                rebuilt = int(found.group(1))
                result["rebuild_done_s"] = time.monotonic() - started
        if api is not None and "api_ready_s" not in result:
            try:
                httpx.get(
                    f"{api}/search", params={"q": "news", "k": 10}, timeout=10
                ).raise_for_status()
                result["api_ready_s"] = time.monotonic() - started
            except httpx.HTTPError:
                pass
        if rebuilt is not None and "api_ready_s" in result:
            return {**result, "api": api, "dedup_rebuilt": rebuilt}
        time.sleep(2)
    raise RuntimeError(
        f"the stack was not ready after {timeout_s:.0f} s (api {api}, rebuilt {rebuilt})"
    )


def service_of(pid: int) -> str:
    """A short name for a process of the stack, from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv if a]
    joined = " ".join(words)
    for key, name in (("newsstream serve", "api"), ("newsstream consume", "worker"),
                      ("newsstream trends", "trends"), ("newsstream produce", "producer"),
                      ("newsstream up", "supervisor (up)"), ("tansu", "broker"),
                      ("milvus", "milvus server")):  # fmt: skip
        if key in joined:
            return name
    # Anything else: the program and its first argument ("python -c", "python -m").
    return " ".join([Path(words[0]).name, *words[1:2]]) if words else "?"


def stack_memory(root: int) -> dict[str, dict[str, int]]:
    """Memory of ``root``'s tree grouped by the service of each of root's direct children (a
    child's own children, such as the parser sandboxes of the producer, count with it)."""
    parents: dict[int, int] = {}
    pids = tree_pids(root)
    for pid in pids:
        try:
            parents[pid] = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())[1]
        except (OSError, ValueError, IndexError):
            continue
    groups: dict[str, dict[str, int]] = {}
    for pid in pids:
        top = pid
        while parents.get(top) not in (root, None) and top != root:
            top = parents[top]
        name = service_of(top)
        figures = memory(pid)
        group = groups.setdefault(name, {"rss": 0, "pss": 0, "anon": 0, "swap": 0, "processes": 0})
        for key, value in figures.items():
            group[key] += value
        group["processes"] += 1
    return groups


def run_stack_bench(
    n: int, data: Path, *, seconds: float = 20.0, console: Console | None = None
) -> dict[str, Any]:
    """Steps 1-4 of the module docstring."""
    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="newsstream-stack-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), api_search_events=False)
        result: dict[str, Any] = {"articles": n, "store": settings.local_milvus,
                                  "load_average_start": os.getloadavg()}  # fmt: skip
        result.update(fill_store(settings, n, data, console))
        console.print("[dim]starting newsstream up on the filled data dir[/dim]")
        with running_up(settings, data / "feeds" / "news") as up:
            peak = RssSampler(up.pid, interval_s=1.0)
            try:
                result.update(wait_for_stack(settings, up, 3600))
                result["peak_rss_during_start"] = peak.peak
                for mode in ("hybrid", "semantic"):
                    result[f"search_{mode}"] = _measure(result["api"], 1, seconds, mode)
                result["memory"] = stack_memory(up.pid)
            finally:
                peak.stop()
            result["peak_rss"] = peak.peak
            # The README promises that SIGTERM stops the whole tree within 10 s: measured here.
            children = tree_pids(up.pid) - {up.pid}
            stopping = time.monotonic()
            result["stop_exit_code"] = stop_process(up, grace_s=60)
            while any(alive(pid) for pid in children) and time.monotonic() - stopping < 60:
                time.sleep(0.05)
            result["stop_s"] = time.monotonic() - stopping
            result["stop_left"] = sorted(pid for pid in children if alive(pid))
        result["load_average_end"] = os.getloadavg()
        return result


def stack_table(result: dict[str, Any]) -> Table:
    """The memory figures of :func:`run_stack_bench` as a table, one row per service."""
    table = Table(title=f"newsstream up holding {result['articles']:,} articles: memory")
    for column in ("service", "processes", "PSS", "RSS", "anonymous"):
        table.add_column(column, justify="left" if column == "service" else "right")
    groups = result["memory"]
    for name in sorted(groups, key=lambda g: -groups[g]["pss"]):
        g = groups[name]
        table.add_row(name, str(g["processes"]), format_mib(g["pss"]), format_mib(g["rss"]),
                      format_mib(g["anon"]))  # fmt: skip
    total = {k: sum(g[k] for g in groups.values()) for k in ("processes", "pss", "rss", "anon")}
    table.add_row("total", str(total["processes"]), format_mib(total["pss"]),
                  format_mib(total["rss"]), format_mib(total["anon"]), style="bold")  # fmt: skip
    return table
