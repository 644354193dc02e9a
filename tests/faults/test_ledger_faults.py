"""A worker killed with -9 after Milvus acknowledged a batch and before its ledger records were
written, against the real local broker and Milvus: nothing was committed without the records,
and the restarted worker writes a record for every article id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.kafka import ensure_topics
from core.ledger import LedgerOutcome, LedgerRecord
from newsstream.stack.proctree import stop_process
from producers.publisher import Publisher

from conftest import require_shared_data
from probes import milvus_count, milvus_ids, read_topic, total_lag, wait_for_lag_zero
from worker_procs import bbc_articles, start_worker

pytestmark = pytest.mark.faults


def test_a_kill_between_the_upsert_and_the_ledger_write_commits_nothing_and_loses_no_record(
    make_settings: Any, tmp_path: Path
) -> None:
    bbc = require_shared_data("eval", "bbc-news")
    settings = make_settings(worker_batch_size=8)
    articles = list(bbc_articles(bbc, 40, offset=1300))
    ensure_topics(settings)
    publisher = Publisher(settings, client_id="test-ledger-fault")
    assert publisher.publish(articles) == {a.id for a in articles}
    publisher.close()
    dying = start_worker(settings, tmp_path / "dying.log", NEWSSTREAM_FAILPOINTS="after_upsert")
    try:
        dying.wait(180)
    finally:
        stop_process(dying)
    assert dying.returncode == -9, (tmp_path / "dying.log").read_text()[-2000:]
    assert milvus_count(settings) > 0, "the first batch was upserted before the kill"
    assert read_topic(settings, settings.kafka_ledger_topic) == [], "no record before the kill"
    lag = total_lag(settings)
    assert lag == len(articles), f"nothing may be committed without its records (lag {lag})"

    survivor = start_worker(settings, tmp_path / "survivor.log")
    try:
        wait_for_lag_zero(settings, 180)
    finally:
        assert stop_process(survivor) == 0
    latest = {
        record.article_id: record
        for record in (
            LedgerRecord.from_bytes(m.value())
            for m in read_topic(settings, settings.kafka_ledger_topic)
        )
    }
    assert set(latest) == {a.id for a in articles}, "every id has its outcome"
    indexed = {i for i, r in latest.items() if r.outcome is LedgerOutcome.INDEXED}
    assert indexed == milvus_ids(settings)
