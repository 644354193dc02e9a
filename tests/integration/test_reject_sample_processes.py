"""Several worker processes of one host write one reject sample at once (SQLite, WAL).

Kept apart from the worker test so that the spawned writers import only the sample module.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from consumers.rejects import RejectSample

pytestmark = pytest.mark.integration


def _write_rejects(path: str, writer: int, start: Any) -> None:
    start.wait()
    with RejectSample(Path(path), per_reason=5) as sample:
        for n in range(200):
            sample.add(
                reason=("spam", "empty")[n % 2],
                article_id=f"{writer:04x}{n:028x}",
                title=f"w{writer} n{n}",
                url="",
                text="x" * 600,
            )


def test_several_processes_write_one_sample_at_once(tmp_path: Path) -> None:
    """Worker processes of one host share the file: every write lands, the bound holds."""
    context = multiprocessing.get_context("spawn")
    for trial in range(2):
        path = str(tmp_path / f"trial{trial}" / "rejects.sqlite3")
        start = context.Event()
        writers = [context.Process(target=_write_rejects, args=(path, w, start)) for w in range(6)]
        for process in writers:
            process.start()
        start.set()  # the processes create the file and write together
        for process in writers:
            process.join(120)
        assert [p.exitcode for p in writers] == [0] * 6
        with RejectSample(Path(path), per_reason=5) as sample:
            assert sample.counts() == {"spam": 5, "empty": 5}
