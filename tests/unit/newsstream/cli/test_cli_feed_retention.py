"""A feed's retention window from the command line: ``feeds add --retention-days``, ``feeds
update`` (set, back to the global window, unknown feed), shown by ``feeds list`` and exported
in OPML; ``retention sweep`` with no window says retention is off (no Milvus needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsstream.cli.app import app
from producers.registry import FeedRegistry, state_path

URL = "https://a.example/rss"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {"NEWSSTREAM_DATA_DIR": str(tmp_path / "data")}


def _window(tmp_path: Path) -> int | None:
    registry = FeedRegistry(state_path(tmp_path / "data"))
    try:
        return registry.all()[0].retention_days
    finally:
        registry.close()


def test_feed_windows_are_set_changed_and_cleared(tmp_path: Path, env: dict[str, str]) -> None:
    runner = CliRunner()
    added = runner.invoke(app, ["feeds", "add", URL, "--retention-days", "7"], env=env)
    assert added.exit_code == 0, added.output
    assert _window(tmp_path) == 7
    assert (
        runner.invoke(app, ["feeds", "update", URL, "--retention-days", "0"], env=env).exit_code
        == 0
    )
    assert _window(tmp_path) == 0
    listed = runner.invoke(app, ["feeds", "list"], env=env)
    assert "0 d" in listed.output
    exported = runner.invoke(app, ["feeds", "export"], env=env)
    assert 'newsstream:retentionDays="0"' in exported.output
    cleared = runner.invoke(app, ["feeds", "update", URL, "--default-retention"], env=env)
    assert cleared.exit_code == 0 and "global window" in cleared.output
    assert _window(tmp_path) is None
    unknown = runner.invoke(
        app, ["feeds", "update", "https://b.example/rss", "--retention-days", "3"], env=env
    )
    assert unknown.exit_code == 1 and "no such feed" in unknown.output
    both = runner.invoke(
        app, ["feeds", "update", URL, "--retention-days", "3", "--default-retention"], env=env
    )
    assert both.exit_code == 2
    negative = runner.invoke(app, ["feeds", "update", URL, "--retention-days", "-1"], env=env)
    assert negative.exit_code == 2


def test_a_sweep_without_any_window_says_retention_is_off(
    tmp_path: Path, env: dict[str, str]
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["feeds", "add", URL], env=env).exit_code == 0
    result = runner.invoke(
        app,
        ["retention", "sweep", "--dry-run"],
        env={
            **env,
            "NEWSSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "NEWSSTREAM_MILVUS_URI": "http://127.0.0.1:1",
        },
    )
    assert result.exit_code == 0, result.output
    assert "retention is off" in result.output
