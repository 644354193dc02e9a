"""`newsstream up --replay` as a subprocess for e2e tests: start it, find its API, wait ready."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from probes import wait_until


def up_env(tmp_path: Path, model_cache_dir: Path | None = None) -> dict[str, str]:
    """The environment of `up` (and of CLI calls that must find it): a data dir of the test,
    and the session's cache of exported models when given (else `up` exports into its data dir,
    as on a user's first start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
    env["NEWSSTREAM_DATA_DIR"] = str(tmp_path / "data")
    env["NEWSSTREAM_API_PORT"] = "0"
    if model_cache_dir is not None:
        env["NEWSSTREAM_EMBEDDING_CACHE_DIR"] = str(model_cache_dir)
    return env


def start_up(
    feeds_dir: Path, tmp_path: Path, model_cache_dir: Path | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `newsstream up --replay feeds_dir` on a fresh data dir; returns it and its log."""
    env = up_env(tmp_path, model_cache_dir)
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "newsstream", "up", "--replay", str(feeds_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return up, log_path


def wait_for_api(log_path: Path) -> str:
    """The API base URL `up` printed on a line of its own, once /readyz answers 200."""
    api = ""

    def api_line() -> bool:
        nonlocal api
        match = re.search(r"^(http://127\.0\.0\.1:\d+)$", log_path.read_text(), re.M)
        api = match.group(1) if match else ""
        return bool(api)

    wait_until(api_line, 90, "the API base URL line")

    def ready() -> bool:
        try:
            return httpx.get(f"{api}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 180, "/readyz to answer 200")
    return api
