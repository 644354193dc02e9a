"""The production topology as real processes, faults injected in order on one running topology.

The topology (:mod:`topology`): the session's Tansu broker, a PyPI ``milvus`` 2.3.5 server, a
``redis-server`` of its own, two producers sharing two replayed news feeds, three workers with
the Redis dedup backend, two API replicas counting rate limits in Redis, the trends service and
the real Prometheus on the project's own config and rules. It starts once for the module; the
tests run in file order and each leaves it as the next one expects (the group at lag 0).

The oracle, after every fault: every id of the articles topic has an outcome in the ledger
topic; the ids whose latest outcome is ``indexed`` are exactly the ids in Milvus (Strong), and
count(*) equals their number (no row twice); nothing went to the DLQ. The last test adds the
per-worker outcome counters scraped from every worker process that ever ran: each worker's
consumed equals the sum of its outcomes, and the sum over the workers equals the messages of
the topic. Recovery times are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from metrics_scrape import scrape

from core.article import Article
from core.ids import article_id
from core.ledger import LedgerOutcome
from core.settings import Settings

from conftest import require_shared_data
from feeder import Feeder
from probes import milvus_count, milvus_ids, read_topic, total_lag, wait_for_lag_zero, wait_until
from topology import Topology
from topology_service import Service, worker_counters
from worker_procs import bbc_articles

# The first test also waits for the topology to start: ten processes, five of them loading the
# model, which takes minutes on two busy cores.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

#: Two small replayed feeds (MercoPress, CS Monitor: 20 entries): the producer's share of the load.
FEEDS = ("e8fa5b64a4b41322.xml", "4179e7a13df0f120.xml")
OUTCOMES = ("indexed", "duplicate", "rejected", "dlq", "deleted", "expired")


@pytest.fixture(scope="module")
def topo(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, model_cache_dir: Path
) -> Iterator[Topology]:
    for binary in ("redis-server", "prometheus"):  # both in the Makefile's debs list
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (make test installs the Debian package)")
    if importlib.util.find_spec("milvus") is None:
        pytest.skip("the PyPI milvus 2.3.5 server is not installed (the `local` extra)")
    feeds_dir = require_shared_data("feeds", "news")
    require_shared_data("eval", "bbc-news")
    base = tmp_path_factory.mktemp("topology")
    with Topology(
        base,
        kafka_bootstrap,
        model_cache_dir,
        producers=2,
        feeds=[feeds_dir / name for name in FEEDS],
    ).start() as topology:
        yield topology


@pytest.fixture(scope="module")
def retired() -> dict[str, dict[str, float]]:
    """Final counters of the workers stopped along the way, by process name."""
    return {}


def _settings(topo: Topology) -> Settings:
    assert topo.settings is not None
    return topo.settings


def _articles(limit: int, offset: int) -> list[Article]:
    articles = list(bbc_articles(require_shared_data("eval", "bbc-news"), limit, offset))
    assert len(articles) == limit
    return articles


def _assert_alive(topo: Topology) -> None:
    """Every process but the workers (the tests stop and add those) still runs."""
    for service in topo.services():
        if service not in topo.workers:
            assert service.alive(), f"{service.name} exited: {service.tail()}"


def _assert_oracle(topo: Topology, timeout_s: float = 120) -> dict[str, Any]:
    """The module docstring's oracle; returns the ledger's latest records by id."""
    settings = _settings(topo)
    wait_for_lag_zero(settings, timeout_s)
    inputs = set(topo.input_ids())
    ledger = topo.ledger()
    missing = inputs - set(ledger)
    assert not missing, f"{len(missing)} ids of the topic have no outcome in the ledger"
    indexed = {i for i, r in ledger.items() if r.outcome is LedgerOutcome.INDEXED}
    ids = milvus_ids(settings)
    assert ids == indexed, f"{len(indexed - ids)} indexed not in Milvus, {len(ids - indexed)} extra"
    count = milvus_count(settings)
    assert count == len(ids), f"count(*) {count} for {len(ids)} distinct ids: a row twice"
    dlq = read_topic(settings, settings.kafka_dlq_topic)
    assert dlq == [], f"{len(dlq)} messages in the DLQ; an outage must never go there"
    return ledger


def _search(topo: Topology, replica: int) -> int:
    try:
        response = httpx.get(
            f"{topo.api_url(replica)}/search", params={"q": "economy growth"}, timeout=15
        )
    except httpx.HTTPError:
        return 0
    return response.status_code


def _lag(topo: Topology) -> int:
    lag = total_lag(_settings(topo))
    assert lag is not None, "the broker did not answer the lag probe"
    return lag


def test_prometheus_scrapes_every_process_and_nothing_fires_in_steady_state(
    topo: Topology,
) -> None:
    wait_for_lag_zero(_settings(topo), 120)  # the producer's first poll is indexed
    expected = {(job, t) for job, targets in topo.scrape_targets().items() for t in targets}
    assert len(expected) == 10, expected  # 2 producers, 3 workers, 2 APIs, trends, Milvus, itself
    wait_until(
        lambda: topo.target_health() == dict.fromkeys(expected, "up"),
        30,
        "Prometheus to scrape every process of the topology",
    )
    time.sleep(3)  # a few more evaluations of every rule
    assert topo.alerts("firing") == []
    _assert_alive(topo)


def test_near_duplicates_on_different_partitions_are_caught_across_workers(
    topo: Topology,
) -> None:
    """One story, six copies under six URLs, one per partition, published at once: the three
    workers race on them through the shared Redis index and exactly one row is kept."""
    settings = _settings(topo)
    (story,) = _articles(1, offset=0)
    copies = [
        story.model_copy(update={"id": article_id(link=url), "url": url, "source": f"s{p}.example"})
        for p, url in enumerate(f"https://s{p}.example/copy" for p in range(6))
    ]
    before = {w.name: worker_counters(w.metrics_port or 0) for w in topo.workers}
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for partition, copy in enumerate(copies):
        producer.produce(
            settings.kafka_topic,
            key=copy.id.encode(),
            value=copy.to_bytes(),
            partition=partition,
            headers=[("produced_at", str(int(time.time() * 1000)).encode())],
        )
    assert producer.flush(30) == 0
    ledger = _assert_oracle(topo)
    outcomes = Counter(ledger[c.id].outcome for c in copies)
    assert outcomes == {LedgerOutcome.INDEXED: 1, LedgerOutcome.DUPLICATE: 5}, outcomes
    (kept,) = [c.id for c in copies if ledger[c.id].outcome is LedgerOutcome.INDEXED]
    assert {ledger[c.id].duplicate_of for c in copies if c.id != kept} == {kept}
    # Six partitions over three members: every worker decided at least one copy.
    deciders = {ledger[c.id].worker for c in copies}
    assert len(deciders) == 3, deciders
    after = {w.name: worker_counters(w.metrics_port or 0) for w in topo.workers}
    for name, counters in after.items():
        assert counters is not None and before[name] is not None
        assert counters["consumed"] > before[name]["consumed"], name


def _outage_load(topo: Topology, offset: int) -> tuple[Feeder, list[Article]]:
    articles = _articles(60, offset=offset)
    start = milvus_count(_settings(topo))
    feeder = Feeder(topo.settings, articles, chunk=6, every_s=0.5).start()
    wait_until(lambda: milvus_count(_settings(topo)) >= start + 12, 60, "indexing before the fault")
    return feeder, articles


def _backpressure(topo: Topology, what: str) -> None:
    """Mid-outage: every worker alive, offsets held back (lag), nothing in the DLQ."""
    wait_until(lambda: _lag(topo) > 0, 20, f"lag to build up while {what} is away")
    time.sleep(3)
    for worker in topo.live_workers():
        assert worker.alive(), worker.tail()
    assert len(topo.live_workers()) == 3
    assert _lag(topo) > 0, f"offsets advanced while {what} was away"


def test_redis_killed_under_load_backpressure_then_no_loss_and_no_row_twice(
    topo: Topology,
) -> None:
    assert topo.redis is not None
    feeder, articles = _outage_load(topo, offset=10)
    topo.redis.kill9()
    _backpressure(topo, "Redis")
    # The API counts its rate limits in Redis; without it each replica counts its own.
    assert [_search(topo, 0), _search(topo, 1)] == [200, 200]
    for api in topo.apis:
        samples = scrape(api.port or 0) or {}
        fallbacks = samples.get("newsstream_api_rate_limit_fallbacks_total", [])
        assert sum(s.value for s in fallbacks) > 0, f"{api.name} did not count in Redis"
    topo.restart(topo.redis, 20)
    back = time.monotonic()
    assert feeder.join(120) == {a.id for a in articles}
    wait_for_lag_zero(_settings(topo), 120)
    print(f"\nRedis killed: lag 0 {time.monotonic() - back:.1f} s after it was started again")
    ledger = _assert_oracle(topo)
    assert all(ledger[a.id].outcome is LedgerOutcome.INDEXED for a in articles)
    _assert_alive(topo)


def test_milvus_killed_under_load_api_503_then_recovers_by_itself_no_loss_no_row_twice(
    topo: Topology,
) -> None:
    assert topo.milvus is not None
    feeder, articles = _outage_load(topo, offset=80)
    api_pids = [a.pid for a in topo.apis]
    topo.milvus.kill9()
    killed = time.monotonic()
    wait_until(
        lambda: [_search(topo, 0), _search(topo, 1)] == [503, 503],
        30,
        "both API replicas to answer 503 while Milvus is away",
    )
    _backpressure(topo, "Milvus")
    topo.restart(topo.milvus, 120)
    back = time.monotonic()
    assert feeder.join(120) == {a.id for a in articles}
    wait_until(
        lambda: [_search(topo, 0), _search(topo, 1)] == [200, 200],
        90,
        "both API replicas to answer again without a restart",
    )
    api_s = time.monotonic() - back
    wait_until(lambda: _lag(topo) == 0, 150, "the worker group to reach lag 0", 1)
    print(
        f"\nMilvus killed: answering again {back - killed:.1f} s after the kill (restart "
        f"included); from then, API 200 after {api_s:.1f} s, lag 0 after "
        f"{time.monotonic() - back:.1f} s"
    )
    assert [a.pid for a in topo.apis] == api_pids  # the same API processes, never restarted
    ledger = _assert_oracle(topo)
    assert all(ledger[a.id].outcome is LedgerOutcome.INDEXED for a in articles)
    _assert_alive(topo)


def _stop_at_rest(topo: Topology, worker: Service, retired: dict[str, dict[str, float]]) -> None:
    """Stop ``worker`` gracefully with the group at lag 0, its counters read last: at rest it
    counts nothing more, so they are its final ones."""
    wait_for_lag_zero(_settings(topo), 120)
    counters = worker_counters(worker.metrics_port or 0)
    assert counters is not None, worker.tail()
    assert worker.stop() == 0, worker.tail()
    retired[worker.name + f"@{worker.pid}"] = counters
    # The local broker completes the rebalance a leave starts only after the group's rebalance
    # timeout; a second member leaving before then left the group stuck (every member waiting,
    # nothing consumed). Let the group settle first, as an orchestrator scaling down one pod at
    # a time does.
    time.sleep(_settings(topo).kafka_max_poll_interval_ms / 1000 + 2)


def test_workers_one_three_one_with_one_killed_ledger_and_counters_add_up(
    topo: Topology, retired: dict[str, dict[str, float]]
) -> None:
    settings = _settings(topo)
    first, second, third = topo.workers[:3]
    # 3 -> 1
    for worker in (second, third):
        _stop_at_rest(topo, worker, retired)
    ones = _articles(20, offset=150)
    assert topo.publish(ones) == {a.id for a in ones}
    # 1 -> 3: one of the two new workers dies by SIGKILL right after its first upsert returned,
    # before the batch's ledger records and commit (the failpoint of consumers/failpoints.py):
    # its batch is delivered again to the others, and it has counted nothing.
    assert second.metrics_port is not None and third.metrics_port is not None
    newcomer = topo.add_worker(second.metrics_port)
    doomed = topo.add_worker(third.metrics_port, NEWSSTREAM_FAILPOINTS="after_upsert")
    for worker in (newcomer, doomed):  # /metrics answers once the model is loaded
        worker.wait_listening(240)
    # Load until the doomed worker got partitions and a batch to upsert (joins complete after
    # the 10 s rebalance timeout on the local broker), then more load while the group recovers.
    pool = _articles(120, offset=170)
    feeder = Feeder(
        topo.settings, pool, chunk=4, every_s=1.0, until=lambda: not doomed.alive()
    ).start()
    wait_until(lambda: not doomed.alive(), 120, "the worker with the failpoint to die")
    killed = time.monotonic()
    assert doomed.process is not None and doomed.process.returncode == -9, doomed.tail()
    threes = [a for a in pool if a.id in feeder.join(60)]
    after_kill = _articles(20, offset=290)
    feeder = Feeder(topo.settings, after_kill, chunk=4, every_s=0.5).start()
    # Prometheus sees the dead worker's target down and fires WorkerDown for it (and only it).
    instance = f"127.0.0.1:{third.metrics_port}"

    def worker_down_fires() -> bool:
        firing = [a for a in topo.alerts("firing") if a["labels"]["alertname"] == "WorkerDown"]
        return [a["labels"]["instance"] for a in firing] == [instance]

    wait_until(worker_down_fires, 30, f"WorkerDown to fire for {instance}")
    assert {a["labels"]["alertname"] for a in topo.alerts("firing")} == {"WorkerDown"}
    assert feeder.join(120) == {a.id for a in after_kill}
    wait_until(lambda: _lag(topo) == 0, 150, "lag 0 after the kill", 1)
    print(f"\nworker killed (SIGKILL mid-batch): lag 0 {time.monotonic() - killed:.1f} s after")
    # 3 -> 1 (two live: first and newcomer)
    _stop_at_rest(topo, newcomer, retired)
    last = _articles(20, offset=310)
    assert topo.publish(last) == {a.id for a in last}
    ledger = _assert_oracle(topo)
    for article in [*ones, *threes, *after_kill, *last]:
        assert ledger[article.id].outcome is LedgerOutcome.INDEXED, article.id

    # Conservation over every worker process that ran: the three first ones, the newcomer and
    # the killed one (no commit, so nothing counted: a count there would break the sum).
    live = worker_counters(first.metrics_port or 0)
    assert live is not None, first.tail()
    per_worker = {**retired, first.name: live}
    assert len(per_worker) == 4, per_worker
    for name, counters in per_worker.items():
        assert counters["consumed"] == sum(counters.get(o, 0) for o in OUTCOMES), (name, counters)
    totals = {k: sum(c.get(k, 0) for c in per_worker.values()) for k in ("consumed", *OUTCOMES)}
    inputs = topo.input_ids()
    assert totals["consumed"] == len(inputs), (totals, len(inputs), per_worker)
    if len(set(inputs)) == len(inputs):  # one message per id: the ledger counts messages too
        by_outcome = Counter(r.outcome.value for r in ledger.values())
        assert {o: totals[o] for o in ("indexed", "duplicate", "rejected")} == {
            o: by_outcome.get(o, 0) for o in ("indexed", "duplicate", "rejected")
        }, (totals, by_outcome)
    assert settings.kafka_partitions == 6


def _feed_fetches(topo: Topology) -> dict[str, float]:
    """Each feed's last fetch time, as the producers report it through the API's /feeds."""
    answer = httpx.get(f"{topo.api_url()}/feeds", timeout=10)
    assert answer.status_code == 200, answer.text
    return {f["feed_id"]: float(f.get("last_fetch_at") or 0) for f in answer.json()["feeds"]}


def test_a_producer_killed_fires_service_down_and_its_feeds_are_polled_by_the_other(
    topo: Topology,
) -> None:
    """kill -9 a producer that owns a feed: Prometheus fires ServiceDown for it (and only for
    it), and every feed is fetched again after the kill, so the survivor took the dead one's
    (tests/faults/test_producer_failover.py checks that it resumes from the dead one's state)."""
    polled = {
        p.name: sum(
            sample.value
            for sample in (scrape(p.metrics_port or 0) or {}).get(
                "newsstream_feeds_polled_total", []
            )
        )
        for p in topo.producers
    }
    owners = [p for p in topo.producers if polled[p.name]]
    assert owners, f"no producer polled a feed: {polled}"
    doomed = owners[-1]
    assert len(_feed_fetches(topo)) == len(FEEDS)
    doomed.kill9()
    killed_at = time.time()
    instance = f"127.0.0.1:{doomed.metrics_port}"

    def service_down_fires() -> bool:
        firing = [a for a in topo.alerts("firing") if a["labels"]["alertname"] == "ServiceDown"]
        return [a["labels"]["instance"] for a in firing] == [instance]

    wait_until(service_down_fires, 30, f"ServiceDown to fire for {instance}")

    def every_feed_fetched_again() -> bool:
        return all(at > killed_at for at in _feed_fetches(topo).values())

    wait_until(every_feed_fetched_again, 90, "every feed fetched again after the kill", 1)
    print(f"\nproducer killed: every feed fetched again {time.time() - killed_at:.1f} s after")
    survivors = [p for p in topo.producers if p is not doomed]
    assert all(p.alive() for p in survivors), [p.tail() for p in survivors]
