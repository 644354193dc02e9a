"""The Dockerfile: installs the pyproject package list (and the CPU torch) and no other, copies
every package pyproject builds, runs offline as a non-root user. (Its torch extraction runs in
tests/integration/test_dockerfile_steps.py, its build context in test_docker_context.py.)
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from deploy_files import (
    TORCH_CPU_INDEX,
    dockerfile,
    dockerfile_env,
    pip_installs,
    pyproject,
)

# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_installs_the_pyproject_package_list_and_no_other() -> None:
    installs = pip_installs()
    assert len(installs) == 2, f"expected `pip install` of torch and of `.`, found {installs}"
    torch_args, package_args = installs
    # 1. torch, CPU build, with the requirement read from pyproject.toml (not hand-written), held
    #    to the pinned versions
    assert torch_args[:4] == ["-c", "constraints.txt", "--extra-index-url", TORCH_CPU_INDEX]
    assert torch_args[4] == "-r" and len(torch_args) == 6, torch_args
    # 2. the package itself, no extras (the `local` extra stays out of images), no other names
    assert package_args == ["-c", "constraints.txt", "."], (
        f"install the package from pyproject.toml only, pinned: {package_args}"
    )


def test_dockerfile_copies_every_package_pyproject_builds() -> None:
    copied = set()
    for inst in dockerfile():
        if inst.keyword == "COPY" and "--from" not in inst.args:
            copied |= {Path(src).as_posix().rstrip("/") for src in shlex.split(inst.args)[:-1]}
    config = pyproject()
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*").rstrip(".") for p in patterns}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert {"pyproject.toml", "constraints.txt", config["project"]["readme"]} <= copied


def test_dockerfile_runs_newsstream_offline_as_a_non_root_user() -> None:
    instructions = dockerfile()
    bases = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    assert bases and all(b == "python:3.11-slim" for b in bases), bases
    final = max(i.stage for i in instructions)
    users = [i.args for i in instructions if i.keyword == "USER" and i.stage == final]
    assert users and users[-1] not in ("root", "0"), "containers must not run as root"
    entrypoint = [i.args for i in instructions if i.keyword == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["newsstream"]
    env = dockerfile_env()
    assert env.get("HF_HUB_OFFLINE") == "1", "the baked model must load without a model hub"
    assert env.get("NEWSSTREAM_API_HOST") == "0.0.0.0"
