"""Every command fails the same way: one error line on stderr, exit code 2 for bad configuration
or usage, 1 for anything else (the exit codes the README documents)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from core.errors import ConfigurationError, NewsstreamError
from newsstream.cli.app import app
from newsstream.cli.common import fail


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # nothing a command writes lands in the checkout
    return {"NEWSSTREAM_DATA_DIR": str(tmp_path / "data")}


def test_a_broken_feeds_file_is_a_configuration_error_for_feeds(
    tmp_path: Path, env: dict[str, str]
) -> None:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text("[[feed]\nurl = ", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["feeds", "list"], env={**env, "NEWSSTREAM_FEEDS_FILE": str(feeds_file)}
    )
    assert result.exit_code == 2, result.output
    assert "not valid TOML" in result.output


def test_invalid_settings_are_a_clear_exit_2_for_bench_too(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "ingest", "--out", str(tmp_path / "ingest.json")],
        env={**env, "NEWSSTREAM_API_PORT": "not-a-port"},
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "NEWSSTREAM_API_PORT" in result.output
    assert not (tmp_path / "ingest.json").exists()


@pytest.mark.parametrize(
    ("error", "code"), [(ConfigurationError("expected x"), 2), (NewsstreamError("broken"), 1)]
)
def test_fail_maps_configuration_errors_to_2_and_the_rest_to_1(
    error: Exception, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_ = fail(error)
    assert isinstance(exit_, typer.Exit)
    assert exit_.exit_code == code
    assert str(error) in capsys.readouterr().err


def test_fail_prints_the_message_as_text_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    message = "the server said [bold]no[/bold]: " + "x" * 300
    fail(NewsstreamError(message))
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
