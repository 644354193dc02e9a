"""docker-compose.yml as Docker Compose reads it: rendered by Debian's `docker-compose config`
(1.29, no Docker engine needed) with the secrets a user supplies, then every service's effective
settings are built from its rendered environment the way a container would load them (the
Dockerfile's ENV overlaid by the service's environment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_files import (
    COMPOSE,
    ENV_EXAMPLE,
    ROOT,
    USER_ENV,
    env_settings,
    environment,
    image,
    interpolate,
    published_ports,
    require_binary,
    required_variables,
    run,
    write_env_file,
)

from core.settings import Settings

pytestmark = pytest.mark.integration


def render(tmp_path: Path, env: dict[str, str]) -> tuple[int, str, dict[str, Any]]:
    """``docker-compose config`` of the compose file with ``env`` as the user's .env file and
    nothing else from this process's environment; (exit code, stderr, rendered file)."""
    exe = require_binary("docker-compose", "docker-compose")
    env_path = write_env_file(tmp_path / "user.env", env)
    argv = [exe, "-f", str(COMPOSE), "--project-directory", str(ROOT)]
    argv += ["--env-file", str(env_path), "config"]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = run(argv, env=clean)
    rendered = yaml.safe_load(result.stdout) if result.returncode == 0 else {}
    return result.returncode, result.stderr, rendered


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The services of the compose file rendered with :data:`USER_ENV`."""
    code, stderr, config = render(tmp_path_factory.mktemp("compose"), USER_ENV)
    assert code == 0, stderr
    services = config["services"]
    assert isinstance(services, dict)
    return services


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    return env_settings(environment(service), monkeypatch)


def newsstream(rendered: dict[str, dict[str, Any]], subcommand: str) -> dict[str, dict[str, Any]]:
    found = {
        name: svc
        for name, svc in rendered.items()
        if image(svc).startswith("newsstream") and svc.get("command", [None])[0] == subcommand
    }
    assert found, f"no service runs `newsstream {subcommand}`"
    return found


def only_service(rendered: dict[str, dict[str, Any]], prefix: str) -> tuple[str, dict[str, Any]]:
    (item,) = [(n, s) for n, s in rendered.items() if image(s).startswith(prefix)]
    return item


# --- rendering and secrets -----------------------------------------------------------------------


def test_compose_renders_with_the_secrets_a_user_supplies_and_refuses_without_each(
    tmp_path: Path,
) -> None:
    code, stderr, _ = render(tmp_path, USER_ENV)
    assert code == 0, stderr
    assert required_variables(), "the compose file requires no secret"
    for variable in sorted(required_variables()):
        for env in (
            {k: v for k, v in USER_ENV.items() if k != variable},
            {**USER_ENV, variable: ""},
        ):
            code, stderr, _ = render(tmp_path, env)
            assert code != 0, f"compose rendered without {variable}"
            assert variable in stderr, stderr


def test_an_unfilled_env_example_does_not_start_the_stack(tmp_path: Path) -> None:
    exe = require_binary("docker-compose", "docker-compose")
    argv = [exe, "-f", str(COMPOSE), "--project-directory", str(ROOT)]
    argv += ["--env-file", str(ENV_EXAMPLE), "config", "-q"]
    result = run(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert any(variable in result.stderr for variable in required_variables()), result.stderr


def test_the_static_tests_interpolate_like_docker_compose(
    rendered: dict[str, dict[str, Any]],
) -> None:
    """tests/unit reads the raw file with deploy_files.interpolate: it must agree with compose."""
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    assert set(raw) == set(rendered)
    for name, svc in raw.items():
        ours = {k: interpolate(v, USER_ENV) for k, v in environment(svc).items()}
        assert ours == environment(rendered[name]), name


# --- effective settings of the newsstream services -----------------------------------------------


def test_workers_share_the_redis_dedup_index_kafka_group_and_milvus(
    rendered: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_name, _ = only_service(rendered, "redis")
    kafka_name, kafka = only_service(rendered, "apache/kafka")
    milvus_name, _ = only_service(rendered, "milvusdb/milvus")
    advertised = environment(kafka)["KAFKA_ADVERTISED_LISTENERS"]
    workers = newsstream(rendered, "consume")
    assert len(workers) >= 2
    loaded = {name: settings_of(svc, monkeypatch) for name, svc in workers.items()}
    for name, settings in loaded.items():
        assert settings.dedup_backend == "redis", f"{name}: dedup index is not the shared one"
        assert settings.dedup_redis_url is not None, name
        redis = urlsplit(settings.dedup_redis_url.get_secret_value())
        assert (redis.scheme, redis.hostname, redis.port) == ("redis", redis_name, 6379)
        assert settings.kafka_bootstrap == f"{kafka_name}:9092"
        assert f"PLAINTEXT://{settings.kafka_bootstrap}" in advertised
        assert settings.milvus_uri == f"http://{milvus_name}:19530"
        assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9100)
    # one group, one topic, one dedup index and one set of dedup parameters for all of them
    shared = {
        (
            s.kafka_group_id,
            s.kafka_topic,
            s.milvus_collection,
            s.dedup_redis_basename,
            s.dedup_num_perm,
            s.dedup_seed,
            s.embedding_model,
        )
        for s in loaded.values()
    }
    assert len(shared) == 1, shared
    assert len(workers) <= min(s.kafka_partitions for s in loaded.values())


def test_api_requires_the_keys_the_user_supplied(
    rendered: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, svc in newsstream(rendered, "serve").items():
        settings = settings_of(svc, monkeypatch)
        assert settings.api_host == "0.0.0.0", f"{name}: the API must listen beyond the container"
        keys = [k.get_secret_value() for k in settings.api_read_keys]
        assert keys == ["test-read-key-1", "test-read-key-2"], f"{name}: read keys {keys}"
        assert settings.api_admin_keys == [], f"{name}: admin keys are optional and none given"
        assert settings.kafka_bootstrap and settings.milvus_uri


def test_api_takes_admin_keys_when_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, stderr, config = render(tmp_path, {**USER_ENV, "NEWSSTREAM_API_ADMIN_KEYS": '["adm"]'})
    assert code == 0, stderr
    for svc in newsstream(config["services"], "serve").values():
        settings = settings_of(svc, monkeypatch)
        assert [k.get_secret_value() for k in settings.api_admin_keys] == ["adm"]


def test_producer_and_trends_reach_kafka_and_serve_metrics(
    rendered: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_name, _ = only_service(rendered, "apache/kafka")
    for subcommand in ("produce", "trends"):
        for name, svc in newsstream(rendered, subcommand).items():
            settings = settings_of(svc, monkeypatch)
            assert settings.kafka_bootstrap == f"{kafka_name}:9092", name
            assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9100), name


# --- what is exposed -----------------------------------------------------------------------------


def test_only_the_api_is_published_beyond_loopback(rendered: dict[str, dict[str, Any]]) -> None:
    api = set(newsstream(rendered, "serve"))
    for name, svc in rendered.items():
        for host, port in published_ports(svc):
            if name in api:
                continue
            assert host == "127.0.0.1", (
                f"{name} publishes port {port} on {host or 'every interface'}"
            )


def test_prometheus_does_not_expose_its_lifecycle_or_admin_api(
    rendered: dict[str, dict[str, Any]],
) -> None:
    _, prometheus = only_service(rendered, "prom/prometheus")
    flags = " ".join(prometheus["command"])
    assert "--config.file=" in flags
    assert "--web.enable-lifecycle" not in flags
    assert "--web.enable-admin-api" not in flags


def test_grafana_has_the_users_password_and_no_anonymous_access_or_sign_up(
    rendered: dict[str, dict[str, Any]],
) -> None:
    _, grafana = only_service(rendered, "grafana/grafana")
    env = environment(grafana)
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == USER_ENV["GRAFANA_ADMIN_PASSWORD"]
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED") == "false"
    assert env.get("GF_USERS_ALLOW_SIGN_UP") == "false"


def test_milvus_and_minio_share_the_users_credentials(rendered: dict[str, dict[str, Any]]) -> None:
    _, minio = only_service(rendered, "minio/minio")
    _, milvus = only_service(rendered, "milvusdb/milvus")
    minio_env, milvus_env = environment(minio), environment(milvus)
    user, password = USER_ENV["MINIO_ROOT_USER"], USER_ENV["MINIO_ROOT_PASSWORD"]
    assert (minio_env["MINIO_ROOT_USER"], minio_env["MINIO_ROOT_PASSWORD"]) == (user, password)
    assert milvus_env["MINIO_ACCESS_KEY_ID"] == user
    assert milvus_env["MINIO_SECRET_ACCESS_KEY"] == password
