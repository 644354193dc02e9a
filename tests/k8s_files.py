"""Readers of the Kubernetes manifests under infra/k8s (kustomize base and production overlay),
and the check of KEDA's ScaledObject against the fields KEDA documents.

tests/unit reads the files as YAML (no kubectl); tests/integration renders them with
``kubectl kustomize`` and validates every rendered object. The ScaledObject is a custom
resource: kubernetes-validate has no schema for it, so :func:`scaled_object_problems` checks it
against KEDA's documented specification (keda.sh, "ScaledObject specification" and the
"Apache Kafka" scaler, KEDA 2.x).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "infra" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
#: The file the production overlay's secretGenerator reads: the user creates it, git ignores it.
API_KEYS_FILE = "api-keys.env"

#: The newsstream subcommand each Deployment of the base runs, by component.
SUBCOMMANDS = {"producer": "produce", "worker": "consume", "trends": "trends", "api": "serve"}
UID = 10001


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of one file (empty documents skipped)."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def kustomization(directory: Path) -> dict[str, Any]:
    data = documents(directory / "kustomization.yaml")[0]
    assert isinstance(data, dict)
    return data


def resource_files(directory: Path) -> list[Path]:
    """The files of a kustomization's ``resources`` that are files (not other kustomizations)."""
    return [
        directory / name
        for name in kustomization(directory).get("resources", [])
        if (directory / name).is_file()
    ]


def objects(directory: Path) -> list[dict[str, Any]]:
    """Every object of the resource files of ``directory``'s kustomization, in file order."""
    return [doc for path in resource_files(directory) for doc in documents(path)]


def patches(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The strategic-merge patch files of a kustomization by (kind, name)."""
    found = {}
    for entry in kustomization(directory).get("patches", []):
        for doc in documents(directory / entry["path"]):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def of_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objs if obj.get("kind") == kind}


def deployments(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return of_kind(objs, "Deployment")


def component(deployment: dict[str, Any]) -> str:
    return str(deployment["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec = deployment["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(deployment)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a kustomize env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        values[key.strip()] = value.strip()
    return values


def generator_env(directory: Path, name: str) -> dict[str, str]:
    """The key/values the configMapGenerator ``name`` of ``directory`` generates (its env files
    and literals; a ``behavior: merge`` generator holds only the overlay's own values)."""
    values: dict[str, str] = {}
    for gen in kustomization(directory).get("configMapGenerator", []):
        if gen["name"] != name:
            continue
        for env in gen.get("envs", []):
            values.update(env_file(directory / env))
        for literal in gen.get("literals", []):
            key, _, value = literal.partition("=")
            values[key] = value
    return values


def settings_env(overlay: Path | None = None) -> dict[str, str]:
    """The shared ``newsstream-settings`` of the base, merged with ``overlay``'s when given."""
    values = generator_env(BASE, "newsstream-settings")
    if overlay is not None:
        values.update(generator_env(overlay, "newsstream-settings"))
    return values


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's literal ``env`` values (not those from references)."""
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


NEWSSTREAM_VARIABLE = re.compile(r"\bNEWSSTREAM_[A-Z0-9_]*[A-Z0-9]")


def newsstream_variables() -> dict[str, set[str]]:
    """Every NEWSSTREAM_* name written in a file under infra/k8s, with the files naming it."""
    found: dict[str, set[str]] = {}
    for path in sorted(K8S.rglob("*")):
        if path.is_file():
            for name in NEWSSTREAM_VARIABLE.findall(path.read_text(encoding="utf-8")):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def cpu_cores(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity (``"2"``, ``"500m"``, ``1.5``) in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6}
_MEMORY_UNITS |= {"G": 10**9, "T": 10**12, "": 1}


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (``"1280Mi"``, ``"2Gi"``, ``"1G"``, ``1024``) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T|)", str(quantity))
    assert match, f"not a memory quantity: {quantity!r}"
    return int(float(match[1]) * _MEMORY_UNITS[match[2]])


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, value) of a nested YAML structure."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


# --- KEDA ScaledObject, as KEDA documents it -----------------------------------------------------

#: Fields of ``spec`` (keda.sh/docs/2.17/reference/scaledobject-spec).
SCALED_OBJECT_SPEC = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
SCALE_TARGET_REF = {"apiVersion", "kind", "name", "envSourceContainerName"}
TRIGGER = {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
#: Metadata of the ``kafka`` trigger (keda.sh/docs/2.17/scalers/apache-kafka); KEDA reads every
#: value as a string.
KAFKA_METADATA = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "version",
    "partitionLimitation",
    "sasl",
    "saslTokenProvider",
    "tls",
    "unsafeSsl",
    "awsRegion",
}
KAFKA_REQUIRED = {"bootstrapServers", "consumerGroup"}
_BOOLEAN_METADATA = {
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "unsafeSsl",
}
_INTEGER_SPEC = {
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
}


def scaled_object_problems(obj: dict[str, Any], *, complete: bool = True) -> list[str]:
    """What in a ``keda.sh/v1alpha1`` ScaledObject KEDA's documentation does not allow: unknown
    fields, wrong types, a missing target name or trigger, min above max, a kafka trigger
    without its required metadata or with non-string values. ``complete=False`` checks a
    partial object (a kustomize patch): only the fields present. Empty when it is valid."""
    problems = []
    if obj.get("apiVersion") != "keda.sh/v1alpha1" or obj.get("kind") != "ScaledObject":
        problems.append(f"not a keda.sh/v1alpha1 ScaledObject: {obj.get('apiVersion')}")
    if not obj.get("metadata", {}).get("name"):
        problems.append("metadata.name missing")
    spec = obj.get("spec") or {}
    problems += [f"spec.{key}: not a documented field" for key in set(spec) - SCALED_OBJECT_SPEC]
    for key in _INTEGER_SPEC & set(spec):
        if not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < 0:
            problems.append(f"spec.{key}: expected an integer >= 0, found {spec[key]!r}")
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if complete and isinstance(low, int) and isinstance(high, int) and low > high:
        problems.append(f"minReplicaCount {low} > maxReplicaCount {high}")
    if "idleReplicaCount" in spec and spec["idleReplicaCount"] >= spec.get("minReplicaCount", 0):
        problems.append("idleReplicaCount must be less than minReplicaCount")
    target = spec.get("scaleTargetRef")
    if complete and not (isinstance(target, dict) and target.get("name")):
        problems.append("spec.scaleTargetRef.name is mandatory")
    if isinstance(target, dict):
        problems += [
            f"spec.scaleTargetRef.{key}: not a documented field"
            for key in set(target) - SCALE_TARGET_REF
        ]
    triggers = spec.get("triggers")
    if complete and not triggers:
        problems.append("spec.triggers: at least one trigger is needed")
    for i, trigger in enumerate(triggers or []):
        where = f"spec.triggers[{i}]"
        problems += [f"{where}.{key}: not a documented field" for key in set(trigger) - TRIGGER]
        if trigger.get("type") != "kafka":
            continue
        metadata = trigger.get("metadata") or {}
        problems += [
            f"{where}.metadata.{key}: not a kafka scaler parameter"
            for key in set(metadata) - KAFKA_METADATA
        ]
        problems += [f"{where}.metadata.{key}: required" for key in KAFKA_REQUIRED - set(metadata)]
        for key, value in metadata.items():
            if not isinstance(value, str):
                problems.append(f"{where}.metadata.{key}: KEDA reads strings, found {value!r}")
            elif key in _BOOLEAN_METADATA and value not in ("true", "false"):
                problems.append(f"{where}.metadata.{key}: expected 'true' or 'false'")
            elif key in ("lagThreshold", "activationLagThreshold") and not value.isdigit():
                problems.append(f"{where}.metadata.{key}: expected a whole number")
            elif key == "offsetResetPolicy" and value not in ("latest", "earliest"):
                problems.append(f"{where}.metadata.{key}: expected latest or earliest")
        if metadata.get("lagThreshold") == "0":
            problems.append(f"{where}.metadata.lagThreshold: must be above 0")
    return problems
