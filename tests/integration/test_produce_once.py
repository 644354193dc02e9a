"""`newsstream produce --once` through the CLI: its exit code says whether any feed worked.

Feeds are served on 127.0.0.1 (allowed for the fetcher by the test settings); the broken ones
answer 404 or 500, or point at a port where nothing listens.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from newsstream.stack.launchers import free_port
from producers.feeds import FeedSpec, feeds_to_toml

from probes import read_topic
from worker_procs import ROOT, settings_env

pytestmark = pytest.mark.integration

GOOD = (
    "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>T</title>"
    "<link>https://news.example/</link>"
    + "".join(
        f"<item><title>Story {i}</title><link>https://news.example/{i}</link>"
        f"<description>Text of story {i}.</description></item>"
        for i in range(3)
    )
    + "</channel></rss>"
).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/good.xml":
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD)
            return
        self.send_response(500 if self.path == "/broken.xml" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture
def feed_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _produce_once(
    settings: Settings, urls: list[str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(feeds_to_toml([FeedSpec(url=u) for u in urls]), encoding="utf-8")
    env = settings_env(settings, NEWSSTREAM_FEEDS_FILE=str(feeds_file), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "newsstream", "produce", "--once"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_feed_failing_exits_non_zero_and_says_so(
    make_settings: Any, feed_server: str, tmp_path: Path
) -> None:
    settings = make_settings()
    dead = f"http://127.0.0.1:{free_port()}/nothing-listens.xml"
    urls = [f"{feed_server}/missing.xml", f"{feed_server}/broken.xml", dead]
    result = _produce_once(settings, urls, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "every feed failed (3)" in result.stderr
    for url in urls:
        assert url in result.stderr, f"{url} not reported as failed"


def test_a_partial_failure_exits_zero_and_reports_the_failed_feeds(
    make_settings: Any, feed_server: str, tmp_path: Path
) -> None:
    settings = make_settings()
    good, missing = f"{feed_server}/good.xml", f"{feed_server}/missing.xml"
    result = _produce_once(settings, [good, missing], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"failed: {missing}" in result.stderr
    assert good not in result.stderr
    assert "1 of 2 feeds failed" in result.stderr
    assert len(read_topic(settings, settings.kafka_topic)) == 3  # the good feed's entries

    again = _produce_once(settings, [good], tmp_path)  # nothing new, nothing failed
    assert again.returncode == 0, again.stdout + again.stderr
    assert "failed" not in again.stderr


def test_no_feed_configured_is_a_configuration_error(make_settings: Any, tmp_path: Path) -> None:
    result = _produce_once(make_settings(), [], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no feed is configured" in result.stderr
