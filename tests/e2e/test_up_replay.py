"""The whole stack as a user runs it: `newsstream up --replay DIR` in a subprocess.

Waits for the API line, readiness and a known replayed article to be found by the API and by
`newsstream search`; then SIGTERM must stop `up` and leave no child process behind. How long
that takes is a figure of `newsstream bench stack`, not an assertion here.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from newsstream.proctree import alive, tree_pids
from producers.parser import parse_feed

from probes import wait_until
from up_process import start_up, up_env, wait_for_api

pytestmark = pytest.mark.e2e

#: The NPR world feed of the shared data: the article searched for by its headline.
KNOWN_FEED = "7be307059415227d.xml"


def _replayed_urls(feeds_dir: Path) -> set[str]:
    """The URL of every entry of the replayed feeds."""
    urls: set[str] = set()
    for path in sorted(feeds_dir.glob("*.xml")):
        parsed = parse_feed(path.read_bytes(), feed_url=f"http://replay/{path.name}", feed_id="r")
        urls.update(a.url for a in parsed.articles if a.url)
    return urls


def _known_article(feeds_dir: Path) -> tuple[str, str]:
    """(headline, url) of the first entry of :data:`KNOWN_FEED`."""
    body = (feeds_dir / KNOWN_FEED).read_bytes()
    first = parse_feed(body, feed_url="http://replay/known.xml", feed_id="r").articles[0]
    assert first.title and first.url, "the known feed's first entry has a headline and a link"
    return first.title, first.url


def _cli_rows(stdout: str) -> list[str]:
    """The result rows of the `newsstream search` table (one line each: no folding)."""
    return [line for line in stdout.splitlines() if re.match(r"^│\s*\d+\s*│", line)]


def test_up_replay_serves_search_and_stops_cleanly(news_feeds_dir: Path, tmp_path: Path) -> None:
    headline, url = _known_article(news_feeds_dir)
    replayed = _replayed_urls(news_feeds_dir)
    started = time.monotonic()
    up, log_path = start_up(news_feeds_dir, tmp_path)
    try:
        api = wait_for_api(log_path)
        assert httpx.get(f"{api}/healthz", timeout=5).json() == {"status": "ok"}

        def finds_known_article() -> bool:
            r = httpx.get(f"{api}/search", params={"q": headline, "k": 3}, timeout=30)
            return r.status_code == 200 and url in [hit["url"] for hit in r.json()["results"]]

        wait_until(finds_known_article, 240, f"the API to find {url!r}", every_s=2)
        print(f"time from `up` to the known article found: {time.monotonic() - started:.1f} s")

        metrics = httpx.get(f"{api}/metrics", timeout=5)
        assert metrics.status_code == 200 and "newsstream_search_seconds" in metrics.text

        cli = subprocess.run(
            [sys.executable, "-m", "newsstream", "search", headline, "--k", "3"],
            capture_output=True,
            text=True,
            env={**up_env(tmp_path), "COLUMNS": "1000"},
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        rows = _cli_rows(cli.stdout)
        assert len(rows) == 3, cli.stdout
        assert any(url in row for row in rows), cli.stdout
        for row in rows:
            assert any(u in row for u in replayed), f"a row that is no replayed article: {row}"

        children = tree_pids(up.pid) - {up.pid}
        assert len(children) >= 5, f"expected broker, milvus, api, worker, producer: {children}"
    finally:
        up.send_signal(signal.SIGTERM)
        stop_started = time.monotonic()
        try:
            up.wait(60)  # bounds the test; the time it takes is `newsstream bench stack`'s
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    print(f"SIGTERM to `up` exit: {time.monotonic() - stop_started:.1f} s")
    assert up.returncode == 0, log_path.read_text()[-3000:]
    wait_until(
        lambda: not any(alive(pid) for pid in children),
        10,
        "every child of `up` to exit after SIGTERM (none may be left behind)",
    )
