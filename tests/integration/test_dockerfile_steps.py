"""A Dockerfile build step run for real: the command that extracts the torch requirement from
pyproject.toml (a subprocess, so not in the unit layer)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import (
    PYPROJECT,
    dockerfile,
    pip_installs,
    pyproject,
    requirement_name,
    shell_commands,
)

pytestmark = pytest.mark.integration


def test_dockerfile_torch_requirement_is_the_one_in_pyproject(tmp_path: Path) -> None:
    """Run the Dockerfile's own extraction command on our pyproject.toml."""
    (torch_args, _) = pip_installs()
    requirements_file = torch_args[-1]
    producer = None
    for inst in dockerfile():
        if inst.keyword == "RUN" and requirements_file in inst.args:
            producer = inst.args
    assert producer is not None
    argv = next(shell_commands(producer))
    assert argv[:2] == ["python", "-c"] and "pyproject.toml" in argv[2], argv
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    result = subprocess.run(
        [sys.executable, "-c", argv[2]], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    expected = [d for d in pyproject()["project"]["dependencies"] if requirement_name(d) == "torch"]
    assert expected, "pyproject.toml no longer lists torch"
    assert result.stdout.split() == expected
