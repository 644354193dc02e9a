"""What the command modules share: the evaluation data check and the printed article time."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from newsstream.cli.api_options import minute
from newsstream.cli.eval_group import require_eval_data


def test_missing_evaluation_data_exits_2_naming_the_first_missing_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "eval" / "bbc-news").mkdir(parents=True)
    require_eval_data(tmp_path, "eval/bbc-news")  # present: returns
    with pytest.raises(typer.Exit) as exit_:
        require_eval_data(tmp_path, "eval/bbc-news", "eval/msrp/train.jsonl", "feeds/x.tsv")
    assert exit_.value.exit_code == 2
    assert f"no evaluation data at {tmp_path} (expected eval/msrp/train.jsonl)" in " ".join(
        capsys.readouterr().err.split()
    )


def test_an_article_time_prints_to_the_minute_in_utc_and_blank_when_unknown() -> None:
    assert minute(1_800_000_000) == "2027-01-15 08:00"
    assert minute(1_800_000_059.9) == "2027-01-15 08:00"
    assert minute(0) == minute(None) == ""
