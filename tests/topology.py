"""The production topology as real processes on one machine, for the topology fault tests.

What docker-compose.yml and infra/k8s describe, run from processes instead of containers: a
Kafka-protocol broker (given, or a Tansu of its own), a PyPI ``milvus`` 2.3.5 standalone server
on a data dir of its own, a ``redis-server`` of its own (the workers' shared dedup index and the
API replicas' shared rate limits), N producers (``newsstream produce``, all with the same
settings, polling feed files served on 127.0.0.1), N workers (``newsstream consume``, one
consumer group, the Redis dedup backend), N API replicas (``newsstream serve``, uvicorn), the
trends service (``newsstream trends``) and, on request, the real Prometheus binary scraping all
of them with the project's own ``infra/prometheus`` files (targets rewritten to the local ports
in a copy).

Every service shares one data dir, as the workers and the API do on one machine (the keyword
index of the 2.3.5 server lives there). Redis and Milvus can be killed with SIGKILL and started
again on the same port and data; workers, producers and API replicas can be added, stopped and
killed. Each process logs to a file of its own under ``base/logs``.

Use: ``with Topology(base, bootstrap, model_cache_dir).start() as topo: ...``; every process
it started is stopped on exit.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from core.article import Article
from core.kafka import ensure_topics
from core.ledger import LedgerRecord
from core.settings import Settings
from newsstream.stack.launchers import (
    free_port,
    local_milvus_command,
    tansu_command,
    wait_for_milvus,
)
from newsstream.stack.replay import ReplayServer
from producers.feeds import feeds_to_toml
from producers.publisher import Publisher

from probes import read_topic
from topology_service import Service
from worker_procs import ROOT, settings_env

PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
#: Alert rules whose ``for:`` the Prometheus copy shortens to 2 s (a target down).
SHORT_FOR = frozenset({"WorkerDown", "NoWorkers", "ServiceDown"})


class Topology:
    """The topology's processes and the settings they share (see the module docstring).

    ``feeds`` are feed files the producers poll (copied into ``base``, served on 127.0.0.1);
    ``overrides`` are settings of every process. ``kafka_bootstrap`` None starts a broker of
    its own.
    """

    def __init__(
        self,
        base: Path,
        kafka_bootstrap: str | None,
        model_cache_dir: Path,
        *,
        workers: int = 3,
        apis: int = 2,
        producers: int = 1,
        feeds: list[Path] | None = None,
        prometheus: bool = True,
        **overrides: Any,
    ) -> None:
        self.base = base
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._want = {"workers": workers, "apis": apis, "producers": producers}
        self._feeds = feeds or []
        self._want_prometheus = prometheus
        self._kafka_bootstrap = kafka_bootstrap
        self._model_cache_dir = model_cache_dir
        self._overrides = overrides
        self.broker: Service | None = None
        self.milvus: Service | None = None
        self.redis: Service | None = None
        self.replay: ReplayServer | None = None
        self.producers: list[Service] = []
        self.workers: list[Service] = []
        self.apis: list[Service] = []
        self.trends: Service | None = None
        self.prometheus: Service | None = None
        self.settings: Settings | None = None
        self._worker_ports: list[int] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> Topology:
        """Start everything and wait until every process answers; returns self."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        name = "topo" + uuid.uuid4().hex[:8]
        if self._kafka_bootstrap is None:
            port = free_port()
            self.broker = Service(
                "broker", tansu_command(port), dict(os.environ), self._log("broker"), port
            )
            self.broker.start().wait_listening(30)
            self._kafka_bootstrap = f"127.0.0.1:{port}"
        milvus_port = free_port()
        self.milvus = Service(
            "milvus",
            local_milvus_command("server", self.base, milvus_port),
            dict(os.environ),
            self._log("milvus"),
            milvus_port,
        ).start()
        redis_exe = shutil.which("redis-server")
        assert redis_exe is not None, "redis-server is not installed (make test installs it)"
        redis_port = free_port()
        (self.base / "redis").mkdir(exist_ok=True)
        self.redis = Service(
            "redis",
            # no persistence: a restarted Redis starts empty, the harder case for the workers
            [
                redis_exe,
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.base / "redis"),
            ],
            dict(os.environ),
            self._log("redis"),
            redis_port,
        ).start()
        self.redis.wait_listening(20)
        feeds_file = None
        if self._feeds:
            served = self.base / "feeds"
            served.mkdir(exist_ok=True)
            for path in self._feeds:
                shutil.copy(path, served / path.name)
            self.replay = ReplayServer(served).start()
            feeds_file = self.base / "feeds.toml"
            feeds_file.write_text(feeds_to_toml(self.replay.feeds()), encoding="utf-8")
        values: dict[str, Any] = {
            "data_dir": self.base / "data",
            "kafka_bootstrap": self._kafka_bootstrap,
            "kafka_topic": f"{name}.articles",
            "kafka_dlq_topic": f"{name}.dlq",
            "kafka_search_events_topic": f"{name}.search",
            "kafka_status_topic": f"{name}.status",
            "kafka_ledger_topic": f"{name}.ledger",
            "kafka_story_edits_topic": f"{name}.story-edits",
            "kafka_audit_topic": f"{name}.audit",
            "kafka_group_id": f"{name}-workers",
            "kafka_partitions": 6,
            "kafka_max_poll_interval_ms": 10_000,
            "kafka_session_timeout_ms": 6_000,
            "milvus_uri": f"http://127.0.0.1:{milvus_port}",
            "milvus_collection": f"{name}_articles",
            "milvus_search_consistency": "Strong",
            "milvus_timeout_s": 5.0,
            "embedding_cache_dir": self._model_cache_dir,
            # fp32 torch: no int8 export on a fresh machine; one thread per process (2 cores)
            "embedding_backend": "torch",
            "embedding_threads": 1,
            "dedup_backend": "redis",
            "dedup_redis_url": f"redis://127.0.0.1:{redis_port}/0",
            "dedup_redis_basename": f"{name}:dedup",
            "api_rate_limit_redis_url": f"redis://127.0.0.1:{redis_port}/1",
            "fetch_allow_networks": ["127.0.0.1/32"],
            "feeds_file": feeds_file,
            # Feeds polled every few seconds, so a dead producer's feeds are seen polled by the
            # other within a test (the default is every 5 minutes).
            "poll_interval_s": 3.0,
            "poll_interval_min_s": 2.0,
            "poll_interval_max_s": 5.0,
            "worker_batch_size": 16,
            "worker_batch_time_s": 0.3,
            "worker_retry_max_backoff_s": 2.0,
            "log_level": "INFO",
        }
        values.update(self._overrides)
        self.settings = Settings(**values)
        ensure_topics(self.settings)
        assert self.milvus is not None
        self.milvus.wait_listening(120)
        if not wait_for_milvus(self.settings.milvus_uri or "", 120):
            raise AssertionError(f"the Milvus server did not answer: {self.milvus.tail()}")
        self.milvus.metrics_port = milvus_metrics_port(self.milvus.pid)
        for _ in range(self._want["workers"]):
            self.add_worker()
        for _ in range(self._want["apis"]):
            self.add_api()
        trends_port = free_port()
        self.trends = self._service(
            "trends",
            ["trends", "--every", "1"],
            trends_port,
            NEWSSTREAM_METRICS_PORT=str(trends_port),
        )
        self.trends.metrics_port = trends_port
        self.trends.start()
        for _ in range(self._want["producers"]):
            self.add_producer()
        for service in self.services():
            if service.port is not None and service is not self.milvus:
                service.wait_listening(120)
        if self._want_prometheus:
            self.start_prometheus()

    def stop(self) -> None:
        """Stop every process (SIGTERM, SIGKILL after a grace time) and the feed server."""
        for service in reversed(self.services()):
            service.stop(grace_s=10)
        if self.replay is not None:
            self.replay.stop()
            self.replay = None

    def services(self) -> list[Service]:
        """Every process, stores first."""
        stores = [s for s in (self.broker, self.milvus, self.redis) if s is not None]
        others = [s for s in (self.trends, self.prometheus) if s is not None]
        return [*stores, *self.workers, *self.apis, *self.producers, *others]

    # --- services ----------------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def _service(self, name: str, args: list[str], port: int | None, **extra_env: str) -> Service:
        assert self.settings is not None
        env = settings_env(self.settings, NEWSSTREAM_LOG_FILE=str(self._log(name)), **extra_env)
        argv = [sys.executable, "-m", "newsstream", *args]
        return Service(name, argv, env, self.logs / f"{name}.out", port)

    def add_worker(self, port: int | None = None, **extra_env: str) -> Service:
        """Start one more worker of the group (``newsstream consume``) serving /metrics on
        ``port`` (a new free one by default; a former worker's port keeps its scrape target)."""
        port = port or free_port()
        worker = self._service(
            f"worker-{len(self.workers)}",
            ["consume"],
            port,
            NEWSSTREAM_METRICS_PORT=str(port),
            **extra_env,
        )
        worker.metrics_port = port
        if port not in self._worker_ports:
            self._worker_ports.append(port)
        self.workers.append(worker.start())
        return worker

    def add_api(self) -> Service:
        """Start one more API replica (``newsstream serve``; its /metrics is on its own port)."""
        port = free_port()
        api = self._service(f"api-{len(self.apis)}", ["serve"], port, NEWSSTREAM_API_PORT=str(port))
        api.metrics_port = port
        self.apis.append(api.start())
        return api

    def add_producer(self) -> Service:
        """Start one more producer with the same settings as the others."""
        port = free_port()
        producer = self._service(
            f"producer-{len(self.producers)}", ["produce"], port, NEWSSTREAM_METRICS_PORT=str(port)
        )
        producer.metrics_port = port
        self.producers.append(producer.start())
        return producer

    def live_workers(self) -> list[Service]:
        return [w for w in self.workers if w.alive()]

    def api_url(self, replica: int = 0) -> str:
        return f"http://127.0.0.1:{self.apis[replica].port}"

    def restart(self, service: Service, timeout_s: float = 120) -> None:
        """Start ``service`` again in place (same argv, port and data) and wait until it listens."""
        assert not service.alive(), f"{service.name} still runs"
        service.start().wait_listening(timeout_s)
        if service is self.milvus:
            assert self.settings is not None
            if not wait_for_milvus(self.settings.milvus_uri or "", timeout_s):
                raise AssertionError(f"the Milvus server did not answer again: {service.tail()}")
            service.metrics_port = milvus_metrics_port(service.pid)
            if self.prometheus is not None:
                self.reload_prometheus()

    # --- Prometheus --------------------------------------------------------------------------

    def scrape_targets(self) -> dict[str, list[str]]:
        """The project's scrape jobs with this topology's local ports."""

        def local(*ports: int | None) -> list[str]:
            return [f"127.0.0.1:{p}" for p in ports if p is not None]

        assert self.milvus is not None and self.trends is not None
        return {
            "producer": local(*(p.metrics_port for p in self.producers)),
            "worker": local(*self._worker_ports),
            "api": local(*(a.port for a in self.apis)),
            "trends": local(self.trends.metrics_port),
            "milvus": local(self.milvus.metrics_port),
            "prometheus": local(self.prometheus.port if self.prometheus else None),
        }

    def _write_prometheus_files(self, directory: Path) -> None:
        """Copies of infra/prometheus/{prometheus,alerts}.yml for this topology.

        Changed in the copy, nothing else: every job's targets (the local ports), the scrape
        and evaluation intervals (1 s instead of 15 s) and the ``for:`` of the availability
        rules (:data:`SHORT_FOR`: 2 s instead of 2 minutes), so a process that is down makes
        its alert fire within seconds here. The other rules keep their ``for:`` (10 minutes
        and more: they cannot fire within a test; the startup backlog makes the
        time-to-searchable rule pending for real, and a steady state must not fire it).
        """
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        targets = self.scrape_targets()
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        assert jobs == set(targets), (
            f"jobs of prometheus.yml {jobs} != the topology's {set(targets)}"
        )
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
            job["scrape_timeout"] = "1s"
        rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") in SHORT_FOR:
                    rule["for"] = "2s"
        (directory / "alerts.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def start_prometheus(self) -> Service:
        """The real ``prometheus`` binary on the project's config (see :meth:`_write_prometheus_files`)."""
        exe = shutil.which("prometheus")
        assert exe is not None, "prometheus is not installed (make test installs it)"
        directory = self.base / "prometheus"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.prometheus = Service(
            "prometheus",
            [
                exe,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            dict(os.environ),
            self._log("prometheus"),
            port,
        )
        self._write_prometheus_files(directory)
        self.prometheus.start().wait_listening(30)
        return self.prometheus

    def reload_prometheus(self) -> None:
        """Rewrite the copies (new ports) and make Prometheus read them again."""
        assert self.prometheus is not None
        self._write_prometheus_files(self.base / "prometheus")
        response = httpx.post(f"http://127.0.0.1:{self.prometheus.port}/-/reload", timeout=10)
        assert response.status_code == 200, response.text

    def prometheus_api(self, path: str) -> Any:
        """``data`` of a Prometheus HTTP API answer (``/api/v1/<path>``)."""
        assert self.prometheus is not None
        response = httpx.get(f"http://127.0.0.1:{self.prometheus.port}/api/v1/{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def target_health(self) -> dict[tuple[str, str], str]:
        """(job, instance) -> health (up, down, unknown) of every active target."""
        return {
            (t["labels"]["job"], t["labels"]["instance"]): t["health"]
            for t in self.prometheus_api("targets")["activeTargets"]
        }

    def alerts(self, state: str = "firing") -> list[dict[str, Any]]:
        """The alerts in ``state`` (firing or pending)."""
        return [a for a in self.prometheus_api("alerts")["alerts"] if a["state"] == state]

    # --- data --------------------------------------------------------------------------------

    def publish(self, articles: list[Article]) -> set[str]:
        """Publish ``articles`` as a producer does; the ids Kafka acknowledged."""
        assert self.settings is not None
        publisher = Publisher(self.settings, client_id="topology-test")
        try:
            return publisher.publish(articles, timeout_s=60)
        finally:
            publisher.close()

    def ledger(self) -> dict[str, LedgerRecord]:
        """Each id's latest ledger record (records of one id share a partition, in order)."""
        assert self.settings is not None
        latest: dict[str, LedgerRecord] = {}
        for message in read_topic(self.settings, self.settings.kafka_ledger_topic):
            if message.value() is None:
                continue
            record = LedgerRecord.from_bytes(message.value())
            latest[record.article_id] = record
        return latest

    def input_ids(self) -> list[str]:
        """The key (article id) of every message of the articles topic, repeats included."""
        assert self.settings is not None
        return [m.key().decode() for m in read_topic(self.settings, self.settings.kafka_topic)]


def milvus_metrics_port(pid: int) -> int | None:
    """The metrics port the 2.3.5 server was given (``METRICS_PORT`` of its environment: the
    launcher picks a free one and execs the server, so the pid is the server's)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"METRICS_PORT="):
            return int(entry.split(b"=", 1)[1])
    return None
