"""`newsstream up`: the embedded default stack on one machine.

Order: the local broker (unless NEWSSTREAM_KAFKA_BOOTSTRAP is set), the Milvus Lite server
(unless NEWSSTREAM_MILVUS_URI is set), the replay server (with ``--replay``), then the API,
the worker and the producer as supervised child processes that reach Kafka and Milvus over
the network exactly as in production, and the retention sweep (``newsstream retention run``)
when a retention window is set at start (globally or for a feed). Prints the API base URL on a
line of its own, then a live status line (feeds polled, articles indexed; see
:class:`StatusLine`). Ctrl-C or SIGTERM prints a final status line, then stops everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TextIO

import httpx
from prometheus_client.parser import text_string_to_metric_families

from core.errors import ConfigurationError
from core.settings import Settings
from embedding.backend_choice import choice_line
from newsstream.ops.retention import retention_active
from newsstream.stack.launchers import (
    free_port,
    local_milvus_command,
    tansu_command,
    wait_for_milvus,
    wait_for_port,
)
from newsstream.stack.replay import ReplayServer
from newsstream.stack.supervisor import Child, Supervisor
from newsstream.stack.up_marker import RunningUp, remove_marker, write_marker
from producers.feeds import feeds_to_toml

#: Tansu waits the group's rebalance timeout (max.poll.interval.ms) on every join: keep it low.
LOCAL_MAX_POLL_INTERVAL_MS = "10000"


def _service_argv(command: str) -> list[str]:
    return [sys.executable, "-m", "newsstream", command]


def _scrape(port: int) -> dict[str, float]:
    """Sum of each metric family's samples from a /metrics endpoint ({} when unreachable)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1.0).text
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            key = sample.name
            if sample.labels.get("outcome"):
                key = f"{sample.name}:{sample.labels['outcome']}"
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


#: Without a terminal, a changed status is printed at most this often (a log stays short).
PLAIN_STATUS_EVERY_S = 5.0


def metrics_status(producer_port: int, worker_port: int) -> Callable[[], str]:
    """The status text from the producer's and the worker's /metrics.

    A scrape that fails (a child restarting, or already stopped at shutdown) keeps that
    child's last known counters instead of showing zeros.
    """
    known: dict[int, dict[str, float]] = {producer_port: {}, worker_port: {}}

    def read() -> str:
        for port in known:
            scraped = _scrape(port)
            if scraped:
                known[port] = scraped
        producer, worker = known[producer_port], known[worker_port]
        return (
            f"feeds polled {int(producer.get('newsstream_feeds_polled_total', 0))}"
            f" | broken {int(producer.get('newsstream_feeds_broken', 0))}"
            f" | published {int(producer.get('newsstream_entries_published_total', 0))}"
            f" | consumed {int(worker.get('newsstream_messages_consumed_total', 0))}"
            f" | indexed {int(worker.get('newsstream_outcomes_total:indexed', 0))}"
            f" | rejected {int(worker.get('newsstream_outcomes_total:rejected', 0))}"
            f" | dlq {int(worker.get('newsstream_outcomes_total:dlq', 0))}"
        )

    return read


class StatusLine:
    """Prints `up`'s live status line: what ``read()`` returns, each time it is called.

    On a terminal the line is redrawn in place on every call. Without one (a log file), a line
    is printed when it differs from the last one *printed* and ``every_s`` passed since then:
    a state that holds still is therefore always printed within ``every_s`` plus one call,
    however fast it changed before. :meth:`final` prints the state at stop on a line of its
    own, whatever was printed before.
    """

    def __init__(
        self,
        read: Callable[[], str],
        *,
        tty: bool | None = None,
        every_s: float = PLAIN_STATUS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        out: TextIO | None = None,
    ) -> None:
        self._read = read
        self._out = out or sys.stdout
        self._tty = self._out.isatty() if tty is None else tty
        self._every_s = every_s
        self._clock = clock
        self._drawn = ""  # the line on screen (terminal mode)
        self._printed: str | None = None  # the last line printed (log mode)
        self._printed_at = 0.0

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def __call__(self) -> None:
        line = self._read()
        if self._tty:
            self._write("\r" + line.ljust(len(self._drawn)))
            self._drawn = line
            return
        now = self._clock()
        if line != self._printed and (
            self._printed is None or now - self._printed_at >= self._every_s
        ):
            self._write(f"status: {line}\n")
            self._printed = line
            self._printed_at = now

    def final(self) -> None:
        """Print the state now, labelled final, and end the line (called once, at stop)."""
        line = self._read()
        if self._tty:
            self._write("\r" + f"final: {line}".ljust(len(self._drawn)) + "\n")
            self._drawn = ""
        else:
            self._write(f"final status: {line}\n")
        self._printed = line


def run_stack(settings: Settings, replay_dir: Path | None = None) -> int:
    """Run the stack until a stop signal; returns the process exit code."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    supervisor = Supervisor()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        supervisor.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("NEWSSTREAM_")})
    env["NEWSSTREAM_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    replay: ReplayServer | None = None
    status: StatusLine | None = None
    try:
        if settings.kafka_bootstrap is None:
            port = free_port()
            supervisor.add(
                Child("broker", tansu_command(port), env.copy(), logs / "broker.log", restart=True),
                ready=lambda: wait_for_port(port, 0.5),
                timeout_s=30,
            )
            env["NEWSSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
            env.setdefault("NEWSSTREAM_KAFKA_MAX_POLL_INTERVAL_MS", LOCAL_MAX_POLL_INTERVAL_MS)
            print(f"local broker (Tansu, in memory): 127.0.0.1:{port}", flush=True)
        if settings.milvus_uri is None:
            port = free_port()
            milvus_uri = f"http://127.0.0.1:{port}"
            argv = local_milvus_command(settings.local_milvus, data_dir, port)
            supervisor.add(
                Child("milvus", argv, env.copy(), logs / "milvus.log"),
                ready=lambda: wait_for_port(port, 0.5) and wait_for_milvus(milvus_uri, 5),
                timeout_s=120,
            )
            env["NEWSSTREAM_MILVUS_URI"] = milvus_uri
            name = {"server": "Milvus 2.3 standalone server", "lite": "Milvus Lite server"}
            print(
                f"local {name[settings.local_milvus]}: {milvus_uri} (data in {data_dir})",
                flush=True,
            )
        if replay_dir is not None:
            replay = ReplayServer(replay_dir).start()
            feeds = replay.feeds()
            if not feeds:
                raise ConfigurationError(
                    f"--replay: no feed files (*.xml, *.rss, *.atom) in {replay_dir}"
                )
            feeds_file = data_dir / "replay-feeds.toml"
            feeds_file.write_text(feeds_to_toml(feeds), encoding="utf-8")
            env["NEWSSTREAM_FEEDS_FILE"] = str(feeds_file)
            env["NEWSSTREAM_FETCH_ALLOW_NETWORKS"] = json.dumps(["127.0.0.1/32"])
            print(
                f"replaying {len(feeds)} feeds from {replay_dir} at {replay.base_url}", flush=True
            )
        api_port = settings.api_port or free_port()
        producer_metrics, worker_metrics = free_port(), free_port()

        def service_env(name: str, **extra: str) -> dict[str, str]:
            child_env = env.copy()
            child_env["NEWSSTREAM_LOG_FILE"] = str(logs / f"{name}.log")
            child_env.update(extra)
            return child_env

        # What `auto` chooses on this machine, and why: resolved once here (a first start
        # exports and measures; later ones read the record) so the API and the worker read
        # the cached record instead of measuring side by side.
        print(choice_line(settings, env), flush=True)
        supervisor.add(
            Child(
                "api",
                _service_argv("serve"),
                service_env("api", NEWSSTREAM_API_PORT=str(api_port)),
                logs / "api.out",
            ),
        )
        supervisor.add(
            Child(
                "worker",
                _service_argv("consume"),
                service_env("worker", NEWSSTREAM_METRICS_PORT=str(worker_metrics)),
                logs / "worker.out",
            ),
        )
        supervisor.add(
            Child(
                "trends",
                _service_argv("trends"),
                service_env("trends"),
                logs / "trends.out",
            ),
        )
        # One producer, on the same sharded path as a deployment of several: it publishes the
        # local feeds to the feeds topic and joins the producers' group, which gives it every
        # feed. The join waits the local broker's rebalance timeout (about 6 s with
        # LOCAL_MAX_POLL_INTERVAL_MS), while the worker waits the same for its own group, so
        # the first article is not searchable any later.
        supervisor.add(
            Child(
                "producer",
                _service_argv("produce"),
                service_env("producer", NEWSSTREAM_METRICS_PORT=str(producer_metrics)),
                logs / "producer.out",
            ),
        )
        if retention_active(settings):
            supervisor.add(
                Child(
                    "retention",
                    [*_service_argv("retention"), "run"],
                    service_env("retention"),
                    logs / "retention.out",
                ),
            )
        api_url = f"http://127.0.0.1:{api_port}"
        # How `search`, `stats`, `dlq` and `reconcile` find this stack (newsstream.stack.up_marker).
        write_marker(
            data_dir,
            RunningUp(
                pid=os.getpid(),
                api=api_url,
                kafka_bootstrap=env.get("NEWSSTREAM_KAFKA_BOOTSTRAP") or settings.kafka_bootstrap,
                milvus_uri=env.get("NEWSSTREAM_MILVUS_URI") or settings.milvus_uri,
            ),
        )
        print(f"logs: {logs}", flush=True)
        print("API and dashboard (Ctrl-C stops everything):", flush=True)
        print(api_url, flush=True)
        print(f"dashboard: {api_url}/dashboard", flush=True)
        status = StatusLine(metrics_status(producer_metrics, worker_metrics))
        supervisor.on_status = status
        supervisor.watch()
        return 0
    except ConfigurationError as exc:
        print(f"newsstream up: {exc}", file=sys.stderr, flush=True)
        return 2
    except RuntimeError as exc:
        print(f"newsstream up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if status is not None:
            status.final()  # before the children stop: their /metrics still answer
        print("stopping...", flush=True)
        supervisor.stop()
        if replay is not None:
            replay.stop()
        with contextlib.suppress(OSError):
            remove_marker(data_dir)
        print("stopped.", flush=True)
