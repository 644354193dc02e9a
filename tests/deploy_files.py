"""Readers of the deployment files users run (docker-compose.yml, the Dockerfile, .dockerignore,
.env.example, pyproject.toml, Prometheus and Grafana files): parsed once, no Docker engine. The
static checks in tests/unit use them; tests/integration runs the real validators (docker-compose,
promtool) on the same files."""

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
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS = ROOT / "infra" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "infra" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "newsstream.json"

ENV_PREFIX = "NEWSSTREAM_"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

#: What a user must supply (in the environment or .env) for the compose file to render: the
#: variables it requires with ``${VAR:?message}``. Test values, never real secrets.
USER_ENV = {
    "NEWSSTREAM_API_READ_KEYS": '["test-read-key-1", "test-read-key-2"]',
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
    "MINIO_ROOT_USER": "test-minio-user",
    "MINIO_ROOT_PASSWORD": "test-minio-password",
}


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


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` (or ``${VAR?message}``) whose variable the environment lacks."""


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Resolve compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?message}``, ``${VAR?message}`` and ``$$`` against ``env``.

    With a colon, an empty value counts as unset. Raises :class:`MissingVariable` for a required
    variable that is unset. (tests/integration checks this against ``docker-compose config``.)
    """

    def resolve(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"]
        is_set = name in env and (env[name] != "" or op not in (":-", ":?"))
        if is_set:
            return env[name]
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    return _VARIABLE.sub(resolve, value)


def required_variables() -> set[str]:
    """The variables the compose file requires (``${VAR:?...}`` or ``${VAR?...}``)."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", COMPOSE.read_text("utf-8")))


def env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (comments and blank lines skipped, one level of
    matching quotes removed)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    """An env file that docker compose reads back as ``env`` (values single-quoted: literal)."""
    for key, value in env.items():
        assert "'" not in value and "\n" not in value, f"{key}: cannot be written literally"
    path.write_text("".join(f"{key}='{value}'\n" for key, value in env.items()), "utf-8")
    return path


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


def published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """``(host address, host port)`` of each port a service publishes; ``""`` = every interface.

    Reads the short syntax (``"127.0.0.1:9090:9090"``, ``"8000:8000"``) and the long one
    (``{published, target, host_ip}``, what ``docker-compose config`` writes).
    """
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            host, port = str(entry.get("host_ip", "")), entry.get("published", entry["target"])
        else:
            parts = str(entry).partition("/")[0].rsplit(":", 2)
            host = parts[0] if len(parts) == 3 else ""
            port = parts[-2] if len(parts) >= 2 else parts[-1]
        found.append((host, int(port)))
    return found


def env_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a container loads with the Dockerfile's ENV overlaid by ``env`` (already
    interpolated), and no other NEWSSTREAM_* variable."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in {**dockerfile_env(), **env}.items():
        if key.startswith(ENV_PREFIX):
            monkeypatch.setenv(key, value)
    return load_settings()


def service_settings(
    service: dict[str, Any], monkeypatch: pytest.MonkeyPatch, user_env: dict[str, str] = USER_ENV
) -> Settings:
    """The Settings a container of this service (from the raw compose file) loads, with
    ``user_env`` as what the user supplied."""
    env = {key: interpolate(value, user_env) for key, value in environment(service).items()}
    return env_settings(env, monkeypatch)


def metrics_ports(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The ports on which the processes of a compose service serve Prometheus metrics.

    newsstream: ``serve`` on the API port; ``produce`` and ``trends`` on the metrics port;
    ``consume --workers N`` on the ports of :func:`consumers.worker.worker_metrics_ports`
    (tests/integration scrapes each of these from real processes). Other images: the ports
    their health check probes on localhost (Prometheus, Milvus' management port).
    """
    from consumers.worker import worker_metrics_ports  # heavy (datasketch): only when needed

    if not image(service).startswith("newsstream"):
        probe = " ".join(str(part) for part in (service.get("healthcheck") or {}).get("test", []))
        return {int(p) for p in re.findall(r"(?:localhost|127\.0\.0\.1):(\d+)", probe)}
    settings = service_settings(service, monkeypatch)
    argv = command(service)
    if argv[:1] == ["serve"]:
        return {settings.api_port}
    if argv[:1] == ["consume"]:
        workers = 1
        for i, arg in enumerate(argv):
            if arg == "--workers":
                workers = int(argv[i + 1])
            elif arg.startswith("--workers="):
                workers = int(arg.partition("=")[2])
        return set(worker_metrics_ports(settings.metrics_port, workers))
    if argv[:1] in (["produce"], ["trends"]):
        return {settings.metrics_port} if settings.metrics_port else set()
    return set()


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


def run(
    argv: list[str], timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def require_binary(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (make test installs Debian's {package})")
    return exe


# --- helpers: paths the deployment docs name ----------------------------------------------------

#: Documents whose repository paths must exist; each names paths relative to its own folder or
#: to the repository root.
DEPLOY_DOCS = (DOCKERFILE, ROOT / "infra" / "README.md", ROOT / "docs" / "deploy.md")

_FILE_NAME = re.compile(
    # a file name with an extension we keep in the repository (optionally with folders before
    # it), not part of an absolute path, URL, host:path or variable
    r"(?<![\w/.:$~-])(?:\.{1,2}/)?(?:[\w.-]+/)*\.?[\w-]+(?:\.[\w-]+)*"
    r"\.(?:py|ya?ml|json|toml|md|cfg|ini|txt|example)(?![\w.-])"
    r"|(?<![\w/.:$~-])\.(?:dockerignore|gitignore)(?![\w.-])"
)
_CODE_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def named_paths(text: str) -> set[str]:
    """Repository paths a document names: file names with a repository extension anywhere
    (prose, code blocks, comments), and the relative paths of markdown links and of code spans
    that are one ``folder/name`` token (not ``/absolute``, ``host:port``, a URL or a glob)."""
    found = {m.group(0) for m in _FILE_NAME.finditer(text)}
    spans = [m.group(1) for m in _CODE_SPAN.finditer(text)]
    links = [m.group(1).split("#")[0] for m in _LINK.finditer(text)]
    for token in [*spans, *links]:
        if (
            "/" in token
            and not re.search(r"[\s:$*{}<>|=\"']", token)
            and not token.startswith(("/", "~"))
        ):
            found.add(token)
    return found


def missing_paths(document: Path) -> list[str]:
    """The paths ``document`` names that exist neither beside it nor from the repository root.

    A folder path without a file extension counts only when it starts in a folder we have
    (beside the document or at the root): ``apache/kafka`` is an image, not a path.
    """
    bases = (document.parent, ROOT)
    missing = []
    for name in named_paths(document.read_text(encoding="utf-8")):
        if any((base / name).exists() for base in bases):
            continue
        first = name.split("/")[0]
        is_file = _FILE_NAME.fullmatch(name) is not None
        if is_file or first in ("..", ".") or any((base / first).is_dir() for base in bases):
            missing.append(name)
    return sorted(missing)
