"""The deployment files users run: docker-compose.yml, the Dockerfile, Prometheus and Grafana.

Static checks only (no Docker engine here): the files parse; the real validators
(`docker-compose config`, `promtool check config|rules`, `promtool test rules`) accept them when
installed (`make test` installs them from Debian); every service the design names is in the
compose file and wired to the others; every NEWSSTREAM_* variable is a real setting; every
metric a dashboard panel or alert rule queries exists in ``core.metrics`` with the labels and
label values it uses; the alerts fire on the conditions they describe; and the Dockerfile
installs the package list of pyproject.toml and no other.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import core.metrics
from core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
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


# --- helpers: metrics and PromQL -----------------------------------------------------------------


@dataclass
class MetricInfo:
    labels: set[str]


#: The closed label sets of core.metrics, by label name.
LABEL_ENUMS: dict[str, type[StrEnum]] = {
    "outcome": core.metrics.Outcome,
    "reason": core.metrics.RejectReason,
    "stage": core.metrics.Stage,
    "mode": core.metrics.SearchMode,
    "result": core.metrics.FetchResult,
}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


@cache
def known_series() -> dict[str, MetricInfo]:
    """Every series name the core.metrics registry exposes, with its label names."""
    series: dict[str, MetricInfo] = {"up": MetricInfo(set())}
    for obj in vars(core.metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        family = next(iter(obj.describe()))
        labels = set(obj._labelnames)
        for suffix in _SUFFIXES[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            series[family.name + suffix] = MetricInfo(labels | extra)
    return series


_TOKEN = re.compile(
    r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<labels>\{[^}]*\})
      | (?P<range>\[[^\]]*\])
      | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)
      | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<open>\()
      | (?P<close>\))
      | (?P<other>\S)""",
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_OPERATORS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
# Aggregations may be followed by `by (...)` rather than `(`: `sum by (le) (rate(...))`.
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"}
_AGGREGATIONS |= {"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
_MATCHER = re.compile(r"""([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)\"""")


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]]


def selectors(expr: str) -> list[Selector]:
    """The vector selectors (metric name and label matchers) of a PromQL expression."""
    tokens = [(m.lastgroup or "", m.group()) for m in _TOKEN.finditer(expr)]
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in _GROUPING:
            if nxt[0] == "open":  # skip the label list: by (le, mode)
                while i < len(tokens) and tokens[i][0] != "close":
                    i += 1
        elif kind == "ident" and text not in _OPERATORS | _AGGREGATIONS and nxt[0] != "open":
            matchers = _MATCHER.findall(nxt[1]) if nxt[0] == "labels" else []
            found.append(Selector(text, matchers))
        i += 1
    return found


def closed_set(label: str, jobs: set[str]) -> set[str] | None:
    """The values a label may take (``job``: the scrape jobs), None when it is not closed."""
    if label == "job":
        return jobs
    enum = LABEL_ENUMS.get(label)
    return None if enum is None else {str(member) for member in enum}


def check_expr(expr: str, jobs: set[str]) -> list[str]:
    """Problems of one PromQL expression against the metric registry (empty when fine)."""
    problems = []
    sels = selectors(expr)
    if not sels:
        problems.append(f"no metric found in {expr!r}")
    for sel in sels:
        info = known_series().get(sel.metric)
        if info is None:
            problems.append(f"{sel.metric}: not a metric of core/metrics.py (in {expr!r})")
            continue
        for label, op, value in sel.matchers:
            if label not in info.labels | TARGET_LABELS:
                problems.append(f"{sel.metric}: no label {label!r} (in {expr!r})")
                continue
            allowed = closed_set(label, jobs)
            if allowed is None or "$" in value:  # open label, or a Grafana variable
                continue
            if op in ("=", "!="):
                values = [value]
            elif re.fullmatch(r"[\w|]+", value):
                values = value.split("|")
            else:
                continue
            problems += [
                f"{sel.metric}: {label}={v!r} is outside its closed set {sorted(allowed)}"
                for v in values
                if v not in allowed
            ]
    return problems


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


# --- docker-compose.yml --------------------------------------------------------------------------


def test_docker_compose_config_accepts_the_compose_file() -> None:
    exe = require_binary("docker-compose", "docker-compose")
    result = run([exe, "-f", str(COMPOSE), "config", "-q"])
    assert result.returncode == 0, result.stderr


def test_compose_runs_every_service_the_design_names() -> None:
    _, kafka = one_service_with_image("apache/kafka")
    assert "controller" in environment(kafka).get("KAFKA_PROCESS_ROLES", ""), "Kafka not in KRaft"
    assert not services_with_image("confluentinc/cp-zookeeper"), "KRaft needs no ZooKeeper"

    _, milvus = one_service_with_image("milvusdb/milvus")
    tag = re.fullmatch(r"v(\d+)\.(\d+)\.\d+.*", image(milvus).partition(":")[2])
    assert tag and (int(tag[1]), int(tag[2])) >= (2, 5), "BM25 (hybrid search) needs Milvus 2.5+"
    assert command(milvus)[-1] == "standalone"
    etcd, _ = one_service_with_image("quay.io/coreos/etcd")
    minio, _ = one_service_with_image("minio/minio")
    milvus_env = environment(milvus)
    assert milvus_env["ETCD_ENDPOINTS"] == f"{etcd}:2379"
    assert milvus_env["MINIO_ADDRESS"] == f"{minio}:9000"

    one_service_with_image("redis")
    one_service_with_image("prom/prometheus")
    one_service_with_image("grafana/grafana")

    for subcommand in ("produce", "serve", "trends"):
        assert newsstream_services(subcommand), f"no service runs `newsstream {subcommand}`"
    workers = newsstream_services("consume")
    assert sum(replicas(svc) for svc in workers.values()) >= 2, "the design runs >= 2 workers"


def test_workers_are_one_consumer_group_no_larger_than_the_partition_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workers = newsstream_services("consume")
    loaded = {name: service_settings(svc, monkeypatch) for name, svc in workers.items()}
    groups = {s.kafka_group_id for s in loaded.values()}
    assert len(groups) == 1, f"workers are split over consumer groups {groups}"
    topics = {s.kafka_topic for s in loaded.values()}
    assert len(topics) == 1, f"workers read different topics {topics}"
    total = sum(replicas(svc) for svc in workers.values())
    partitions = min(s.kafka_partitions for s in loaded.values())
    assert total <= partitions, f"{total} workers but {partitions} partitions: some would idle"


def test_newsstream_services_address_the_compose_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bootstrap, Milvus URI and Redis URL name services of this file on their real ports."""
    svcs = services()
    _, kafka = one_service_with_image("apache/kafka")
    advertised = environment(kafka)["KAFKA_ADVERTISED_LISTENERS"]
    for name, svc in svcs.items():
        if not image(svc).startswith("newsstream"):
            continue
        settings = service_settings(svc, monkeypatch)
        assert settings.kafka_bootstrap, f"{name}: NEWSSTREAM_KAFKA_BOOTSTRAP unset"
        for server in settings.kafka_bootstrap.split(","):
            assert server in advertised, f"{name}: {server} is not a listener Kafka advertises"
            assert server.partition(":")[0] in svcs, f"{name}: {server} is no compose service"
        assert settings.milvus_uri, f"{name}: NEWSSTREAM_MILVUS_URI unset"
        milvus = urlsplit(settings.milvus_uri)
        assert milvus.hostname in svcs and milvus.port == 19530, settings.milvus_uri
        assert image(svcs[milvus.hostname]).startswith("milvusdb/milvus")
    for name, svc in newsstream_services("consume").items():
        redis_url = environment(svc).get("NEWSSTREAM_DEDUP_REDIS_URL")
        assert redis_url, f"{name}: workers need the shared Redis dedup index"
        host = urlsplit(redis_url).hostname
        assert host in svcs and image(svcs[host]).startswith("redis"), redis_url


def test_every_service_has_a_health_check_and_state_lives_in_named_volumes() -> None:
    declared = set(compose().get("volumes") or {})
    for name, svc in services().items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
    stateful = ["apache/kafka", "quay.io/coreos/etcd", "minio/minio", "milvusdb/milvus", "redis"]
    stateful += ["prom/prometheus", "grafana/grafana"]
    for prefix in stateful:
        name, svc = one_service_with_image(prefix)
        sources = {str(v).split(":", 1)[0] for v in svc.get("volumes", [])}
        assert sources & declared, f"{name} keeps its state in no named volume"
    for name in newsstream_services("produce"):
        sources = {str(v).split(":", 1)[0] for v in services()[name].get("volumes", [])}
        assert sources & declared, f"{name}: feed state (ETags, seen entries) needs a volume"


def test_newsstream_health_checks_probe_the_ports_the_services_listen_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for subcommand in ("produce", "consume", "trends", "serve"):
        for name, svc in newsstream_services(subcommand).items():
            settings = service_settings(svc, monkeypatch)
            port = settings.api_port if subcommand == "serve" else settings.metrics_port
            assert port, f"{name}: no port to probe"
            probe = " ".join(str(part) for part in svc["healthcheck"]["test"])
            assert f":{port}/" in probe, f"{name}: health check does not probe port {port}"


def test_every_newsstream_variable_is_a_setting() -> None:
    """Each NEWSSTREAM_* name in the compose file or Dockerfile is a field of Settings."""
    fields = {name.lower() for name in Settings.model_fields}
    used = set()
    for path in (COMPOSE, DOCKERFILE):
        used |= set(re.findall(r"\bNEWSSTREAM_[A-Z0-9_]*[A-Z0-9]", path.read_text("utf-8")))
    assert used, "no NEWSSTREAM_* variable found"
    unknown = sorted(name for name in used if name[len(ENV_PREFIX) :].lower() not in fields)
    assert not unknown, f"not settings of core.settings.Settings: {unknown}"


def test_every_newsstream_service_environment_loads_as_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The values pass Settings' validation (types, ranges), not only the names."""
    for svc in services().values():
        if image(svc).startswith("newsstream"):
            service_settings(svc, monkeypatch)


# --- Prometheus ----------------------------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_rules() -> None:
    exe = require_binary("promtool", "prometheus")
    result = run([exe, "check", "config", str(PROMETHEUS)])
    assert result.returncode == 0, result.stdout + result.stderr
    result = run([exe, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_newsstream_process(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_yaml(PROMETHEUS)
    assert ALERTS.name in config["rule_files"]
    jobs = scrape_jobs()
    expected_jobs = {"produce": "producer", "consume": "worker", "serve": "api", "trends": "trends"}
    for subcommand, job in expected_jobs.items():
        for name, svc in newsstream_services(subcommand).items():
            settings = service_settings(svc, monkeypatch)
            port = settings.api_port if subcommand == "serve" else settings.metrics_port
            assert f"{name}:{port}" in jobs.get(job, []), f"job {job} does not scrape {name}"


def test_alert_rules_cover_what_operators_must_hear_about() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    used = {(sel.metric, tuple(sel.matchers)) for e in exprs.values() for sel in selectors(e)}
    names = {metric for metric, _ in used}
    assert "newsstream_consumer_lag" in names
    assert ("newsstream_outcomes_total", (("outcome", "=", "dlq"),)) in used
    assert "newsstream_feeds_broken" in names
    assert "newsstream_time_to_searchable_seconds_bucket" in names
    assert ("up", (("job", "=", "worker"),)) in used


def test_alert_rules_query_only_existing_metrics_labels_and_values() -> None:
    jobs = set(scrape_jobs())
    problems = [p for rule in alert_rules() for p in check_expr(rule["expr"], jobs)]
    assert not problems, "\n".join(problems)


def _buckets(value_per_minute: float, above: float) -> list[dict[str, str]]:
    """Histogram series whose observations all fall in the first bucket above ``above``."""
    bounds = [*(str(b) for b in core.metrics._TTS_BUCKETS), "+Inf"]
    return [
        {
            "series": f'newsstream_time_to_searchable_seconds_bucket{{job="worker",le="{le}"}}',
            "values": f"0+{value_per_minute}x40" if float(le) > above else "0x40",
        }
        for le in bounds
    ]


def promtool_test_rules(tmp_path: Path, tests: dict[str, Any]) -> None:
    """Run ``promtool test rules`` with ``tests`` on a copy of alerts.yml without annotations.

    Annotations are prose with templates; leaving them out keeps the tests about what decides
    whether an alert fires: expr, for and labels.
    """
    exe = require_binary("promtool", "prometheus")
    rules = load_yaml(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    (tmp_path / "alerts_test.yml").write_text(
        yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m", **tests}),
        encoding="utf-8",
    )
    result = subprocess.run(
        [exe, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_on_the_conditions_they_describe(tmp_path: Path) -> None:
    """Each alert fires on synthetic series showing its condition, and not before its `for`."""
    w1, w2 = 'job="worker",instance="worker-1:9100"', 'job="worker",instance="worker-2:9100"'
    series = [
        # one DLQ message at minute 2
        {
            "series": f'newsstream_outcomes_total{{outcome="dlq",reason="none",{w1}}}',
            "values": "0 0 1x40",
        },
        # worker-1 dies at minute 2, worker-2 stays up
        {"series": f"up{{{w1}}}", "values": "1 1 0x40"},
        {"series": f"up{{{w2}}}", "values": "1x40"},
        # partition 0 grows, partition 1 is large but steady (no alert for it)
        {"series": f'newsstream_consumer_lag{{partition="0",{w1}}}', "values": "2000+100x40"},
        {"series": f'newsstream_consumer_lag{{partition="1",{w2}}}', "values": "5000x40"},
        {"series": 'newsstream_feeds_broken{job="producer"}', "values": "3x40"},
        *_buckets(60, above=5.0),  # every article takes 5-10 s
    ]
    tests = {
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "DLQMessages", "exp_alerts": []},
                    {
                        "eval_time": "3m",
                        "alertname": "DLQMessages",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                    {
                        "eval_time": "5m",
                        "alertname": "WorkerDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "worker",
                                    "instance": "worker-1:9100",
                                }
                            }
                        ],
                    },
                    {"eval_time": "5m", "alertname": "NoWorkers", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "ConsumerLagGrowing", "exp_alerts": []},
                    {
                        "eval_time": "35m",
                        "alertname": "ConsumerLagGrowing",
                        "exp_alerts": [{"exp_labels": {"severity": "warning", "partition": "0"}}],
                    },
                    {
                        "eval_time": "25m",
                        "alertname": "TimeToSearchableSlow",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                    {"eval_time": "20m", "alertname": "FeedsBroken", "exp_alerts": []},
                    {
                        "eval_time": "35m",
                        "alertname": "FeedsBroken",
                        "exp_alerts": [{"exp_labels": {"severity": "info"}}],
                    },
                ],
            }
        ],
    }
    promtool_test_rules(tmp_path, tests)


def test_time_to_searchable_alert_stays_quiet_when_articles_are_fast(tmp_path: Path) -> None:
    tests = {
        "tests": [
            {
                "interval": "1m",
                "input_series": _buckets(60, above=1.0),  # every article takes 1-2 s
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "TimeToSearchableSlow", "exp_alerts": []}
                ],
            }
        ],
    }
    promtool_test_rules(tmp_path, tests)


# --- Grafana -------------------------------------------------------------------------------------


def test_grafana_provisioning_matches_the_dashboard_and_the_compose_mounts() -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    prometheus_name, _ = one_service_with_image("prom/prometheus")
    assert urlsplit(source["url"]).hostname == prometheus_name
    assert source["type"] == "prometheus"

    for panel in dashboard_panels(dashboard()["panels"]):
        for item in [panel, *panel.get("targets", [])]:
            if "datasource" in item:
                assert item["datasource"]["uid"] == source["uid"], panel["title"]

    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")
    paths = {p["options"]["path"] for p in providers["providers"]}
    _, grafana = one_service_with_image("grafana/grafana")
    mounts = {}
    for volume in grafana["volumes"]:
        src, dst = str(volume).split(":")[:2]
        mounts[dst] = src
    assert mounts.get("/etc/grafana/provisioning") == "./infra/grafana/provisioning"
    for path in paths:
        assert mounts.get(path) == "./infra/grafana/dashboards", f"{path} is not mounted"


def test_dashboard_queries_only_existing_metrics_labels_and_values() -> None:
    exprs = dashboard_exprs()
    assert exprs, "the dashboard has no queries"
    jobs = set(scrape_jobs())
    problems = [p for expr in exprs for p in check_expr(expr, jobs)]
    assert not problems, "\n".join(problems)


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """Ingest rate, outcomes, rejects, lag, time-to-searchable, embed/upsert latency, fetches,
    broken feeds, search latency and QPS, dedup index size."""
    used = {sel.metric for expr in dashboard_exprs() for sel in selectors(expr)}
    required = {
        "newsstream_entries_published_total",
        "newsstream_messages_consumed_total",
        "newsstream_outcomes_total",
        "newsstream_consumer_lag",
        "newsstream_time_to_searchable_seconds_bucket",
        "newsstream_stage_seconds_bucket",
        "newsstream_feed_fetches_total",
        "newsstream_feeds_broken",
        "newsstream_search_seconds_bucket",
        "newsstream_search_requests_total",
        "newsstream_dedup_index_size",
    }
    assert not required - used, f"no panel shows {sorted(required - used)}"
    exprs = " ".join(dashboard_exprs())
    assert 'outcome="rejected"' in exprs and "by (reason)" in exprs
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.95," in exprs
    assert 'stage=~"embed|upsert"' in exprs
    ids = [p["id"] for p in dashboard_panels(dashboard()["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_promql_selector_parser_finds_names_labels_and_skips_grouping() -> None:
    """The parser the two tests above rely on (a parser that finds nothing checks nothing)."""
    expr = (
        'histogram_quantile(0.95, sum by (le, mode) (rate(newsstream_search_seconds_bucket{mode="x"}'
        "[$__rate_interval]))) / on (job) group_left up offset 5m and bogus_metric"
    )
    found = [(s.metric, s.matchers) for s in selectors(expr)]
    assert found == [
        ("newsstream_search_seconds_bucket", [("mode", "=", "x")]),
        ("up", []),
        ("bogus_metric", []),
    ]
    problems = check_expr(expr, {"worker"})
    assert any("bogus_metric" in p for p in problems)
    assert any("mode='x'" in p for p in problems)
    assert (
        check_expr('sum(rate(newsstream_outcomes_total{outcome=~"dlq|rejected"}[5m]))', set()) == []
    )


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_installs_the_pyproject_package_list_and_no_other() -> None:
    installs = pip_installs()
    assert len(installs) == 2, f"expected `pip install` of torch and of `.`, found {installs}"
    torch_args, package_args = installs
    # 1. torch, CPU build, with the requirement read from pyproject.toml (not hand-written)
    assert torch_args[:2] == ["--index-url", TORCH_CPU_INDEX], torch_args
    assert torch_args[2] == "-r" and len(torch_args) == 4, torch_args
    # 2. the package itself, no extras (the `local` extra stays out of images), no other names
    assert package_args == ["."], f"install the package from pyproject.toml only: {package_args}"


def test_dockerfile_torch_requirement_is_the_one_in_pyproject(tmp_path: Path) -> None:
    """Run the Dockerfile's own extraction command on our pyproject.toml."""
    (torch_args, _) = pip_installs()
    requirements_file = torch_args[3]
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


def test_dockerfile_copies_every_package_pyproject_builds() -> None:
    copied = set()
    for inst in dockerfile():
        if inst.keyword == "COPY" and "--from" not in inst.args:
            copied |= {Path(src).as_posix().rstrip("/") for src in shlex.split(inst.args)[:-1]}
    config = pyproject()
    patterns = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*").rstrip(".") for p in patterns}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert {"pyproject.toml", config["project"]["readme"]} <= copied


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
