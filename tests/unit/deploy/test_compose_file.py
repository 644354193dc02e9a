"""docker-compose.yml: the services the design names, wired to each other, with health checks,
volumes and environments that load as settings, secrets only from the environment (read from the
file; tests/integration/test_compose_config.py renders it with `docker-compose config`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from deploy_files import (
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    ENV_PREFIX,
    USER_ENV,
    MissingVariable,
    command,
    compose,
    env_file,
    environment,
    image,
    interpolate,
    newsstream_services,
    one_service_with_image,
    replicas,
    required_variables,
    service_settings,
    services,
    services_with_image,
)

from core.settings import Settings

# --- docker-compose.yml --------------------------------------------------------------------------


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
        settings = service_settings(svc, monkeypatch)
        # The URL alone is not used: without the redis backend each worker keeps its own index.
        assert settings.dedup_backend == "redis", f"{name}: workers must share the Redis index"
        assert settings.dedup_redis_url, f"{name}: NEWSSTREAM_DEDUP_REDIS_URL unset"
        redis_url = settings.dedup_redis_url.get_secret_value()
        host = urlsplit(redis_url).hostname
        assert host in svcs and image(svcs[host]).startswith("redis"), redis_url
    for name, svc in newsstream_services("serve").items():
        settings = service_settings(svc, monkeypatch)
        # Without it each API replica counts its own rate limits (N replicas, N times the limit).
        assert settings.api_rate_limit_redis_url, f"{name}: rate limits not shared in Redis"
        redis_url = settings.api_rate_limit_redis_url.get_secret_value()
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


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_come_from_the_environment_without_defaults() -> None:
    """API keys, the Grafana admin password and MinIO's credentials are required variables."""
    required = required_variables()
    assert {"NEWSSTREAM_API_READ_KEYS", "GRAFANA_ADMIN_PASSWORD"} <= required
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} <= required
    _, grafana = one_service_with_image("grafana/grafana")
    with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(environment(grafana)["GF_SECURITY_ADMIN_PASSWORD"], {})
    for name in newsstream_services("serve"):
        raw = environment(services()[name])["NEWSSTREAM_API_READ_KEYS"]
        with pytest.raises(MissingVariable, match="NEWSSTREAM_API_READ_KEYS"):
            interpolate(raw, {"NEWSSTREAM_API_READ_KEYS": ""})
    # No literal credential anywhere: every password/secret/key value is a variable.
    for name, svc in services().items():
        for key, value in environment(svc).items():
            if re.search(r"PASSWORD|SECRET|_KEYS?$|_KEY_ID$|ROOT_USER", key):
                assert value.startswith("${"), f"{name}: {key} is written in the file: {value!r}"


def test_env_example_names_every_required_variable_and_holds_no_secret() -> None:
    example = env_file(ENV_EXAMPLE)
    assert required_variables() <= set(example), (
        f".env.example lacks {sorted(required_variables() - set(example))}"
    )
    filled = {key: value for key, value in example.items() if value}
    assert not filled, f".env.example must leave every value for the user to fill: {filled}"
    assert set(USER_ENV) == required_variables(), "the tests' user env must match the file"


def test_interpolation_follows_compose_rules() -> None:
    """The pure interpolation the tests above rely on (checked against docker-compose itself in
    tests/integration/test_compose_config.py)."""
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $SET $$SET", env) == (
        "x d  d x $SET"
    )
    assert interpolate("${EMPTY?m}", env) == ""
    for required in ("${UNSET:?m}", "${EMPTY:?m}", "${UNSET?m}"):
        with pytest.raises(MissingVariable):
            interpolate(required, env)
