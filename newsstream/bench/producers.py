"""``newsstream bench producers``: feeds sharded over 1, 2, ... producer processes.

For each producer count: real ``newsstream produce`` processes join their group on a local Tansu
broker (fresh topics per run, poll interval 1 s so a producer is never idle), then ``feeds``
feeds are published to the feeds topic at once and the clock starts. Measured:

- the all-changed cycle: until every feed was polled once (its entries acknowledged by Kafka);
- the all-304 cycle: the next ``feeds`` polls (the server answers ``If-None-Match`` with 304);
- with two producers or more, the failover: one producer is killed with SIGKILL; the time until
  the first and until the last of its feeds is fetched again by another producer.

A child process serves the feeds on 127.0.0.1 (``/feed/<n>.xml``): copies of the real feeds in
``../shared/data/feeds/news`` with their URLs rewritten per copy (as ``bench producer`` does),
or with ``light`` a one-item document per feed (the per-feed cost without the parse of big
documents). Each producer fetches with its own User-Agent, so the server knows who polled what.
The per-host fetch limit is raised to the poll concurrency (8): every feed is on one server
here, while real feeds are spread over many hosts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from core.settings import Settings
from newsstream.bench.producer import DEFAULT_FEEDS_DIR, _start
from newsstream.stack.launchers import free_port, tansu_command
from newsstream.stack.proctree import stop_process
from producers.feeds import FeedSpec

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6_000
MAX_POLL_INTERVAL_MS = 10_000

_SERVER = """
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

port, folder, light = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
sources = [p.read_bytes() for p in sorted(folder.glob("*.xml"))]
owners, counts, lock = {}, {"200": 0, "304": 0}, threading.Lock()

def body_of(n):
    if light:
        return (f"<?xml version='1.0'?><rss version='2.0'><channel><title>c{n}</title>"
                f"<link>https://c{n}.example/</link><item><title>Story of copy {n}</title>"
                f"<link>https://c{n}.example/1</link><description>The one story of copy {n}."
                "</description></item></channel></rss>").encode()
    return sources[n % len(sources)].replace(b"://", f"://c{n}.".encode())

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body=b"", etag=None, kind="application/rss+xml"):
        self.send_response(status)
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path in ("/owners", "/counts"):
            with lock:
                data = owners if self.path == "/owners" else counts
                body = json.dumps(data).encode()
            return self.reply(200, body, kind="application/json")
        try:
            n = int(self.path.rsplit("/", 1)[1].split(".")[0])
        except ValueError:
            return self.reply(404)
        agent, etag = self.headers.get("User-Agent", ""), f'"v1-{n}"'
        status = 304 if self.headers.get("If-None-Match") == etag else 200
        with lock:
            counts[str(status)] += 1
            if owners.get(n, [None])[0] != agent:
                owners[n] = [agent, time.time()]
        self.reply(status, b"" if status == 304 else body_of(n), etag)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever()
"""


def _totals(port: int) -> dict[str, float]:
    """Sum of each metric family's samples at a producer's /metrics ({} when unreachable)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            if "result" in sample.labels:  # fetches by result: ok, not_modified, timeout, ...
                key = f"{sample.name}:{sample.labels['result']}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


class _Run:
    """One producer count: its broker topics, producer processes and their metrics ports."""

    def __init__(self, work: Path, bootstrap: str, http_port: int, producers: int) -> None:
        self.work = work
        name = "bench" + uuid.uuid4().hex[:8]
        self.settings = Settings(
            kafka_bootstrap=bootstrap,
            kafka_topic=f"{name}.articles",
            kafka_status_topic=f"{name}.status",
            kafka_partitions=PARTITIONS,
        )
        empty = work / f"{name}-feeds.toml"
        empty.write_text("", encoding="utf-8")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.logs: dict[str, Path] = {}
        for number in range(1, producers + 1):
            agent = f"p{number}"
            data = work / name / agent
            data.mkdir(parents=True)
            self.ports[agent] = free_port()
            self.logs[agent] = data / "producer.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
            env |= {
                "NEWSSTREAM_KAFKA_BOOTSTRAP": bootstrap,
                "NEWSSTREAM_KAFKA_TOPIC": self.settings.kafka_topic,
                "NEWSSTREAM_KAFKA_STATUS_TOPIC": self.settings.kafka_status_topic,
                "NEWSSTREAM_KAFKA_PARTITIONS": str(PARTITIONS),
                "NEWSSTREAM_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
                "NEWSSTREAM_KAFKA_MAX_POLL_INTERVAL_MS": str(MAX_POLL_INTERVAL_MS),
                "NEWSSTREAM_FEEDS_FILE": str(empty),
                "NEWSSTREAM_FETCH_ALLOW_NETWORKS": json.dumps([f"127.0.0.1:{http_port}"]),
                "NEWSSTREAM_FETCH_USER_AGENT": agent,
                # Every feed is on this one server: as if each were on its own host.
                "NEWSSTREAM_FETCH_PER_HOST_LIMIT": "8",
                "NEWSSTREAM_POLL_INTERVAL_S": "1",
                "NEWSSTREAM_POLL_INTERVAL_MIN_S": "1",
                "NEWSSTREAM_POLL_INTERVAL_MAX_S": "1",
                "NEWSSTREAM_DATA_DIR": str(data),
                "NEWSSTREAM_LOG_FILE": str(data / "producer.log"),
                "NEWSSTREAM_METRICS_PORT": str(self.ports[agent]),
            }
            with (data / "out.log").open("ab") as out:
                self.processes[agent] = subprocess.Popen(
                    [sys.executable, "-m", "newsstream", "produce"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )

    def _log(self, agent: str) -> str:
        log = self.logs[agent]
        return log.read_text(errors="replace") if log.exists() else ""

    def wait_joined(self, timeout_s: float = 180.0) -> float:
        """Seconds until every producer was assigned partitions and the group held still 3 s."""
        started = time.monotonic()
        last, changed = -1, time.monotonic()
        while time.monotonic() - started < timeout_s:
            logs = [self._log(agent) for agent in self.processes]
            moves = sum(len(re.findall(r"(?:assigned|revoked) feeds partitions", t)) for t in logs)
            if moves != last:
                last, changed = moves, time.monotonic()
            joined = all("assigned feeds partitions" in t for t in logs)
            if joined and time.monotonic() - changed > 3:
                return changed - started
            time.sleep(0.2)
        raise RuntimeError(f"the producers did not join within {timeout_s:.0f} s ({self.work})")

    def polled(self, alive: set[str] | None = None) -> tuple[float, float]:
        """(feeds polled, entries published) summed over the producers' /metrics."""
        polled = published = 0.0
        for agent, port in self.ports.items():
            if alive is not None and agent not in alive:
                continue
            totals = _totals(port)
            polled += totals.get("newsstream_feeds_polled_total", 0.0)
            published += totals.get("newsstream_entries_published_total", 0.0)
        return polled, published

    def failed(self) -> int:
        """Polls that neither brought a document nor a 304 (timeouts, parse errors, ...)."""
        failed = 0.0
        for port in self.ports.values():
            totals = _totals(port)
            good = totals.get("newsstream_feed_fetches_total:ok", 0.0)
            good += totals.get("newsstream_feed_fetches_total:not_modified", 0.0)
            failed += totals.get("newsstream_feed_fetches_total", 0.0) - good
        return int(failed)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                stop_process(process, grace_s=15)


def _wait_polls(run: _Run, target: float, timeout_s: float, alive: set[str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while run.polled(alive)[0] < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {target:.0f} polls within {timeout_s:.0f} s")
        time.sleep(0.2)


def _one_count(
    work: Path, bootstrap: str, http_port: int, producers: int, n_feeds: int
) -> dict[str, Any]:
    from producers.feed_topic import FeedTopicWriter

    run = _Run(work, bootstrap, http_port, producers)
    try:
        joined_s = run.wait_joined()
        feeds = [FeedSpec(url=f"http://127.0.0.1:{http_port}/feed/{n}.xml") for n in range(n_feeds)]
        base, _ = run.polled()
        writer = FeedTopicWriter(run.settings)
        started = time.monotonic()
        writer.put(feeds)
        writer.close()
        _wait_polls(run, base + n_feeds, 3600)
        changed_s = time.monotonic() - started
        _polled, entries = run.polled()
        failed = run.failed()
        started = time.monotonic()
        _wait_polls(run, base + 2 * n_feeds, 3600)
        not_modified_s = time.monotonic() - started
        result: dict[str, Any] = {
            "producers": producers,
            "join_s": round(joined_s, 1),
            "changed_cycle_s": round(changed_s, 2),
            "changed_entries_published": int(entries),
            "changed_polls_failed": failed,
            "not_modified_cycle_s": round(not_modified_s, 2),
        }
        if producers > 1:
            result.update(_failover(run, http_port))
        return result
    finally:
        run.stop()


def _failover(run: _Run, http_port: int) -> dict[str, Any]:
    owners_url = f"http://127.0.0.1:{http_port}/owners"
    victim = "p1"
    owned = {n for n, (agent, _t) in httpx.get(owners_url).json().items() if agent == victim}
    run.processes[victim].send_signal(signal.SIGKILL)
    run.processes[victim].wait(10)
    killed = time.time()
    deadline = time.monotonic() + 600
    while True:
        owners = httpx.get(owners_url).json()
        moved = [owners[n][1] for n in owned if owners[n][0] != victim]
        if len(moved) == len(owned):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(owned) - len(moved)} feeds of the killed producer not moved")
        time.sleep(0.2)
    return {
        "failover_feeds": len(owned),
        "failover_first_s": round(min(moved) - killed, 1) if moved else None,
        "failover_all_s": round(max(moved) - killed, 1) if moved else None,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "max_poll_interval_ms": MAX_POLL_INTERVAL_MS,
    }


def run_producers_bench(
    n_feeds: int = 1000,
    counts: tuple[int, ...] = (1, 2),
    *,
    light: bool = False,
    feeds_dir: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run every producer count of ``counts`` on ``n_feeds`` feeds; returns the figures."""
    folder = feeds_dir or DEFAULT_FEEDS_DIR
    if not light and not any(folder.glob("*.xml")):
        raise RuntimeError(f"no feed files in {folder} (see ../shared/data/README.md)")
    out = console or Console()
    work = Path(tempfile.mkdtemp(prefix="newsstream-bench-producers-"))
    children: list[subprocess.Popen[bytes]] = []
    runs: list[dict[str, Any]] = []
    try:
        kafka_port, http_port = free_port(), free_port()
        children.append(_start(tansu_command(kafka_port), kafka_port, work / "broker.log", "Tansu"))
        argv = [sys.executable, "-c", _SERVER, str(http_port), str(folder), "1" if light else "0"]
        children.append(_start(argv, http_port, work / "server.log", "feed server"))
        for producers in counts:
            out.print(f"{producers} producer(s), {n_feeds} feeds ...")
            runs.append(_one_count(work, f"127.0.0.1:{kafka_port}", http_port, producers, n_feeds))
            out.print(runs[-1])
    finally:
        for child in children:
            stop_process(child, grace_s=10)
        shutil.rmtree(work, ignore_errors=True)
    figures = {"feeds": n_feeds, "light": light, "runs": runs}
    _print(out, figures)
    return figures


def _print(out: Console, figures: dict[str, Any]) -> None:
    kind = "one-item documents" if figures["light"] else "copies of the real feeds"
    table = Table(title=f"producers: {figures['feeds']} feeds ({kind})")
    for column in ("producers", "join s", "all changed s", "entries", "all 304 s", "failover"):
        table.add_column(column)
    for run in figures["runs"]:
        failover = (
            f"{run['failover_feeds']} feeds: first {run['failover_first_s']} s, "
            f"all {run['failover_all_s']} s"
            if "failover_feeds" in run
            else "-"
        )
        table.add_row(
            str(run["producers"]),
            f"{run['join_s']:.1f}",
            f"{run['changed_cycle_s']:.1f}",
            str(run["changed_entries_published"]),
            f"{run['not_modified_cycle_s']:.1f}",
            failover,
        )
    out.print(table)
