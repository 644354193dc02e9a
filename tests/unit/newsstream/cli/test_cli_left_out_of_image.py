"""The container image leaves the benchmarks and evaluations out (.dockerignore): a command that
needs them says so in one line and exits with 2, instead of a traceback."""

from __future__ import annotations

import sys

import pytest

from newsstream.cli import app as cli


@pytest.mark.parametrize(
    ("missing", "argv"),
    [
        ("newsstream.bench", ["bench", "dedup", "--n", "100"]),
        ("newsstream.evals", ["eval", "stories"]),
    ],
)
def test_a_command_whose_package_is_left_out_says_so_and_exits_2(
    missing: str,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # None in sys.modules makes every import of the package fail as if it were not installed.
    for name in [m for m in sys.modules if m == missing or m.startswith(missing + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.setattr(sys, "argv", ["newsstream", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{missing} is not installed here" in err
    assert "source checkout" in err


def test_other_missing_modules_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the packages left out of the image get the message; any other import error is a bug
    and keeps its traceback."""
    for name in [m for m in sys.modules if m.startswith("newsstream.bench")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dedup.index", None)
    monkeypatch.setattr(sys, "argv", ["newsstream", "bench", "dedup", "--n", "100"])
    with pytest.raises(ModuleNotFoundError):
        cli.main()
