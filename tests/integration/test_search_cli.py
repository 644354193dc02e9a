"""`newsstream search` and `newsstream serve` against real servers on 127.0.0.1.

search: the API key (``--api-key`` or ``NEWSSTREAM_API_KEY``) goes out as ``X-API-Key``; a 401,
429 or 503 from the API and a proxy's HTML page each end in one line on stderr and a non-zero
exit code. serve: binding beyond loopback without API keys refuses to start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from core.settings import Settings
from newsstream.cli.app import app as cli
from newsstream.stack.launchers import free_port
from store.client import connect
from store.writer import ArticleWriter

from running import serving
from worker_procs import stored_row

pytestmark = pytest.mark.integration

KEY = "cli-test-key"
TITLE = "Harbour storm floods the old town"


class _ProxyPage(BaseHTTPRequestHandler):
    """What a reverse proxy answers while the API behind it is down."""

    def do_GET(self) -> None:
        page = (
            b"<html><head><title>502 Bad Gateway</title></head>"
            b"<body><center><h1>502 Bad Gateway</h1></center><hr>nginx</body></html>"
        )
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def keyed(make_settings: Any, embedder: Any) -> Settings:
    """Settings of an API that needs keys, over a collection holding one article."""
    settings = make_settings(api_search_events=False, api_read_keys=[SecretStr(KEY)])
    client = connect(settings.milvus_uri or "")
    try:
        writer = ArticleWriter.open(client, settings, embedder.dimension)
        text = f"{TITLE}. Water rose over the quay overnight and shops along it were flooded."
        vector = embedder.embed([text])[0]
        row = stored_row("https://harbour.example/storm", TITLE, text, vector, embedder.model_name)
        assert writer.upsert([row]) == 1
    finally:
        client.close()
    return settings


def _search(base: str, *args: str, env_key: str | None = None) -> Any:
    result = CliRunner().invoke(
        cli,
        ["search", "storm in the harbour", "--api", base, *args],
        env={"NEWSSTREAM_API_KEY": env_key},
    )
    return result


def _one_error_line(result: Any) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


def test_the_key_is_sent_from_the_option_or_the_environment(keyed: Settings, embedder: Any) -> None:
    with serving(keyed, embedder) as base:
        by_option = _search(base, "--api-key", KEY)
        assert by_option.exit_code == 0, by_option.output
        assert "Harbour storm" in by_option.stdout
        by_env = _search(base, "--json", env_key=KEY)
        assert by_env.exit_code == 0, by_env.output
        assert TITLE in by_env.stdout
        line = _one_error_line(_search(base))
        assert "401" in line and "unauthorized" in line and "--api-key" in line
        assert "401" in _one_error_line(_search(base, "--api-key", "wrong"))


def test_a_rate_limited_search_is_one_line(keyed: Settings, embedder: Any) -> None:
    limited = keyed.model_copy(update={"api_rate_limit_per_minute": 1})
    with serving(limited, embedder) as base:
        assert _search(base, "--api-key", KEY).exit_code == 0
        line = _one_error_line(_search(base, "--api-key", KEY))
        assert "429" in line and "rate_limited" in line and "retry in" in line


def test_an_index_outage_is_one_line(make_settings: Any, embedder: Any) -> None:
    away = make_settings(
        milvus_uri=f"http://127.0.0.1:{free_port()}", milvus_timeout_s=1.0, api_search_events=False
    )
    with serving(away, embedder) as base:
        line = _one_error_line(_search(base))
        assert "503" in line and "unavailable" in line and "retry in" in line


def test_a_proxy_html_page_is_one_line() -> None:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyPage)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        line = _one_error_line(_search(f"http://127.0.0.1:{proxy.server_port}"))
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)
    assert "502" in line and "non-JSON" in line and "502 Bad Gateway" in line
    assert "<" not in line


def test_nothing_listening_exits_2() -> None:
    result = _search(f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 2, result.output
    assert "no API answers" in result.stderr


def test_serve_beyond_loopback_without_keys_refuses_to_start(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
    env["NEWSSTREAM_DATA_DIR"] = str(tmp_path / "data")
    argv = [sys.executable, "-m", "newsstream", "serve", "--host", "0.0.0.0", "--port", "0"]
    try:
        refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("`serve --host 0.0.0.0` without keys started serving") from exc
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 2, refused.stderr
    assert "'0.0.0.0'" in message and "NEWSSTREAM_API_READ_KEYS" in message, message
