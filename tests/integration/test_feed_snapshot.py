"""`newsstream feeds snapshot DIR` saves what the feeds serve, for a later `up --replay DIR`.

The feeds are the repository's example feeds served from 127.0.0.1 (the replay server), one
feed that answers 404, and the command runs through typer's CliRunner with its settings in the
environment (a fresh data dir, the feeds file, the loopback allowlist).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsstream.cli.app import app
from newsstream.stack.replay import ReplayServer

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "feeds"


@pytest.fixture
def served_examples() -> Iterator[ReplayServer]:
    server = ReplayServer(EXAMPLES).start()
    yield server
    server.stop()


def _env(tmp_path: Path, urls: list[str], port: int) -> dict[str, str]:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text("".join(f'[[feed]]\nurl = "{u}"\n\n' for u in urls))
    return {
        "NEWSSTREAM_DATA_DIR": str(tmp_path / "data"),
        "NEWSSTREAM_FEEDS_FILE": str(feeds_file),
        "NEWSSTREAM_FETCH_ALLOW_NETWORKS": f'["127.0.0.1:{port}"]',
    }


def test_snapshot_saves_every_feed_byte_for_byte_and_replays(
    served_examples: ReplayServer, tmp_path: Path
) -> None:
    port = int(served_examples.base_url.rsplit(":", 1)[1])
    urls = [spec.url for spec in served_examples.feeds()]
    missing = f"{served_examples.base_url}/no-such-feed.xml"
    out = tmp_path / "snapshot"
    result = CliRunner().invoke(
        app, ["feeds", "snapshot", str(out)], env=_env(tmp_path, [*urls, missing], port)
    )
    assert result.exit_code == 0, result.output
    assert "saved 3 of 4 feeds" in result.output
    assert "no-such-feed.xml" in result.output and "HTTP 404" in result.output
    saved = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    assert len(saved) == 3
    originals = sorted(p.read_bytes() for p in EXAMPLES.iterdir() if p.suffix in (".xml", ".atom"))
    assert sorted(p.read_bytes() for p in saved) == originals
    replay = ReplayServer(out).start()
    try:
        assert len(replay.feeds()) == 3
    finally:
        replay.stop()


def test_snapshot_exits_1_when_no_feed_could_be_saved(
    served_examples: ReplayServer, tmp_path: Path
) -> None:
    port = int(served_examples.base_url.rsplit(":", 1)[1])
    blocked = "http://169.254.169.254/latest/meta-data"  # the SSRF guard refuses it
    missing = f"{served_examples.base_url}/gone.xml"
    result = CliRunner().invoke(
        app,
        ["feeds", "snapshot", str(tmp_path / "out")],
        env=_env(tmp_path, [blocked, missing], port),
    )
    assert result.exit_code == 1, result.output
    assert "saved 0 of 2 feeds" in result.output
    assert not [p for p in (tmp_path / "out").iterdir()]
