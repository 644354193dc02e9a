"""The producer against the real local broker: conditional GET, no republishing, delivery safety.

- A 304 costs no parse and no publish; ETag and Last-Modified are echoed byte for byte.
- Entries already delivered (same id and content) are not published again.
- A broker outage (Tansu stopped with SIGSTOP) leaves the feed's state where it was; when the
  broker continues, the next poll delivers every entry.
- kill -9 of the producer after it produced but before the delivery reports: after a restart
  every entry is in Kafka (duplicates allowed, loss not).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from core.settings import Settings
from newsstream.stack.launchers import free_port, tansu_command
from producers.feeds import FeedSpec, feeds_to_toml
from producers.parser import ParsedFeed, parse_feed
from producers.scheduler import InProcessParser, Scheduler
from producers.service import build_scheduler, run_producer
from producers.state import ProducerState

from conftest import LocalServer
from probes import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ETAG = 'W/"caf\xe9 v1"'

#: `run_producer(once=True)` with the real Kafka producer, which also appends "produced" to
#: the file argv[1] each time it accepts a message and "reported" at each delivery report, so
#: the test can see the moment between the two instead of sleeping through it.
OBSERVED_PRODUCER = """
import sys
import confluent_kafka
import producers.publisher
from core.settings import load_settings
from producers.service import run_producer

events = open(sys.argv[1], "a", buffering=1)

class ObservedProducer(confluent_kafka.Producer):
    def produce(self, *args, on_delivery=None, **kwargs):
        def report(err, msg):
            events.write("reported\\n")
            if on_delivery is not None:
                on_delivery(err, msg)
        super().produce(*args, on_delivery=report, **kwargs)
        events.write("produced\\n")

producers.publisher.Producer = ObservedProducer
run_producer(load_settings(), once=True)
"""
LAST_MODIFIED = "Tue, 17 Feb 2026 10:00:00 GMT"


def feed_body(items: range, tag: str = "") -> bytes:
    entries = "".join(
        f"<item><title>Story {i}{tag}</title><link>https://news.example/{i}</link>"
        f"<description>Text of story {i}{tag}.</description></item>"
        for i in items
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>T</title>"
        f"<link>https://news.example/</link>{entries}</channel></rss>"
    ).encode()


class FeedServer:
    """Serves one feed with validators; records each request's headers; can hold answers."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.etag = ETAG
        self.requests: list[dict[str, str]] = []
        self.release = threading.Event()
        self.release.set()
        self.asked = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.requests.append({k: v for k, v in self.headers.raw_items()})
                owner.asked.set()
                owner.release.wait(60)
                if self.headers.get("If-None-Match") == owner.etag:
                    self.send_response(304)
                    self.send_header("ETag", owner.etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("ETag", owner.etag)
                self.send_header("Last-Modified", LAST_MODIFIED)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.spec = FeedSpec(url=f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.xml")

    def expected_ids(self) -> set[str]:
        parsed = parse_feed(self.body, feed_url=self.spec.url, feed_id=self.spec.id)
        return {a.id for a in parsed.articles}

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer(feed_body(range(10)))
    yield server
    server.close()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalServer]:
    """A Tansu broker for this test only (it gets stopped and continued)."""
    port = free_port()
    server = LocalServer(tansu_command(port), port, tmp_path / "broker.log")
    server.start(30)
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def topic_keys(settings: Settings, timeout_s: float = 20.0) -> list[str]:
    """Every key in the articles topic (read from the beginning, no group join)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "probe",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = (
            consumer.list_topics(settings.kafka_topic, timeout=10)
            .topics[settings.kafka_topic]
            .partitions
        )
        consumer.assign([TopicPartition(settings.kafka_topic, p, 0) for p in partitions])
        keys: list[str] = []
        idle_until = time.monotonic() + 3.0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < min(idle_until, deadline):
            message = consumer.poll(0.5)
            if message is None or message.error() or message.key() is None:
                continue
            keys.append(message.key().decode())
            idle_until = time.monotonic() + 3.0
        return keys
    finally:
        consumer.close()


class CountingParser(InProcessParser):
    def __init__(self) -> None:
        self.calls = 0

    def parse(self, body: bytes, **kwargs: Any) -> ParsedFeed:
        self.calls += 1
        return super().parse(body, **kwargs)


def scheduler_for(
    settings: Settings, spec: FeedSpec
) -> tuple[Scheduler, CountingParser, Callable[[], None]]:
    scheduler, publisher, fetcher, state = build_scheduler(settings, [spec])
    scheduler.close()  # replaced below by a counting in-process parser
    parser = CountingParser()
    counted = Scheduler(
        [spec],
        fetcher=fetcher,
        publisher=publisher,
        state=state,
        parser=parser,
        publish_timeout_s=settings.publish_timeout_s,
    )

    def close() -> None:
        publisher.close()
        fetcher.close()
        state.close()

    return counted, parser, close


def test_conditional_get_and_no_republishing(
    make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = make_settings()
    scheduler, parser, close = scheduler_for(settings, feed_server.spec)
    try:
        (first,) = scheduler.poll_all()
        assert (first.result, first.published) == ("ok", 10)
        assert "If-None-Match" not in feed_server.requests[0]

        (second,) = scheduler.poll_all()
        assert second.result == "not_modified"
        sent = feed_server.requests[1]
        assert sent["If-None-Match"] == ETAG and sent["If-Modified-Since"] == LAST_MODIFIED
        assert parser.calls == 1  # the 304 was not parsed
        assert sorted(topic_keys(settings)) == sorted(feed_server.expected_ids())

        # The feed changes: one entry new, one entry edited, eight the same.
        feed_server.body = feed_body(range(1, 11)).replace(b"Text of story 5.", b"Edited 5.")
        feed_server.etag = 'W/"v2"'
        (third,) = scheduler.poll_all()
        assert (third.result, third.entries, third.published) == ("ok", 10, 2)
        assert len(topic_keys(settings)) == 12
    finally:
        close()


def test_broker_outage_holds_state_then_delivers_everything(
    make_settings: Callable[..., Settings], feed_server: FeedServer, own_broker: LocalServer
) -> None:
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{own_broker.port}", publish_timeout_s=4.0)
    scheduler, _parser, close = scheduler_for(settings, feed_server.spec)
    assert own_broker.process is not None
    try:
        os.kill(own_broker.process.pid, signal.SIGSTOP)
        (report,) = scheduler.poll_all()
        assert report.result == "publish_incomplete" and report.published == 0
        assert scheduler.kafka_blocked
        state = ProducerState(settings.data_dir / "producer.sqlite3")
        held = state.feed(feed_server.spec.id, feed_server.spec.url)
        assert held.etag is None and held.last_modified is None
        assert (
            state.unseen((i, "x") for i in feed_server.expected_ids()) == feed_server.expected_ids()
        )

        os.kill(own_broker.process.pid, signal.SIGCONT)
        (again,) = scheduler.poll_all()
        assert again.result == "ok"
        assert set(topic_keys(settings)) == feed_server.expected_ids()
        assert state.feed(feed_server.spec.id, feed_server.spec.url).etag == ETAG
        state.close()
    finally:
        close()


def test_kill_9_before_delivery_reports_loses_nothing(
    make_settings: Callable[..., Settings],
    feed_server: FeedServer,
    own_broker: LocalServer,
    tmp_path: Path,
) -> None:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(feeds_to_toml([feed_server.spec]))
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{own_broker.port}", feeds_file=feeds_file)
    env = {
        **os.environ,
        "NEWSSTREAM_DATA_DIR": str(settings.data_dir),
        "NEWSSTREAM_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "NEWSSTREAM_KAFKA_TOPIC": settings.kafka_topic,
        "NEWSSTREAM_KAFKA_DLQ_TOPIC": settings.kafka_dlq_topic,
        "NEWSSTREAM_KAFKA_SEARCH_EVENTS_TOPIC": settings.kafka_search_events_topic,
        "NEWSSTREAM_FEEDS_FILE": str(feeds_file),
        "NEWSSTREAM_FETCH_ALLOW_NETWORKS": '["127.0.0.1/32"]',
    }
    assert own_broker.process is not None
    feed_server.release.clear()
    events = tmp_path / "producer-events.txt"
    producer = subprocess.Popen(
        [sys.executable, "-c", OBSERVED_PRODUCER, str(events)], env=env, cwd=ROOT
    )
    expected = feed_server.expected_ids()

    def lines(word: str) -> int:
        return events.read_text().split().count(word) if events.exists() else 0

    try:
        assert feed_server.asked.wait(60), "the producer never fetched the feed"
        os.kill(own_broker.process.pid, signal.SIGSTOP)
        feed_server.release.set()
        # The state under test: every entry handed to Kafka, no delivery report yet.
        wait_until(
            lambda: lines("produced") >= len(expected) or producer.poll() is not None,
            60,
            "the producer to produce every entry",
            every_s=0.2,
        )
        assert lines("produced") == len(expected), events.read_text()
        assert lines("reported") == 0, "a delivery report came from a stopped broker"
        assert producer.poll() is None, "the producer finished without delivery reports"
        producer.send_signal(signal.SIGKILL)
        producer.wait(10)
    finally:
        os.kill(own_broker.process.pid, signal.SIGCONT)
        if producer.poll() is None:
            producer.kill()
    state = ProducerState(settings.data_dir / "producer.sqlite3")
    assert state.feed(feed_server.spec.id, feed_server.spec.url).etag is None
    state.close()

    reports = run_producer(settings, once=True)
    assert [r.result for r in reports] == ["ok"]
    keys = topic_keys(settings)
    assert set(keys) == feed_server.expected_ids()  # every entry, maybe some twice
