"""infra/k8s (kustomize base and production overlay), read as YAML: the promises the manifests
make. Every container runs as the image's non-root user with a read-only root filesystem, no
privilege escalation, no capabilities and the runtime's seccomp profile; probes hit the right
paths and ports; resources are set; no Secret value is in the repository; the overlay's
autoscaling bounds leave room for disruptions; settings are real settings.
(tests/integration/test_k8s_manifests.py renders both with `kubectl kustomize` and validates
every object.)"""

from __future__ import annotations

from typing import Any

import pytest
from deploy_files import dockerfile_env, env_settings
from k8s_files import (
    API_KEYS_FILE,
    BASE,
    PRODUCTION,
    ROOT,
    SUBCOMMANDS,
    UID,
    component,
    container_env,
    containers,
    cpu_cores,
    deployments,
    documents,
    env_file,
    kustomization,
    memory_bytes,
    newsstream_variables,
    objects,
    of_kind,
    patches,
    pod_spec,
    settings_env,
    walk,
)

from core.settings import Settings

BASE_OBJECTS = objects(BASE)
DEPLOYMENTS = deployments(BASE_OBJECTS)


def each_container() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(name, d, c) for name, d in DEPLOYMENTS.items() for c in containers(d)]


def test_the_base_runs_the_four_services_of_the_one_image() -> None:
    by_component = {component(d): d for d in DEPLOYMENTS.values()}
    assert set(by_component) == set(SUBCOMMANDS), sorted(by_component)
    for comp, subcommand in SUBCOMMANDS.items():
        (container,) = containers(by_component[comp])
        # The Dockerfile's ENTRYPOINT is `newsstream`: args pick the service, as in compose.
        assert container["image"] == "newsstream", container["image"]
        assert "command" not in container, "command would replace the image's entrypoint"
        assert container["args"][:1] == [subcommand], f"{comp}: {container['args']}"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_every_container_is_non_root_read_only_and_unprivileged(name: str) -> None:
    deployment = DEPLOYMENTS[name]
    pod = pod_spec(deployment).get("securityContext", {})
    assert pod.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot"
    assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
    assert pod_spec(deployment).get("automountServiceAccountToken") is False, name
    for container in containers(deployment):
        ctx = {**pod, **container.get("securityContext", {})}
        where = f"{name}/{container['name']}"
        assert ctx.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
        # The Dockerfile's user; a different uid would not own the image's home directory.
        assert ctx.get("runAsUser") == UID, f"{where}: runAsUser {ctx.get('runAsUser')}"
        assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation"
        assert ctx.get("readOnlyRootFilesystem") is True, f"{where}: writable root filesystem"
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities"
        assert not ctx.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
        assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert not ctx.get("privileged"), where


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_what_must_be_writable_is_a_volume(name: str) -> None:
    """With a read-only root, the data dir and /tmp are volumes (emptyDir: the producers' feed
    state lives on the feed-state topic, their data dir is a cache)."""
    deployment = DEPLOYMENTS[name]
    volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
    data_dir = settings_env()["NEWSSTREAM_DATA_DIR"]
    for container in containers(deployment):
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for path in (data_dir, "/tmp"):
            assert path in mounts, f"{name}: {path} is not writable"
            assert mounts[path] in volumes, f"{name}: volume {mounts[path]} undeclared"
        data = volumes[mounts[data_dir]]
        assert "emptyDir" in data, f"{name}: data dir is no emptyDir"


def probe_target(container: dict[str, Any], kind: str) -> tuple[str, int]:
    probe = container.get(kind)
    assert probe, f"{container['name']}: no {kind}"
    get = probe["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = get["port"] if isinstance(get["port"], int) else ports[get["port"]]
    return get["path"], port


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_probes_hit_the_paths_and_ports_the_service_serves(name: str) -> None:
    """The API: /healthz (alive) and /readyz (Kafka and Milvus reachable) on the API port.
    Producer, worker and trends have no HTTP API: /metrics on the metrics port, as the compose
    health checks do."""
    deployment = DEPLOYMENTS[name]
    settings = settings_env()
    for container in containers(deployment):
        if component(deployment) == "api":
            port = int(settings["NEWSSTREAM_API_PORT"])
            expected = {
                "startupProbe": "/healthz",
                "livenessProbe": "/healthz",
                "readinessProbe": "/readyz",
            }
        else:
            port = int(settings["NEWSSTREAM_METRICS_PORT"])
            expected = dict.fromkeys(
                ("startupProbe", "livenessProbe", "readinessProbe"), "/metrics"
            )
        for kind, path in expected.items():
            assert probe_target(container, kind) == (path, port), f"{name}: {kind}"
        # A liveness probe that restarts a pod while the model loads would never let it start.
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, name


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_resources_are_set_and_requests_fit_in_limits(name: str) -> None:
    for container in containers(DEPLOYMENTS[name]):
        resources = container.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        for key in ("cpu", "memory"):
            assert key in requests and key in limits, f"{name}: {key} request and limit"
        assert cpu_cores(requests["cpu"]) <= cpu_cores(limits["cpu"]), name
        assert memory_bytes(requests["memory"]) <= memory_bytes(limits["memory"]), name


def test_the_worker_is_sized_for_its_measured_memory() -> None:
    """docs/benchmarks.md: a worker's RSS is about 1 GB with int8 embeddings (1,125 MB after 60
    days): below the request it would be evicted first, at the limit killed."""
    (worker,) = [d for d in DEPLOYMENTS.values() if component(d) == "worker"]
    (container,) = containers(worker)
    assert memory_bytes(container["resources"]["requests"]["memory"]) >= 1_125 * 10**6
    assert memory_bytes(container["resources"]["limits"]["memory"]) >= 1.5 * 2**30


def test_embedding_threads_match_the_cpu_limit() -> None:
    """0 (the default) means every core of the node: in a pod with a CPU limit that is
    oversubscription and throttling. Containers that embed set threads to their limit."""
    for name, _, container in each_container():
        if container["args"][0] not in ("consume", "serve"):
            continue
        threads = container_env(container).get("NEWSSTREAM_EMBEDDING_THREADS")
        assert threads, f"{name}: NEWSSTREAM_EMBEDDING_THREADS unset (0 = all node cores)"
        assert int(threads) == cpu_cores(container["resources"]["limits"]["cpu"]), name


def test_every_newsstream_variable_is_a_setting() -> None:
    fields = {name.lower() for name in Settings.model_fields}
    used = newsstream_variables()
    assert "NEWSSTREAM_KAFKA_BOOTSTRAP" in used, "no NEWSSTREAM_* variable found"
    unknown = {
        n: sorted(f) for n, f in used.items() if n.removeprefix("NEWSSTREAM_").lower() not in fields
    }
    assert not unknown, f"not settings of core.settings.Settings: {unknown}"


@pytest.mark.parametrize("overlay", [None, PRODUCTION], ids=["base", "production"])
def test_every_container_environment_loads_as_settings(
    overlay: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values pass Settings' validation; the workers share the Redis dedup index and the API
    replicas their rate limits."""
    secrets = {"NEWSSTREAM_API_READ_KEYS": '["test-key"]'}
    for name, _, container in each_container():
        env = {**settings_env(overlay), **container_env(container)}
        if container["args"][0] == "serve":
            env |= secrets
        settings = env_settings(env, monkeypatch)
        assert settings.kafka_bootstrap and settings.milvus_uri, name
        if container["args"][0] == "consume":
            assert settings.dedup_backend == "redis" and settings.dedup_redis_url, name
        if container["args"][0] == "serve":
            # Several replicas: one rate limit across them, not one per replica.
            assert settings.api_rate_limit_redis_url, f"{name}: rate limits not shared"
    assert dockerfile_env()["NEWSSTREAM_DATA_DIR"] == settings_env()["NEWSSTREAM_DATA_DIR"]


def test_the_api_keys_come_from_a_secret_that_the_repository_never_holds() -> None:
    (api,) = [d for d in DEPLOYMENTS.values() if component(d) == "api"]
    refs = [e["secretRef"]["name"] for e in containers(api)[0]["envFrom"] if "secretRef" in e]
    assert refs == ["newsstream-api-keys"], refs
    generators = kustomization(PRODUCTION).get("secretGenerator", [])
    assert [g["name"] for g in generators] == refs, "the overlay must generate that Secret"
    for gen in generators:
        assert not gen.get("literals"), "secret literals are values in the repository"
        assert gen.get("envs") == [API_KEYS_FILE], gen
    # The file the user creates is ignored by git; its committed example holds no value.
    ignored = (PRODUCTION / ".gitignore").read_text("utf-8").splitlines()
    assert API_KEYS_FILE in ignored
    example = env_file(PRODUCTION / f"{API_KEYS_FILE}.example")
    assert "NEWSSTREAM_API_READ_KEYS" in example
    assert not any(example.values()), f"the example must leave values empty: {example}"
    # No Secret with data, and no secret-looking value anywhere in the manifests.
    for path in sorted((ROOT / "infra" / "k8s").rglob("*.yaml")):
        for doc in documents(path):
            if doc.get("kind") == "Secret":
                assert not doc.get("data") and not doc.get("stringData"), path
            for where, value in walk(doc):
                if where.endswith(("password", "token", "apiKey")):
                    pytest.fail(f"{path.name}: {where} = {value!r}")
    for key in settings_env(PRODUCTION):
        assert "KEYS" not in key and "TOKEN" not in key, f"{key} belongs in the Secret"


def test_the_overlay_keeps_the_api_available_through_disruptions() -> None:
    """HPA bounds: at least 2 replicas; the PDB lets one go at a time and never blocks drains.
    Deployments an autoscaler owns set no replicas (an apply would reset the count)."""
    hpa = patches(PRODUCTION)[("HorizontalPodAutoscaler", "newsstream-api")]["spec"]
    pdb = patches(PRODUCTION)[("PodDisruptionBudget", "newsstream-api")]["spec"]
    base_hpa = of_kind(BASE_OBJECTS, "HorizontalPodAutoscaler")["newsstream-api"]["spec"]
    base_pdb = of_kind(BASE_OBJECTS, "PodDisruptionBudget")["newsstream-api"]["spec"]
    for h, p in ((base_hpa, base_pdb), ({**base_hpa, **hpa}, {**base_pdb, **pdb})):
        assert 2 <= h["minReplicas"] <= h["maxReplicas"], h
        assert 1 <= p["minAvailable"] < h["minReplicas"], (p, h)
    assert hpa["minReplicas"] >= 3 and hpa["maxReplicas"] > hpa["minReplicas"], hpa
    assert base_hpa["scaleTargetRef"]["name"] in DEPLOYMENTS
    (api,) = [d for d in DEPLOYMENTS.values() if component(d) == "api"]
    assert (
        base_pdb["selector"]["matchLabels"].items()
        <= api["spec"]["template"]["metadata"]["labels"].items()
    ), "the PDB selects no API pod"
    owned = {base_hpa["scaleTargetRef"]["name"]}
    owned |= {
        so["spec"]["scaleTargetRef"]["name"]
        for so in of_kind(BASE_OBJECTS, "ScaledObject").values()
    }
    for name, deployment in DEPLOYMENTS.items():
        if name in owned:
            assert "replicas" not in deployment["spec"], f"{name}: an autoscaler owns replicas"
        elif component(deployment) == "producer":
            # Producers share the feeds through their consumer group (see the next test).
            assert deployment["spec"].get("replicas") == 2, name
        else:
            # Trends' single partition has one active member.
            assert deployment["spec"].get("replicas") == 1, name


def test_producers_share_the_feeds_and_survive_a_rolling_update() -> None:
    """Two replicas in one group: a feed is polled by one live replica at a time, so a rolling
    update (old and new pods side by side) polls nothing twice, and one replica stays up."""
    (producer,) = [d for d in DEPLOYMENTS.values() if component(d) == "producer"]
    strategy = producer["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = containers(producer)
    env = {e["name"] for e in container.get("env", [])}
    assert not env & {"NEWSSTREAM_FEEDS_FILE", "NEWSSTREAM_PRODUCER_GROUP_ID"}, (
        "replicas of one Deployment share one feed list and one group"
    )


def test_the_api_service_reaches_the_api_port() -> None:
    service = of_kind(BASE_OBJECTS, "Service")["newsstream-api"]
    (api,) = [d for d in DEPLOYMENTS.values() if component(d) == "api"]
    (container,) = containers(api)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]] == int(settings_env()["NEWSSTREAM_API_PORT"])
    assert (
        service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    )
