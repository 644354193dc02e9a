"""The README's offline walk-through, run as a user runs it: `newsstream up --replay
examples/feeds` in a subprocess, then the commands the README gives, read from the README itself.

What it proves: the walk-through's commands work on a fresh data dir with only what the
repository holds; the API and `newsstream search` find a known example article by its headline;
the rewrites of one event collapse into one story with the other outlet "also reported by";
`stats` adds up (26 consumed = 23 indexed + 1 duplicate + 2 rejected) and `rejects` lists the two
rejected stubs, both finding the running `up` by themselves; the status line ends on the final
state; SIGTERM stops `up` and leaves no child process behind. How long the stop takes is a
figure of `newsstream bench stack`, not an assertion here.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from newsstream.stack.proctree import alive, tree_pids

from probes import wait_until
from up_process import start_up, up_env, wait_for_api

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples" / "feeds"
NEWSSTREAM = ".venv/bin/newsstream"


def _walkthrough_blocks() -> tuple[list[str], list[str]]:
    """The command lines of the two shell blocks of the README's "Try it offline" section."""
    section = README.read_text().split("## Try it offline", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the walk-through has a block to start `up` and one to use it"

    def commands(block: str) -> list[str]:
        lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
        return [line for line in lines if line]

    return commands(blocks[0]), commands(blocks[1])


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsstream", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "1000"},
        timeout=120,
    )


def _cli_rows(stdout: str) -> list[str]:
    """The result rows of the `newsstream search` table (one line each at 1,000 columns)."""
    return [line for line in stdout.splitlines() if re.match(r"^│\s*\d+\s*│", line)]


def test_the_readme_walkthrough_works_and_up_stops_cleanly(
    tmp_path: Path, model_cache_dir: Path
) -> None:
    start, use = _walkthrough_blocks()
    assert start == [f"{NEWSSTREAM} up --replay examples/feeds"], start
    up_args = shlex.split(start[0])[1:]
    feeds_dir = ROOT / up_args[up_args.index("--replay") + 1]
    assert feeds_dir == EXAMPLES

    started = time.monotonic()
    up, log_path = start_up(feeds_dir, tmp_path, model_cache_dir)
    env = up_env(tmp_path, model_cache_dir)
    try:
        api = wait_for_api(log_path)
        assert httpx.get(f"{api}/healthz", timeout=5).json() == {"status": "ok"}
        # `up` says what `auto` chose on this machine and why (cached here by the session).
        chosen = re.findall(
            r"^embedding backend (\S+) \((\w+)\): (.+)$", log_path.read_text(), re.M
        )
        assert chosen and chosen[0][1] in {"cached", "measured", "rule"}, chosen

        def all_consumed() -> bool:
            total = httpx.get(f"{api}/stats", timeout=10).json().get("total") or {}
            return total.get("consumed") == 26

        wait_until(all_consumed, 300, "the 26 example items consumed", every_s=2)
        print(f"time from `up` to the examples consumed: {time.monotonic() - started:.1f} s")

        for line in use:
            words = shlex.split(line)
            if words[0] == "curl":
                # the README's example port stands for the one `up` printed
                url = urlsplit(words[1])
                answer = httpx.get(f"{api}{url.path}?{url.query}", timeout=30)
                assert answer.status_code == 200, answer.text
                results = answer.json()["results"]
                assert results, f"no results for {line}"
                if "storm" in url.query:
                    storm = {"storm-warning-coast", "gale-warning"}
                    top = results[0]
                    assert top["url"].rsplit("/", 1)[1] in storm, top
                    others = [a["url"].rsplit("/", 1)[1] for a in top["also_reported_by"]]
                    assert others and set(others) <= storm, top
                continue
            assert words[0] == NEWSSTREAM, line
            done = _cli(words[1:], env)
            assert done.returncode == 0, f"{line}: {done.stderr}"
            command = words[1]
            if command == "search":
                rows = _cli_rows(done.stdout)
                assert rows, done.stdout
                assert "ferry-strike-ends" in rows[0] or "ferry-workers-back" in rows[0], rows
            elif command == "stats":
                stats = json.loads(_cli(["stats", "--json"], env).stdout)
                assert stats["total"]["consumed"] == 26, stats
                assert stats["total"]["indexed"] == 23, stats
                assert stats["total"]["duplicate"] == 1, stats
                assert stats["total"]["rejected"] == 2, stats
                assert stats["total"]["dlq"] == 0, stats
            elif command == "rejects":
                assert "Watch: highlights" in done.stdout and "More soon." in done.stdout
            else:
                pytest.fail(f"the walk-through runs a command this test does not check: {line}")

        # the API and the CLI find an article by its headline, and the rewrite by another outlet
        # is the story's "also reported by"
        headline = "Port Alden ferries to sail again as strike is called off"
        hits = httpx.get(f"{api}/search", params={"q": headline, "k": 3}, timeout=30).json()
        top = hits["results"][0]
        pair = {
            "https://valley-wire.example/news/ferry-workers-back",
            "https://harbor-gazette.example/news/ferry-strike-ends",
        }
        assert {top["url"], *(a["url"] for a in top["also_reported_by"])} == pair, top
        cli = _cli(["search", headline, "--k", "3"], env)
        assert cli.returncode == 0, cli.stderr
        rows = _cli_rows(cli.stdout)
        assert len(rows) == 3 and top["url"] in rows[0], cli.stdout

        docs = httpx.get(f"{api}/docs", timeout=10)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()

        children = tree_pids(up.pid) - {up.pid}
        assert len(children) >= 5, f"expected broker, milvus, api, worker, producer: {children}"

        def status_line_settled() -> bool:
            lines = re.findall(r"^status: .*$", log_path.read_text(), re.M)
            return bool(lines) and "consumed 26 " in lines[-1] and "published 26 " in lines[-1]

        wait_until(status_line_settled, 30, "the status line to show the final state")
    finally:
        up.send_signal(signal.SIGTERM)
        stop_started = time.monotonic()
        try:
            up.wait(60)  # bounds the test; the time it takes is `newsstream bench stack`'s
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    print(f"SIGTERM to `up` exit: {time.monotonic() - stop_started:.1f} s")
    log = log_path.read_text()
    assert up.returncode == 0, log[-3000:]
    final = re.search(r"^final status: .*$", log, re.M)
    assert final and "consumed 26 " in final.group(0), log[-2000:]
    assert "mvccTs" not in log, "a start must not print pymilvus' timestamp warnings"
    wait_until(
        lambda: not any(alive(pid) for pid in children),
        10,
        "every child of `up` to exit after SIGTERM (none may be left behind)",
    )
