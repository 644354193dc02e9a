"""Feed commands with no broker known (no NEWSSTREAM_KAFKA_BOOTSTRAP, no running `up`): the
registry changes and the command says the change is not recorded in the audit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsstream.cli.app import app
from newsstream.ops.operator_audit import cli_identity
from producers.registry import FeedRegistry, state_path


def test_a_change_without_a_broker_is_made_and_said_to_be_unrecorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"NEWSSTREAM_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(app, ["feeds", "add", "https://a.example/rss"], env=env)
    assert result.exit_code == 0, result.output
    assert "not recorded in the audit" in result.output
    registry = FeedRegistry(state_path(tmp_path / "data"))
    try:
        assert [spec.url for spec in registry.all()] == ["https://a.example/rss"]
    finally:
        registry.close()


def test_the_command_line_names_the_user_who_ran_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "operator-7")
    monkeypatch.setenv("LOGNAME", "operator-7")
    assert cli_identity() == "cli:operator-7"
