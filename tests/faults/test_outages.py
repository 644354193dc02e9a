"""Outage fault tests: Milvus stopped under load, the broker restarted, workers joining and leaving.

Each test runs real worker processes (`newsstream consume`) against the real local broker and a
Milvus Lite server, and ends with the oracle of ``test_worker_faults.py``: after lag 0, at
Strong consistency, the ids in Milvus equal the ledger of produced ids (none of these articles
is rejected or a duplicate) and count(*) equals the number of distinct ids.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.article import Article
from core.kafka import ensure_topics
from core.settings import Settings
from core.status import read_status
from newsstream.stack.launchers import free_port, milvus_lite_command, tansu_command
from newsstream.stack.proctree import stop_process
from producers.publisher import Publisher

from conftest import LocalServer, require_shared_data
from feeder import Feeder
from probes import (
    milvus_count,
    milvus_ids,
    read_topic,
    topic_ends,
    total_lag,
    wait_for_lag_zero,
    wait_until,
)
from worker_procs import bbc_articles, start_worker

pytestmark = pytest.mark.faults


def _articles(limit: int, offset: int = 0) -> list[Article]:
    articles = list(bbc_articles(require_shared_data("eval", "bbc-news"), limit, offset))
    assert len(articles) == limit, "not enough BBC articles for this test's ledger"
    return articles


@pytest.fixture(scope="module")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the module's workers, so the int8 model is exported only once."""
    return tmp_path_factory.mktemp("outages-data")


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _assert_oracle(settings: Settings, ledger: set[str], timeout_s: float = 150) -> None:
    wait_for_lag_zero(settings, timeout_s)
    ids = milvus_ids(settings)
    count = milvus_count(settings)
    assert ids == ledger, f"{len(ledger - ids)} missing, {len(ids - ledger)} unexpected"
    assert count == len(ledger), f"count(*) {count} for {len(ledger)} distinct ids"


def _assert_dlq_empty(settings: Settings) -> None:
    dlq = read_topic(settings, settings.kafka_dlq_topic)
    assert dlq == [], f"{len(dlq)} messages in the DLQ; an outage must never go there"


@pytest.fixture
def own_milvus(tmp_path: Path) -> Iterator[LocalServer]:
    """A Milvus Lite server of this test only (it gets SIGSTOPped)."""
    port = free_port()
    server = LocalServer(milvus_lite_command(tmp_path / "milvus", port), port, tmp_path / "m.log")
    server.start(60)
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def test_milvus_stopped_30s_under_load_loses_nothing_and_sends_nothing_to_the_dlq(
    make_settings: Any,
    own_milvus: LocalServer,
    tmp_path: Path,
    unique_name: str,
    shared_data_dir: Path,
) -> None:
    settings = make_settings(
        milvus_uri=f"http://127.0.0.1:{own_milvus.port}",
        kafka_status_topic=f"{unique_name}.status",
        data_dir=shared_data_dir,
        worker_batch_size=32,
    )
    articles = _articles(500)
    ensure_topics(settings)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    feeder = Feeder(settings, articles, chunk=25, every_s=0.5).start()
    try:
        wait_until(lambda: milvus_count(settings) >= 60, 120, "the worker to index under load")
        assert own_milvus.process is not None
        os.kill(own_milvus.process.pid, signal.SIGSTOP)
        time.sleep(30)
        # Mid-outage: the worker is alive, and it did not commit what Milvus never acknowledged.
        assert worker.poll() is None, _log_tail(log)
        lag = total_lag(settings)
        assert lag is not None and lag > 0, f"offsets advanced while Milvus was stopped: lag {lag}"
        os.kill(own_milvus.process.pid, signal.SIGCONT)
        back = time.monotonic()
        ledger = feeder.join(120)
        assert ledger == {a.id for a in articles}
        wait_for_lag_zero(settings, 180)
        recovery_s = time.monotonic() - back
        print(f"\nMilvus outage of 30 s: recovery (Milvus back -> lag 0) took {recovery_s:.1f} s")
        _assert_oracle(settings, ledger)
        _assert_dlq_empty(settings)
        assert worker.poll() is None, _log_tail(log)
    finally:
        assert stop_process(worker) == 0, _log_tail(log)
    _assert_conservation(settings, ledger, workers=1)


def _worker_snapshots(settings: Settings) -> dict[str, dict[str, Any]]:
    return read_status(settings, "worker")


def test_one_two_one_workers_while_articles_flow_lose_nothing(
    make_settings: Any, tmp_path: Path, unique_name: str, shared_data_dir: Path
) -> None:
    settings = make_settings(
        kafka_partitions=4,
        kafka_status_topic=f"{unique_name}.status",
        data_dir=shared_data_dir,
        worker_batch_size=16,
    )
    articles = _articles(600, offset=500)
    ensure_topics(settings)
    first = start_worker(settings, tmp_path / "first.log")
    second = None
    feeder = Feeder(settings, articles, chunk=10, every_s=0.4).start()
    try:
        wait_until(lambda: milvus_count(settings) >= 20, 120, "the first worker to index")
        second = start_worker(settings, tmp_path / "second.log")
        # Both members hold partitions once each has consumed something (joins complete only
        # after the 10 s rebalance timeout on the local broker).
        wait_until(
            lambda: sum(1 for s in _worker_snapshots(settings).values() if s["consumed"]) >= 2,
            90,
            "two workers to share the partitions",
            every_s=2,
        )
        assert stop_process(first, 30) == 0, _log_tail(tmp_path / "first.log")
        ledger = feeder.join(180)
        assert ledger == {a.id for a in articles}
        _assert_oracle(settings, ledger, timeout_s=180)
        assert second.poll() is None, _log_tail(tmp_path / "second.log")
    finally:
        stop_process(first)
        if second is not None:
            assert stop_process(second) == 0, _log_tail(tmp_path / "second.log")
    _assert_conservation(settings, ledger, workers=2)


def _assert_conservation(settings: Settings, ledger: set[str], workers: int) -> None:
    """Every message of the topic was consumed exactly once by the group and ended in one
    outcome, per worker and in total.

    "Consumed" counts a message when the worker hands its offset to the commit: a batch that a
    worker finished after losing its partitions (or abandoned at shutdown) is not counted there
    but by the worker that re-consumes and commits it, so re-deliveries never count twice.
    """
    snapshots = _worker_snapshots(settings)
    assert len(snapshots) == workers, snapshots
    outcomes = ("indexed", "duplicate", "rejected", "dlq")
    for snapshot in snapshots.values():
        assert snapshot["consumed"] == sum(snapshot[o] for o in outcomes), snapshot
    total = {k: sum(s[k] for s in snapshots.values()) for k in ("consumed", *outcomes)}
    messages = sum(topic_ends(settings).values())
    assert messages == len(ledger), f"{messages} messages in the topic for {len(ledger)} ids"
    assert total == {
        "consumed": messages,
        "indexed": len(ledger),
        "duplicate": 0,
        "rejected": 0,
        "dlq": 0,
    }, snapshots


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalServer]:
    """A Tansu broker of this test only, on a fixed port (it gets restarted)."""
    port = free_port()
    broker = LocalServer(tansu_command(port), port, tmp_path / "broker.log")
    broker.start(30)
    yield broker
    broker.stop()


def _restart(broker: LocalServer) -> None:
    broker.stop()
    time.sleep(2)
    broker.start(30)  # the same port; topics, messages and committed offsets are gone


def test_broker_restart_the_worker_reconnects_and_indexes_what_comes_after(
    make_settings: Any,
    own_broker: LocalServer,
    tmp_path: Path,
    unique_name: str,
    shared_data_dir: Path,
) -> None:
    settings = make_settings(
        kafka_bootstrap=f"127.0.0.1:{own_broker.port}",
        kafka_status_topic=f"{unique_name}.status",
        data_dir=shared_data_dir,
        worker_retry_max_backoff_s=5.0,
    )
    before = _articles(100, offset=1100)
    after = _articles(200, offset=1200)
    log = tmp_path / "worker.log"
    ensure_topics(settings)
    worker = start_worker(settings, log)
    try:
        publisher = Publisher(settings, client_id="test-before")
        assert publisher.publish(before) == {a.id for a in before}
        publisher.close()
        wait_until(lambda: milvus_count(settings) >= 50, 120, "indexing before the restart")
        _restart(own_broker)
        ensure_topics(settings)  # what `newsstream produce` does when it starts
        publisher = Publisher(settings, client_id="test-after")
        delivered = publisher.publish(after, timeout_s=60)
        publisher.close()
        assert delivered == {a.id for a in after}
        assert worker.poll() is None, _log_tail(log)
        # Everything produced after the restart is indexed by the same worker process.
        wait_until(
            lambda: {a.id for a in after} <= milvus_ids(settings),
            150,
            "the articles produced after the restart to be indexed",
            every_s=2,
        )
        wait_for_lag_zero(settings, 60)
        assert worker.poll() is None, _log_tail(log)
        ids = milvus_ids(settings)
        assert ids <= {a.id for a in before} | {a.id for a in after}
        assert milvus_count(settings) == len(ids)
    finally:
        code = stop_process(worker)
    assert code == 0, _log_tail(log)


def test_broker_restart_a_long_lived_publisher_delivers_again(
    make_settings: Any, own_broker: LocalServer
) -> None:
    settings = make_settings(kafka_bootstrap=f"127.0.0.1:{own_broker.port}")
    first, second = _articles(20, offset=1400), _articles(20, offset=1420)
    ensure_topics(settings)
    publisher = Publisher(settings, client_id="test-long-lived")
    try:
        assert publisher.publish(first) == {a.id for a in first}
        _restart(own_broker)
        ensure_topics(settings)
        delivered: set[str] = set()
        deadline = time.monotonic() + 40
        while delivered != {a.id for a in second} and time.monotonic() < deadline:
            delivered |= publisher.publish(
                [a for a in second if a.id not in delivered], timeout_s=10
            )
        assert delivered == {a.id for a in second}, "the publisher did not deliver again"
    finally:
        publisher.close(1)
