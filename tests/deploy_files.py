"""Readers of the deployment files users run (docker-compose.yml, the Dockerfile, pyproject.toml,
Prometheus and Grafana files) for the static checks in tests/unit: parsed once, no Docker engine."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
PROMETHEUS = ROOT / "infra" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "infra" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "newsstream.json"

ENV_PREFIX = "NEWSSTREAM_"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


# --- helpers: compose ----------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@cache
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    result = compose().get("services")
    assert isinstance(result, dict) and result, "docker-compose.yml has no services"
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (compose allows a mapping or a KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def interpolate(value: str) -> str:
    """Resolve ${VAR:-default} / ${VAR-default} the way compose does with VAR unset."""
    return re.sub(r"\$\{[A-Za-z0-9_]+:?-([^}]*)\}", r"\1", value)


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def image(service: dict[str, Any]) -> str:
    return str(service.get("image", ""))


def newsstream_services(subcommand: str) -> dict[str, dict[str, Any]]:
    """Services that run the newsstream image with ``subcommand`` (produce, consume, ...)."""
    return {
        name: svc
        for name, svc in services().items()
        if image(svc).startswith("newsstream") and command(svc)[:1] == [subcommand]
    }


def replicas(service: dict[str, Any]) -> int:
    return int((service.get("deploy") or {}).get("replicas", 1))


def services_with_image(prefix: str) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if image(svc).startswith(prefix)}


def one_service_with_image(prefix: str) -> tuple[str, dict[str, Any]]:
    found = services_with_image(prefix)
    assert len(found) == 1, f"expected one service with image {prefix}*, found {sorted(found)}"
    return next(iter(found.items()))


def service_settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a container of this service loads (Dockerfile ENV, then its environment)."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in {**dockerfile_env(), **environment(service)}.items():
        if key.startswith(ENV_PREFIX):
            monkeypatch.setenv(key, interpolate(value))
    return load_settings()


# --- helpers: Dockerfile -------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    out: list[Instruction] = []
    stage = -1
    for line in logical.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(keyword.upper(), args.strip(), stage))
    return tuple(out)


def dockerfile_env() -> dict[str, str]:
    """ENV of the final stage (the one containers run)."""
    last = max(i.stage for i in dockerfile())
    env: dict[str, str] = {}
    for inst in dockerfile():
        if inst.keyword == "ENV" and inst.stage == last:
            for token in shlex.split(inst.args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def shell_commands(run_args: str) -> Iterator[list[str]]:
    """The simple commands of a RUN line (split on && || ; |), each as argv, redirections dropped."""
    lexer = shlex.shlex(run_args, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    argv: list[str] = []
    tokens = iter(lexer)
    for token in tokens:
        if token in ("&&", "||", ";", "|"):
            if argv:
                yield argv
            argv = []
        elif token in (">", ">>", "<", "2>"):
            next(tokens, None)  # the redirection target is no argument
        else:
            argv.append(token)
    if argv:
        yield argv


def pip_installs() -> list[list[str]]:
    """Arguments after `pip install` of every pip invocation in RUN instructions."""
    found = []
    for inst in dockerfile():
        if inst.keyword != "RUN":
            continue
        for argv in shell_commands(inst.args):
            words = argv[2:] if argv[:2] == ["python", "-m"] else argv
            if words[:1] and re.fullmatch(r"pip3?(\.\d+)?", Path(words[0]).name):
                assert words[1:2] == ["install"], f"unexpected pip command: {argv}"
                found.append(words[2:])
    return found


def pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as handle:
        return tomllib.load(handle)


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def scrape_jobs() -> dict[str, list[str]]:
    config = load_yaml(PROMETHEUS)
    return {
        job["job_name"]: [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        for job in config["scrape_configs"]
    }


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule
    ]


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def require_binary(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (make test installs Debian's {package})")
    return exe
