"""Feeds sharded over two producer processes in one group, and kill -9 of one of them.

Two `newsstream produce` processes share the feeds of the feeds topic through their consumer
group on the real local broker; news feeds of the shared corpus are served on 127.0.0.1 (each
producer fetches with its own User-Agent, so the server tells who polled what). When the second
producer joins, the group gives it some feeds; those feeds change while it owns them; then it is
killed with SIGKILL. The survivor must poll the dead producer's feeds (after the group's session
timeout and a rebalance) resuming from the state the dead one left on the feed-state topic: its
first fetch of each carries the validator the dead producer got (the server answers 304), and
entries the dead producer published are not published again. A later change is published once.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.settings import Settings
from newsstream.stack.proctree import stop_process
from producers.feed_topic import feed_partition
from producers.feeds import FeedSpec, feeds_to_toml
from producers.parser import parse_feed
from producers.topic_reader import read_partitions

from conftest import NEWS_FEEDS
from probes import wait_until

pytestmark = pytest.mark.faults

PARTITIONS = 2
#: Small feeds of the shared corpus (the 1 MB ones only cost parse time here).
FEED_FILES = [
    "7be307059415227d.xml",  # NPR World
    "4179e7a13df0f120.xml",  # CS Monitor
    "e8fa5b64a4b41322.xml",  # MercoPress
    "14333881097406c7.xml",  # Rest of World
    "4288464f77b21d15.xml",  # WSJ World
    "d2a188f20637f7a4.xml",  # Boston.com
]


@dataclass
class Fetch:
    path: str
    agent: str
    if_none_match: str | None
    status: int
    at: float


class FeedHost:
    """Serves feed documents by path with an ETag of their bytes; records every fetch."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.fetches: list[Fetch] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with owner.lock:
                    body = owner.bodies.get(path)
                etag = owner.etag(path) if body is not None else None
                asked = self.headers.get("If-None-Match")
                status = 404 if body is None else 304 if asked == etag else 200
                with owner.lock:
                    owner.fetches.append(
                        Fetch(path, self.headers.get("User-Agent", ""), asked, status, time.time())
                    )
                self.send_response(status)
                if etag:
                    self.send_header("ETag", etag)
                payload = body if status == 200 and body is not None else b""
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def etag(self, path: str) -> str:
        with self.lock:
            return '"' + hashlib.sha1(self.bodies[path]).hexdigest()[:16] + '"'

    def fetched(self, agent: str, since: float = 0.0) -> list[Fetch]:
        with self.lock:
            return [f for f in self.fetches if f.agent == agent and f.at >= since]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def feed_host() -> Iterator[FeedHost]:
    if not NEWS_FEEDS.is_dir():
        pytest.skip(f"the shared news feeds are absent ({NEWS_FEEDS})")
    host = FeedHost()
    yield host
    host.close()


def balanced_feeds(host: FeedHost) -> dict[str, FeedSpec]:
    """The corpus feeds served by ``host``, each URL given a query so that every partition of
    the feeds topic holds some (feed ids come from URLs, and the port is random)."""
    specs: dict[str, FeedSpec] = {}
    for number, name in enumerate(FEED_FILES):
        path = f"/{name}"
        host.bodies[path] = (NEWS_FEEDS / name).read_bytes()
        want = number % PARTITIONS
        spec = next(
            s
            for s in (FeedSpec(url=f"{host.base}{path}?copy={n}") for n in range(1000))
            if feed_partition(s.id, PARTITIONS) == want
        )
        specs[path] = spec
    return specs


def with_new_item(body: bytes, link: str) -> bytes:
    """``body`` (RSS 2.0) with one more item, first in the channel."""
    item = (
        f"<item><title>Breaking {link}</title><link>{link}</link>"
        f"<description>A new report at {link}, with enough words to stand.</description></item>"
    ).encode()
    match = re.search(rb"<item[ >]", body)
    assert match is not None
    return body[: match.start()] + item + body[match.start() :]


def entry_ids(spec: FeedSpec, body: bytes) -> set[str]:
    return {a.id for a in parse_feed(body, feed_url=spec.url, feed_id=spec.id).articles}


def published(settings: Settings) -> Counter[str]:
    """How many times each article id is on the articles topic."""
    return Counter(key for key, _v in read_partitions(settings, settings.kafka_topic, None, 30))


def producer_env(settings: Settings, data_dir: Path, agent: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
    env.update(
        {
            "NEWSSTREAM_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
            "NEWSSTREAM_KAFKA_TOPIC": settings.kafka_topic,
            "NEWSSTREAM_KAFKA_STATUS_TOPIC": settings.kafka_status_topic,
            "NEWSSTREAM_KAFKA_PARTITIONS": str(PARTITIONS),
            "NEWSSTREAM_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
            "NEWSSTREAM_KAFKA_MAX_POLL_INTERVAL_MS": str(settings.kafka_max_poll_interval_ms),
            "NEWSSTREAM_FEEDS_FILE": str(settings.feeds_file),
            "NEWSSTREAM_FETCH_ALLOW_NETWORKS": '["127.0.0.1/32"]',
            "NEWSSTREAM_FETCH_USER_AGENT": agent,
            "NEWSSTREAM_POLL_INTERVAL_S": "1",
            "NEWSSTREAM_POLL_INTERVAL_MIN_S": "1",
            "NEWSSTREAM_POLL_INTERVAL_MAX_S": "2",
            "NEWSSTREAM_PARSE_WORKERS": "1",
            "NEWSSTREAM_DATA_DIR": str(data_dir),
            "NEWSSTREAM_LOG_FILE": str(data_dir / "producer.log"),
        }
    )
    return env


def test_a_killed_producers_feeds_move_to_the_survivor_with_their_state(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, feed_host: FeedHost
) -> None:
    specs = balanced_feeds(feed_host)
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(feeds_to_toml(list(specs.values())), encoding="utf-8")
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=f"{unique_name}.articles",
        kafka_status_topic=f"{unique_name}.status",
        kafka_partitions=PARTITIONS,
        kafka_session_timeout_ms=6_000,
        kafka_max_poll_interval_ms=10_000,
        feeds_file=feeds_file,
    )
    expected: Counter[str] = Counter()
    for path, spec in specs.items():
        expected.update(entry_ids(spec, feed_host.bodies[path]))
    assert max(expected.values()) == 1, "the feeds share no entry (each id has one owner)"
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(agent: str) -> None:
        data_dir = tmp_path / agent
        data_dir.mkdir()
        processes[agent] = subprocess.Popen(
            [sys.executable, "-m", "newsstream", "produce"],
            env=producer_env(settings, data_dir, agent),
            stdout=(data_dir / "out.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def polled_by(agent: str, since: float = 0.0) -> Callable[[], set[str]]:
        return lambda: {f.path for f in feed_host.fetched(agent, since)}

    try:
        start("producer-a")
        wait_until(lambda: polled_by("producer-a")() == set(specs), 90, "A polling every feed")
        wait_until(lambda: set(published(settings)) >= set(expected), 60, "the first entries")
        joined = time.time()
        start("producer-b")
        wait_until(lambda: bool(polled_by("producer-b")()), 90, "B taking over some feeds")
        # Let the rebalance settle: B's feeds are the ones it polled, and A stopped polling them.
        time.sleep(3)
        settled = time.time()
        time.sleep(4)  # every owned feed is polled at least once in 4 s (intervals of 1-2 s)
        b_paths = polled_by("producer-b", joined)()
        a_paths = polled_by("producer-a", settled)()
        assert polled_by("producer-b", settled)() == b_paths
        assert b_paths and a_paths, "each producer owns some feeds"
        assert not (a_paths & b_paths), "a feed is polled by one producer at a time"
        assert a_paths | b_paths == set(specs)

        # B's feeds change while B owns them: only B knows the new entries and validators.
        changed_at = time.time()
        for path in b_paths:
            with feed_host.lock:
                body = with_new_item(feed_host.bodies[path], f"https://news.example{path}/1")
                feed_host.bodies[path] = body
            expected.update(entry_ids(specs[path], body) - set(expected))

        def b_saw_its_changes() -> bool:
            # A 304 after the change means B fetched the new document and kept its validator.
            fetches = feed_host.fetched("producer-b", changed_at)
            return all(any(f.path == p and f.status == 304 for f in fetches) for p in b_paths)

        wait_until(
            lambda: b_saw_its_changes() and set(published(settings)) >= set(expected),
            60,
            "B publishing the changes and polling them again (304)",
        )
        time.sleep(1)  # B's last state records are acknowledged (they follow each poll)

        processes["producer-b"].send_signal(signal.SIGKILL)
        processes["producer-b"].wait(10)
        killed = time.time()
        wait_until(
            lambda: polled_by("producer-a", killed)() >= b_paths,
            120,
            "A polling the dead producer's feeds",
        )
        first = {}
        for fetch in feed_host.fetched("producer-a", killed):
            first.setdefault(fetch.path, fetch)
        failover_s = max(first[p].at for p in b_paths) - killed
        print(f"dead producer's feeds polled again after {failover_s:.1f} s")
        for path in b_paths:
            assert first[path].if_none_match == feed_host.etag(path), path
            assert first[path].status == 304, f"{path}: the validator B got was carried over"

        # A change after the failover is published by A, once.
        moved_at = time.time()
        for path in b_paths:
            with feed_host.lock:
                body = with_new_item(feed_host.bodies[path], f"https://news.example{path}/2")
                feed_host.bodies[path] = body
            expected.update(entry_ids(specs[path], body) - set(expected))
        wait_until(
            lambda: (
                set(published(settings)) >= set(expected)
                and polled_by("producer-a", moved_at)() >= b_paths
            ),
            60,
            "A publishing the change of a feed it took over",
        )
        counts = published(settings)
        assert set(counts) == set(expected), "no entry lost, nothing unexpected"
        twice = {aid: n for aid, n in counts.items() if n > 1}
        assert not twice, f"published more than once: {twice}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                stop_process(process, grace_s=15)
