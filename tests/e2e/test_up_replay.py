"""The whole stack as a user runs it: `newsstream up --replay DIR` in a subprocess.

Waits for the API line, readiness and a first search result; then SIGTERM must stop every
child process within 10 s and leave none behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from newsstream.proctree import alive, tree_pids

from probes import wait_until
from up_process import start_up, up_env, wait_for_api

pytestmark = pytest.mark.e2e


def test_up_replay_serves_search_and_stops_cleanly(news_feeds_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    up, log_path = start_up(news_feeds_dir, tmp_path)
    try:
        api = wait_for_api(log_path)
        assert httpx.get(f"{api}/healthz", timeout=5).json() == {"status": "ok"}

        def has_results() -> bool:
            r = httpx.get(f"{api}/search", params={"q": "election results", "k": 5}, timeout=30)
            return r.status_code == 200 and len(r.json()["results"]) == 5

        wait_until(has_results, 240, "a first search result", every_s=2)
        first_result_s = time.monotonic() - started
        print(f"time from `up` to the first search result: {first_result_s:.1f} s")

        metrics = httpx.get(f"{api}/metrics", timeout=5)
        assert metrics.status_code == 200 and "newsstream_search_seconds" in metrics.text

        cli = subprocess.run(
            [sys.executable, "-m", "newsstream", "search", "election results", "--k", "3"],
            capture_output=True,
            text=True,
            env=up_env(tmp_path),
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert "election results" in cli.stdout and "score" in cli.stdout

        children = tree_pids(up.pid) - {up.pid}
        assert len(children) >= 5, f"expected broker, milvus, api, worker, producer: {children}"
    finally:
        up.send_signal(signal.SIGTERM)
        stop_started = time.monotonic()
        try:
            up.wait(15)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    stop_s = time.monotonic() - stop_started
    assert stop_s < 10, f"stopping took {stop_s:.1f} s"
    assert up.returncode == 0, log_path.read_text()[-3000:]
    time.sleep(0.5)
    left = [pid for pid in children if alive(pid)]
    assert not left, f"processes left behind after SIGTERM: {left}"
