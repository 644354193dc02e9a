"""The trends app: a faust-streaming agent that folds search events into trends and publishes
them as status snapshots (kind ``trends``, keys ``1h`` and ``24h``) for ``GET /trends``.

What goes in: :mod:`core.search_events` messages from ``settings.kafka_search_events_topic``.
What comes out: every ``publish_every_s`` seconds (when they changed, and at least once a
minute), the snapshot of each window on ``settings.kafka_status_topic`` under
``trends:1h`` / ``trends:24h`` (see :meth:`trends.windows.TrendsAggregator.snapshot`).
Invalid events are counted and skipped: trends are advisory, a bad event never stops them.

Why a faust agent feeding :class:`trends.windows.TrendsAggregator`, and not faust windowed
tables (``Table(...).tumbling(...)``). Windowed tables were tried against the local broker and
run, but they do not fit this job:

- Ranking needs every key of a window: a windowed table can only be iterated with a
  ``key_index`` (a second table and a second changelog write per new key), and
  ``relative_to_now()`` inside a stream uses faust's "latest timestamp seen on the partition",
  which starts at 0: the first events all landed in the window ``(0, 3599.9)``. Only
  ``relative_to_field`` (event time) gave right windows.
- A table caps nothing: every distinct query (hostile user text) becomes a key until its window
  expires, and costs a changelog message. The aggregator caps keys per window and evicts the
  smallest.
- Tables are partitioned by key, so top-N over several partitions needs a second,
  repartitioning stage; changelogs must have the source topic's partition count.
- Table recovery reads each changelog up to its high watermark, which Tansu 0.6 reports wrong
  for multi-record batches (too low): a restarted app would recover part of its state silently.

Recovery instead: the source topic is consumed with ``acks=False``, so faust never commits an
offset and every start (or a standby taking over the partition) replays the retained events
from the earliest offset; the aggregator ignores events older than two windows (48 h). Keep
the topic's retention near two days (``retention.ms=172800000``) so that replay stays short.
Nothing is published before the first event arrives (or twice the rebalance timeout passed),
so a restart does not blank the previous snapshots during its join; snapshots published
during a replay are partial until it has caught up (without trustworthy watermarks on the
local broker there is no "caught up" signal to wait for).

Scaling: run one instance. A second instance in the same group (the app id is derived from the
topic name) stays idle on a one-partition topic and takes over on failure.

Against the local broker (Tansu): a group join completes only after the rebalance timeout, so
``broker_rebalance_timeout`` and ``broker_max_poll_interval`` come from
``settings.kafka_max_poll_interval_ms`` (10 s in tests and under ``up``) and the session timeout
from ``settings.kafka_session_timeout_ms``. faust talks to Kafka through aiokafka, not
librdkafka: ``settings.kafka_consumer_config`` / ``kafka_producer_config`` (librdkafka
passthrough) do not apply to it; the status snapshots themselves go through the librdkafka
:class:`core.status.StatusPublisher`, which does use them. faust's web server is off, its
tables store is ``memory://`` and its data dir is ``<data dir>/trends``. Metrics are not
faust's either: ``newsstream trends`` serves the process's prometheus-client registry at
``/metrics`` on ``settings.metrics_port``, like the producer and the workers, so Prometheus and
the compose health check see a live process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import faust

from core.errors import InvalidMessage
from core.kafka import ensure_topics
from core.search_events import decode
from core.settings import Settings
from core.status import StatusPublisher
from trends.windows import TrendsAggregator

log = logging.getLogger(__name__)

#: A snapshot that did not change is still republished after this many seconds.
HEARTBEAT_S = 60.0


class TrendsState:
    """The aggregator behind a lock (the agent adds on the event loop, the status publishers
    read on their threads), and the change detection of published snapshots."""

    def __init__(
        self,
        aggregator: TrendsAggregator | None = None,
        clock: Callable[[], float] = time.time,
        quiet_start_s: float = 0.0,
    ) -> None:
        self.aggregator = aggregator or TrendsAggregator()
        self._clock = clock
        # Until the first event arrives (or quiet_start_s passed), an empty snapshot would only
        # hide the previous run's trends while the group join and the replay are under way.
        self._quiet_until = time.monotonic() + quiet_start_s
        self._lock = threading.Lock()
        self._published: dict[str, tuple[float, str]] = {}
        self.consumed = 0
        self.invalid = 0

    def add(self, value: bytes | None) -> bool:
        """Fold one message value in; False (and counted) when it breaks the contract."""
        try:
            event = decode(value)
        except InvalidMessage as exc:
            with self._lock:
                self.invalid += 1
            log.debug("invalid search event skipped: %s", exc)
            return False
        with self._lock:
            self.consumed += 1
            self.aggregator.add(event, self._clock())
        return True

    def snapshot(self, window: str) -> dict[str, Any]:
        """The current trends of ``window`` (always computed)."""
        with self._lock:
            snap = self.aggregator.snapshot(window, self._clock())
            snap["consumed"] = self.consumed
            snap["invalid"] = self.invalid
            return snap

    def changed_snapshot(self, window: str) -> dict[str, dict[str, Any]]:
        """``{window: snapshot}`` when it changed or is due again, else ``{}`` (StatusPublisher
        publishes nothing for an empty dict: the status topic grows only with news)."""
        now = time.monotonic()
        if self.consumed == 0 and self.invalid == 0 and now < self._quiet_until:
            return {}
        snap = self.snapshot(window)
        body = json.dumps(snap, sort_keys=True)
        last = self._published.get(window)
        if last is not None and last[1] == body and now - last[0] < HEARTBEAT_S:
            return {}
        self._published[window] = (now, body)
        return {window: snap}


def app_id(settings: Settings) -> str:
    """The faust app id (also its consumer group): one per search-events topic."""
    return f"newsstream-trends.{settings.kafka_search_events_topic}"


def build_app(settings: Settings, state: TrendsState) -> Any:
    """The faust app whose agent feeds ``state`` from the search-events topic."""
    if not settings.kafka_bootstrap:
        raise ValueError("kafka_bootstrap is required")
    session_s = settings.kafka_session_timeout_ms / 1000.0
    poll_s = settings.kafka_max_poll_interval_ms / 1000.0
    datadir = settings.data_dir / "trends"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id(settings),
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(0.5, session_s / 5),
        broker_rebalance_timeout=poll_s,
        broker_max_poll_interval=poll_s,
        broker_request_timeout=max(90.0, session_s + 5),
        stream_recovery_delay=0.0,
    )
    # acks=False: faust never commits offsets of this topic, so every start replays the
    # retained events (the module docstring says why).
    topic = app.topic(settings.kafka_search_events_topic, value_serializer="raw", acks=False)

    async def fold(stream: Any) -> None:  # a faust StreamT of raw message values
        async for value in stream:
            state.add(value)

    app.agent(topic, name="newsstream-trends-fold")(fold)
    return app


def _snapshot_of(state: TrendsState, window: str) -> Callable[[], dict[str, dict[str, Any]]]:
    return lambda: state.changed_snapshot(window)


def run_trends(settings: Settings, publish_every_s: float = 5.0) -> int:
    """Run the trends app until SIGTERM or SIGINT; 0 after a clean stop, 1 after a crash."""
    ensure_topics(settings)
    quiet_s = 2 * settings.kafka_max_poll_interval_ms / 1000.0 + 5.0
    state = TrendsState(quiet_start_s=quiet_s)
    app = build_app(settings, state)
    publishers = [
        StatusPublisher(
            settings,
            "trends",
            _snapshot_of(state, window),
            every_s=publish_every_s,
        ).start()
        for window in state.aggregator.windows
    ]
    # One publisher per window: a snapshot is then alone in its record batch, which the local
    # broker's watermarks (wrong for multi-record batches) need for read_status to see both.
    worker = faust.Worker(
        app,
        loglevel=None,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
        console_port=0,
    )
    worker.spinner = None  # a terminal spinner writes escape codes into the process's log
    log.info(
        "trends app %s: %s -> %s", app_id(settings), settings.kafka_search_events_topic, "trends"
    )
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    finally:
        for publisher in publishers:
            publisher.close()
    crashed = getattr(app, "crash_reason", None)
    if crashed is not None:
        log.error("trends app crashed: %r", crashed)
        return 1
    log.info("trends app stopped (%d events, %d invalid)", state.consumed, state.invalid)
    return 0
