"""``newsstream bench producer``: one full poll cycle of 1,000 feeds, changed and unchanged.

A child process serves ``n_feeds`` feed URLs on 127.0.0.1, each a copy of one of the real feeds
in ``../shared/data/feeds/news`` whose URLs are rewritten per copy (``://`` becomes
``://c<n>.``), so every copy's entries have their own ids: the first cycle finds every feed
changed and every entry new. The server answers ``If-None-Match`` with 304, so the second cycle
is the all-304 cycle. The producer is the real one (:func:`producers.service.build_scheduler`:
guarded fetcher, sandboxed parser pool, SQLite state, Kafka publisher waiting for delivery
reports) against a local Tansu broker started for the run.

Targets on the 2-core box: all-304 cycle <= 20 s, all-changed cycle <= 120 s. Peak memory is
the producer process's high-water RSS plus that of each parser worker.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from core.settings import load_settings
from newsstream.stack.launchers import free_port, tansu_command, wait_for_port
from newsstream.stack.proctree import stop_process
from producers.feeds import FeedSpec

TARGET_NOT_MODIFIED_S = 20.0
TARGET_CHANGED_S = 120.0
DEFAULT_FEEDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "feeds" / "news"

_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

port, folder = int(sys.argv[1]), Path(sys.argv[2])
sources = [p.read_bytes() for p in sorted(folder.glob("*.xml"))]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        try:
            n = int(self.path.rsplit("/", 1)[1].split(".")[0])
        except ValueError:
            self.send_error(404)
            return
        etag = f'"v1-{n}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = sources[n % len(sources)].replace(b"://", f"://c{n}.".encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever()
"""


def _high_water_mb(pid: int | str) -> float:
    """VmHWM (peak resident set) of a process in MB, 0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _start(argv: list[str], port: int, log: Path, what: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT)
    if not wait_for_port(port, 30):
        process.kill()
        raise RuntimeError(f"{what} did not listen on {port}; see {log}")
    return process


def run_producer_bench(
    n_feeds: int = 1000,
    *,
    feeds_dir: Path | None = None,
    console: Console | None = None,
    kafka_bootstrap: str | None = None,
) -> dict[str, Any]:
    """Run both cycles and return their figures (seconds, counts, peak memory in MB).

    Starts a local Tansu broker unless ``kafka_bootstrap`` is given. Raises ``RuntimeError``
    when the feeds folder is missing or a cycle does not end with the expected results.
    """
    from producers.service import build_scheduler

    folder = feeds_dir or DEFAULT_FEEDS_DIR
    if not any(folder.glob("*.xml")):
        raise RuntimeError(f"no feed files in {folder} (see ../shared/data/README.md)")
    out = console or Console()
    work = Path(tempfile.mkdtemp(prefix="newsstream-bench-producer-"))
    children: list[subprocess.Popen[bytes]] = []
    try:
        if kafka_bootstrap is None:
            kafka_port = free_port()
            children.append(
                _start(tansu_command(kafka_port), kafka_port, work / "broker.log", "Tansu")
            )
            kafka_bootstrap = f"127.0.0.1:{kafka_port}"
        http_port = free_port()
        children.append(
            _start(
                [sys.executable, "-c", _SERVER, str(http_port), str(folder)],
                http_port,
                work / "server.log",
                "feed server",
            )
        )
        name = "bench" + uuid.uuid4().hex[:8]
        settings = load_settings(
            data_dir=work / "data",
            kafka_bootstrap=kafka_bootstrap,
            kafka_topic=f"{name}.articles",
            kafka_dlq_topic=f"{name}.dlq",
            kafka_search_events_topic=f"{name}.search",
            fetch_allow_networks=[f"127.0.0.1:{http_port}"],
        )
        feeds = [
            FeedSpec(url=f"http://127.0.0.1:{http_port}/feed/{n}.xml", name=f"copy {n}")
            for n in range(n_feeds)
        ]
        scheduler, publisher, fetcher, state = build_scheduler(settings, feeds)
        try:
            started = time.monotonic()
            changed = scheduler.poll_all()
            changed_s = time.monotonic() - started
            started = time.monotonic()
            unchanged = scheduler.poll_all()
            not_modified_s = time.monotonic() - started
            parser_pids = scheduler_pids(scheduler)
            peak_mb = _high_water_mb("self")
            parsers_mb = sum(_high_water_mb(pid) for pid in parser_pids)
        finally:
            scheduler.close()
            publisher.close()
            fetcher.close()
            state.close()
    finally:
        for child in children:
            stop_process(child, grace_s=10)
        shutil.rmtree(work, ignore_errors=True)
    figures_sandbox = sandbox_overhead(folder)
    bad_changed = [r for r in changed if r.result != "ok"]
    bad_unchanged = [r for r in unchanged if r.result != "not_modified"]
    figures: dict[str, Any] = {
        "feeds": n_feeds,
        "changed_cycle_s": round(changed_s, 2),
        "changed_entries_published": sum(r.published for r in changed),
        "changed_feeds_not_ok": len(bad_changed),
        "not_modified_cycle_s": round(not_modified_s, 2),
        "not_modified_feeds_not_304": len(bad_unchanged),
        "producer_peak_rss_mb": round(peak_mb, 1),
        "parser_workers_peak_rss_mb": round(parsers_mb, 1),
        "target_changed_s": TARGET_CHANGED_S,
        "target_not_modified_s": TARGET_NOT_MODIFIED_S,
        **figures_sandbox,
    }
    _print(out, figures)
    return figures


def sandbox_overhead(folder: Path) -> dict[str, Any]:
    """Seconds to parse every feed of ``folder`` once in a sandboxed parser worker (warm) and
    once in this process: what the sandbox costs per cycle on top of parsing."""
    from producers.parser import parse_feed
    from producers.sandbox import ParserPool

    bodies = [p.read_bytes() for p in sorted(folder.glob("*.xml"))]
    url, name = "https://bench.example/feed", "bench"
    pool = ParserPool(1)
    try:
        pool.parse(bodies[0], feed_url=url, feed_id=name)  # start the worker before the clock
        started = time.perf_counter()
        for body in bodies:
            pool.parse(body, feed_url=url, feed_id=name)
        sandboxed_s = time.perf_counter() - started
    finally:
        pool.close()
    started = time.perf_counter()
    for body in bodies:
        parse_feed(body, feed_url=url, feed_id=name)
    direct_s = time.perf_counter() - started
    return {
        "sandbox_feeds": len(bodies),
        "sandbox_parse_s": round(sandboxed_s, 3),
        "direct_parse_s": round(direct_s, 3),
    }


def scheduler_pids(scheduler: Any) -> list[int]:
    """Pids of the scheduler's parser workers (empty when it parses in process)."""
    pids = getattr(scheduler.parser, "pids", None)
    return list(pids()) if callable(pids) else []


def _print(out: Console, f: dict[str, Any]) -> None:
    table = Table(title=f"producer: one poll cycle of {f['feeds']} feeds")
    for column in ("cycle", "seconds", "target", "ok", "detail"):
        table.add_column(column)
    table.add_row(
        "every feed changed",
        f"{f['changed_cycle_s']:.1f}",
        f"<= {TARGET_CHANGED_S:.0f}",
        "yes"
        if f["changed_cycle_s"] <= TARGET_CHANGED_S and not f["changed_feeds_not_ok"]
        else "NO",
        f"{f['changed_entries_published']} entries acknowledged by Kafka, "
        f"{f['changed_feeds_not_ok']} feeds not ok",
    )
    table.add_row(
        "every feed 304",
        f"{f['not_modified_cycle_s']:.1f}",
        f"<= {TARGET_NOT_MODIFIED_S:.0f}",
        "yes"
        if f["not_modified_cycle_s"] <= TARGET_NOT_MODIFIED_S
        and not f["not_modified_feeds_not_304"]
        else "NO",
        f"{f['not_modified_feeds_not_304']} feeds did not answer 304",
    )
    out.print(table)
    out.print(
        f"peak memory: producer {f['producer_peak_rss_mb']:.0f} MB, "
        f"parser workers {f['parser_workers_peak_rss_mb']:.0f} MB in total"
    )
    overhead = f["sandbox_parse_s"] / f["direct_parse_s"] - 1 if f["direct_parse_s"] else 0.0
    out.print(
        f"parse sandbox: {f['sandbox_feeds']} feeds in {f['sandbox_parse_s']:.2f} s in a parser "
        f"worker, {f['direct_parse_s']:.2f} s in process ({overhead:+.0%})"
    )
