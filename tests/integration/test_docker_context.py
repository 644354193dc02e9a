""".dockerignore decides what `docker build` sends as the build context. The context is computed
by the Docker SDK for Python that Debian's docker-compose runs on (``docker.utils.build``, the
code `docker-compose build` uses; the .dockerignore is read the way its ``APIClient.build``
reads it), in a subprocess of that interpreter: the venv does not carry the SDK.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_files import DOCKERFILE, DOCKERIGNORE, ROOT, dockerfile, require_binary

pytestmark = pytest.mark.integration

#: Paths that must never be sent: the venv, local state, caches, test and bench artifacts,
#: build output, git's database, secrets, the tests (the image does not run them), and the
#: benchmarks and evaluations (they run from a source checkout).
#: Sources under the copied packages that stay out of the image.
LEFT_OUT = ("newsstream/bench", "newsstream/evals")

MUST_NOT_SEND = [
    "newsstream/bench/ingest.py",
    "newsstream/evals/stories.py",
    "newsstream/evals/story_judgements.csv",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/torch/__init__.py",
    ".newsstream/up.json",
    ".newsstream/milvus/data.db",
    ".git/HEAD",
    ".env",
    ".env.local",
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/core/settings.data.json",
    ".ruff_cache/0.6.0/123",
    ".lock-venv/lock",
    "test-artifacts/dashboard.png",
    "bench-results/ingest.json",
    "build/lib/core/__init__.py",
    "dist/newsstream-0.1.0-py3-none-any.whl",
    "newsstream.egg-info/PKG-INFO",
    "core/__pycache__/settings.cpython-311.pyc",
    "newsstream/cli/__pycache__/trends.cpython-311.pyc",
    "consumers/worker.pyc",
    "tests/unit/deploy/test_compose_file.py",
    "docs/deploy.md",
]

_CONTEXT_SCRIPT = """
import json, os, sys
from docker.utils.build import exclude_paths
root = sys.argv[1]
patterns = None
ignore = os.path.join(root, ".dockerignore")
if os.path.exists(ignore):  # as docker.api.build.BuildApiMixin.build reads it
    with open(ignore) as f:
        patterns = list(filter(
            lambda x: x != "" and x[0] != "#", [l.strip() for l in f.read().splitlines()]
        ))
paths = exclude_paths(root, patterns or [], dockerfile="Dockerfile")
files = sorted(p for p in paths if not os.path.isdir(os.path.join(root, p)))
print(json.dumps(files))
"""


def sdk_python() -> str:
    """The interpreter Debian's docker-compose runs on (it has the Docker SDK)."""
    exe = require_binary("docker-compose", "docker-compose")
    with open(exe, "rb") as handle:
        first = handle.readline().decode(errors="replace")
    interpreter = shlex.split(first[2:])[0] if first.startswith("#!") else "/usr/bin/python3"
    if interpreter.endswith("env"):
        interpreter = shutil.which("python3") or interpreter
    probe = subprocess.run([interpreter, "-c", "import docker.utils.build"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{interpreter} has no Docker SDK (Debian's python3-docker)")
    return interpreter


def build_context(root: Path) -> set[str]:
    """The files (relative paths) `docker build` would send from ``root``."""
    result = subprocess.run(
        [sdk_python(), "-c", _CONTEXT_SCRIPT, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def copied_sources() -> list[str]:
    """The sources of the Dockerfile's COPY instructions from the build context."""
    sources = []
    for inst in dockerfile():
        if inst.keyword == "COPY" and "--from" not in inst.args:
            sources += shlex.split(inst.args)[:-1]
    assert sources, "the Dockerfile copies nothing"
    return sources


def test_dockerignore_keeps_local_state_caches_and_secrets_out_and_lets_copied_files_in(
    tmp_path: Path,
) -> None:
    """On a tree holding every kind of file a working copy accumulates."""
    assert DOCKERIGNORE.exists(), "no .dockerignore: the whole working copy is sent"
    shutil.copy(DOCKERIGNORE, tmp_path / ".dockerignore")
    shutil.copy(DOCKERFILE, tmp_path / "Dockerfile")
    needed = []
    for source in copied_sources():
        if (ROOT / source).is_dir():
            needed += [f"{source}/__init__.py", f"{source}/feeds.toml", f"{source}/static/app.js"]
        else:
            needed.append(source)
    for relative in [*MUST_NOT_SEND, *needed]:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    context = build_context(tmp_path)
    sent = sorted(set(MUST_NOT_SEND) & context)
    assert not sent, f"sent to the Docker engine: {sent}"
    missing = sorted(set(needed) - context)
    assert not missing, f"the Dockerfile copies what the context lacks: {missing}"


def test_the_repositorys_build_context_holds_every_file_the_dockerfile_copies() -> None:
    """On this working copy: each file under a COPY source (package data included) is sent,
    except the benchmarks and evaluations; nothing of .venv, .git or tests is."""
    context = build_context(ROOT)
    needed = set()
    for source in copied_sources():
        path = ROOT / source
        if path.is_file():
            needed.add(source)
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = [
                d
                for d in dirs
                if d != "__pycache__"
                and not d.endswith(".egg-info")
                and (Path(folder) / d).relative_to(ROOT).as_posix() not in LEFT_OUT
            ]
            for name in files:
                if not name.endswith((".pyc", ".pyo")):
                    needed.add((Path(folder) / name).relative_to(ROOT).as_posix())
    missing = sorted(needed - context)
    assert not missing, f"not in the build context: {missing}"
    leaked = sorted(
        p
        for p in context
        if p.split("/")[0] in {".venv", ".git", "tests", ".env"} or p.startswith(LEFT_OUT)
    )
    assert not leaked, f"sent to the Docker engine: {leaked[:20]}"
