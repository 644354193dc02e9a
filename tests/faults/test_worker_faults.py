"""Fault tests of the worker against the real local broker and Milvus Lite server.

The oracle: a ledger of produced ids; after the fault and after lag reaches 0, at Strong
consistency, the set of ids in Milvus equals the ledger minus the rejected, duplicate and
deleted ones, and count(*) equals the number of distinct ids (no duplicate rows).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from core.article import Article
from core.kafka import ensure_topics
from core.settings import Settings
from newsstream.stack.proctree import stop_process
from producers.publisher import Publisher

from conftest import require_shared_data
from probes import (
    milvus_count,
    milvus_ids,
    read_topic,
    total_lag,
    wait_for_lag_zero,
    wait_until,
)
from running import running_worker
from worker_procs import bbc_articles, poison_values, publish_tombstones, start_worker

pytestmark = pytest.mark.faults


def _publish(settings: Settings, articles: list[Article]) -> set[str]:
    ensure_topics(settings)
    publisher = Publisher(settings, client_id="test-ledger")
    delivered = publisher.publish(articles)
    publisher.close()
    assert delivered == {a.id for a in articles}
    return delivered


def _produce_raw(settings: Settings, values: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    for key, value in values:
        producer.produce(settings.kafka_topic, key=key, value=value)
    assert producer.flush(30) == 0


def _read_topic(settings: Settings, topic: str) -> list[Any]:
    return read_topic(settings, topic)


def _assert_oracle(settings: Settings, ledger: set[str]) -> None:
    wait_for_lag_zero(settings, 180)
    ids = milvus_ids(settings)
    count = milvus_count(settings)
    if ids != ledger:
        from collections import Counter

        stages = Counter(
            dict(m.headers() or []).get("stage", b"?")
            for m in _read_topic(settings, settings.kafka_dlq_topic)
        )
        raise AssertionError(
            f"{len(ledger - ids)} missing, {len(ids - ledger)} unexpected, count(*) {count}, "
            f"DLQ stages {dict(stages)}"
        )
    assert count == len(ledger)


def test_poison_goes_to_the_dlq_with_headers_and_good_messages_are_indexed(
    make_settings: Any, embedder: Any
) -> None:
    bbc = require_shared_data("eval", "bbc-news")
    settings = make_settings()
    articles = list(bbc_articles(bbc, 1000))
    ensure_topics(settings)
    values: list[tuple[bytes | None, bytes]] = [(a.id.encode(), a.to_bytes()) for a in articles]
    poison = poison_values(100)
    rng = random.Random(7)
    for value in poison:
        values.insert(rng.randrange(len(values)), (None, value))
    _produce_raw(settings, values)
    with running_worker(settings, embedder) as _:
        _assert_oracle(settings, {a.id for a in articles})
    dlq = _read_topic(settings, settings.kafka_dlq_topic)
    assert len(dlq) == 100
    assert sorted(m.value() for m in dlq) == sorted(poison)
    for message in dlq:
        headers = dict(message.headers())
        assert headers["stage"] == b"decode"
        assert headers["original_topic"] == settings.kafka_topic.encode()
        assert headers["original_partition"].isdigit()
        assert headers["original_offset"].isdigit()
        assert headers["error_class"] == b"InvalidMessage"
        assert headers["error_message"]


def test_a_poison_flood_trips_the_circuit_breaker(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(kafka_partitions=1)
    ensure_topics(settings)
    _produce_raw(settings, [(None, b"{broken") for _ in range(400)])
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        worker.wait(120)
    except Exception:
        stop_process(worker)
        raise
    log = (tmp_path / "worker.log").read_text()
    assert worker.returncode == 3, log[-2000:]
    assert "DLQ circuit breaker" in log
    # The breaker stopped it before it emptied the topic into the DLQ.
    lag = total_lag(settings)
    assert lag is not None and lag > 0, f"lag {lag}"


def test_same_id_twice_in_a_batch_and_a_republished_article_keep_one_row(
    make_settings: Any, embedder: Any
) -> None:
    settings = make_settings(worker_batch_size=50, worker_batch_time_s=2.0)
    url = "https://example.org/world/storm"
    from core.ids import article_id

    ident = article_id(link=url)
    base = dict(id=ident, url=url, source="example.org", feed_id="f", published_at=1_700_000_000)
    v1 = Article(
        title="Storm nears the coast",
        summary="The storm is expected to reach the "
        "coast on Friday, forecasters said, urging residents to prepare.",
        **base,
    )
    v2 = Article(
        title="Storm reaches the coast",
        summary="The storm reached the coast on "
        "Friday night, cutting power to thousands of homes, officials said.",
        **base,
    )
    v3 = Article(
        title="Storm leaves the coast",
        summary="Clean-up began on Sunday after the "
        "storm moved out to sea, leaving flooded streets behind it, officials said.",
        **base,
    )
    _publish(settings, [v1, v2])
    with running_worker(settings, embedder):
        _assert_oracle(settings, {ident})
        from search_api.searcher import Searcher
        from store.client import connect

        client = connect(settings.milvus_uri or "")
        row = Searcher(settings, client, embedder).get(ident)
        assert row is not None and row["title"] == "Storm reaches the coast"
        _publish(settings, [v3])
        wait_until(
            lambda: (
                (Searcher(settings, client, embedder).get(ident) or {}).get("title")
                == "Storm leaves the coast"
            ),
            60,
            "the republished text",
        )
        assert milvus_count(settings) == 1


@pytest.mark.parametrize("failpoint", ["after_upsert", "during_embed"])
def test_kill_9_loses_nothing_and_duplicates_nothing(
    failpoint: str, make_settings: Any, tmp_path: Path
) -> None:
    bbc = require_shared_data("eval", "bbc-news")
    settings = make_settings(worker_batch_size=32)
    articles = list(bbc_articles(bbc, 300, offset=1000))
    ledger = _publish(settings, articles)
    dying = start_worker(settings, tmp_path / "dying.log", NEWSSTREAM_FAILPOINTS=failpoint)
    try:
        dying.wait(180)
    finally:
        stop_process(dying)
    assert dying.returncode == -9, (tmp_path / "dying.log").read_text()[-2000:]
    if failpoint == "after_upsert":
        assert milvus_count(settings) > 0, "the first batch was upserted before the kill"
    lag = total_lag(settings)
    assert lag is not None and lag > 0, f"nothing may be committed past the kill (lag {lag})"
    survivor = start_worker(settings, tmp_path / "survivor.log")
    try:
        _assert_oracle(settings, ledger)
    finally:
        assert stop_process(survivor) == 0


def test_kill_9_between_a_delete_and_its_commit_brings_nothing_back_and_loses_nothing(
    make_settings: Any, embedder: Any, tmp_path: Path
) -> None:
    bbc = require_shared_data("eval", "bbc-news")
    settings = make_settings(worker_batch_size=32)
    articles = list(bbc_articles(bbc, 200, offset=1400))
    ledger = _publish(settings, articles)
    with running_worker(settings, embedder):
        _assert_oracle(settings, ledger)
    doomed = sorted(ledger)[::4]
    publish_tombstones(settings, doomed[: len(doomed) // 2])
    publish_tombstones(settings, doomed[len(doomed) // 2 :], reason="expired")
    dying = start_worker(settings, tmp_path / "dying.log", NEWSSTREAM_FAILPOINTS="after_delete")
    try:
        dying.wait(180)
    finally:
        stop_process(dying)
    assert dying.returncode == -9, (tmp_path / "dying.log").read_text()[-2000:]
    assert milvus_count(settings) < len(ledger), "a delete was acknowledged before the kill"
    lag = total_lag(settings)
    assert lag is not None and lag > 0, f"nothing may be committed past the kill (lag {lag})"
    survivor = start_worker(settings, tmp_path / "survivor.log")
    try:
        _assert_oracle(settings, ledger - set(doomed))
    finally:
        assert stop_process(survivor) == 0


def test_a_delete_racing_an_upsert_across_batches_ends_as_the_later_message_says(
    make_settings: Any, embedder: Any
) -> None:
    # One message per batch: each delete and each version is applied on its own, in log order.
    settings = make_settings(worker_batch_size=1, worker_max_pending_batches=4)
    bbc = require_shared_data("eval", "bbc-news")
    gone, back, fresh, kept = list(bbc_articles(bbc, 4, offset=1700))
    newer = back.model_copy(update={"title": "Back after its delete"})
    _publish(settings, [gone, back, kept])
    publish_tombstones(settings, [gone.id, back.id, fresh.id])
    _publish(settings, [newer, fresh])
    with running_worker(settings, embedder) as worker:
        _assert_oracle(settings, {back.id, fresh.id, kept.id})
        snapshot = worker.tally.snapshot()
    assert (snapshot["indexed"], snapshot["deleted"]) == (5, 3)
    from search_api.searcher import Searcher
    from store.client import connect

    row = Searcher(settings, connect(settings.milvus_uri or ""), embedder).get(back.id)
    assert row is not None and row["title"] == "Back after its delete"
