"""The ledger step in the worker's chain, on arroyo's in-memory broker: every article id a batch
decides gets one record of its latest outcome, acknowledged before the batch is committed."""

from __future__ import annotations

from arroyo.backends.kafka import KafkaPayload
from consumer_fakes import article
from test_worker_chain import P0, Rig, rig  # noqa: F401 - the chain's rig fixture

from core.ledger import LedgerOutcome
from core.settings import Settings


def test_no_offset_is_committed_before_the_ledger_acknowledged_its_records(rig: Rig) -> None:  # noqa: F811
    articles = [article(k) for k in range(200, 204)]
    rig.ledger.away = True
    rig.publish(*articles)
    rig.run_until(lambda: rig.ledger.attempts >= 3, "ledger writes retried")
    rig.run_steps(20)
    assert rig.broker.committed == {}, "a batch is committed only with its ledger records"
    assert set(rig.milvus.rows) == {a.id for a in articles}  # the stores went first
    rig.ledger.away = False
    rig.run_until(lambda: rig.broker.committed.get(P0) == 4, "offset 4 committed")
    assert rig.events.index("upsert") < rig.events.index("record") < rig.events.index("ledger")
    assert rig.events.index("ledger") < rig.events.index("commit")
    assert sorted(rig.ledger.latest()) == sorted(a.id for a in articles)


def test_every_outcome_of_a_run_is_one_record_of_its_id(rig: Rig) -> None:  # noqa: F811
    wire = "The same wire story, carried word for word by two sites on the same day, ran here."
    kept = article(210, text=wire, title="Wire", url="https://a.example/w")
    copy = article(211, text=wire, title="Wire", url="https://b.example/w")
    short = article(212, text="Too short.", title="")
    broken_id = article(213).id
    deleted, expired, never_indexed = article(214), article(215), article(216)
    rig.publish(kept, deleted, expired)
    rig.run_until(lambda: rig.broker.committed.get(P0) == 3, "the first three indexed")
    rig.publish(copy, short)
    rig.broker.produce(P0, KafkaPayload(broken_id.encode(), b"{broken", []))  # poison, keyed
    rig.broker.produce(P0, KafkaPayload(None, b"{no key", []))  # poison with no usable id
    rig.delete(deleted)
    rig.delete(expired, reason=b"expired")
    rig.delete(never_indexed)
    rig.run_until(lambda: rig.broker.committed.get(P0) == 10, "every offset committed")
    latest = rig.ledger.latest()
    outcomes = {ident: record.outcome for ident, record in latest.items()}
    assert outcomes == {
        kept.id: LedgerOutcome.INDEXED,
        copy.id: LedgerOutcome.DUPLICATE,
        short.id: LedgerOutcome.REJECTED,
        broken_id: LedgerOutcome.DEAD_LETTERED,
        deleted.id: LedgerOutcome.DELETED,
        expired.id: LedgerOutcome.EXPIRED,
        never_indexed.id: LedgerOutcome.DELETED,
    }
    assert latest[copy.id].duplicate_of == kept.id
    assert latest[short.id].reason == "too_short" and latest[short.id].url == short.url
    dead = latest[broken_id].dead_letter
    assert dead is not None and (dead.stage, dead.error_class) == ("decode", "InvalidMessage")
    # One record per decided message; the keyless poison has none (no id to file it under).
    assert len(rig.ledger.records) == 9
    assert [origin.value for origin, _ in rig.dlq.sent] == [b"{broken", b"{no key"]


def test_an_indexed_record_carries_its_times_source_and_worker(rig: Rig) -> None:  # noqa: F811
    one = article(220).model_copy(update={"fetched_at": 1_700_000_050})
    rig.publish(one)
    rig.run_until(lambda: rig.broker.committed.get(P0) == 1, "indexed")
    (record,) = rig.ledger.records
    bound = Settings().milvus_staleness_bound_ms
    assert (record.article_id, record.outcome, record.worker) == (one.id, "indexed", "w")
    assert (record.url, record.feed_id, record.fetched_at) == (one.url, "f", 1_700_000_050)
    assert record.produced_at_ms == 1  # the produced_at header
    assert record.indexed_at_ms is not None and record.decided_at_ms >= record.indexed_at_ms
    assert record.visible_by_ms == record.indexed_at_ms + bound
    assert record.source is not None
    assert (record.source.topic, record.source.partition, record.source.offset) == (
        "news.articles",
        0,
        0,
    )


def test_several_versions_of_an_id_in_one_batch_end_in_the_last_ones_outcome(
    rig: Rig,  # noqa: F811
) -> None:
    gone, shortened = article(230), article(231)
    rig.publish(gone, shortened)
    rig.run_until(lambda: rig.broker.committed.get(P0) == 2, "both indexed")
    rig.publish(article(230, text="A newer version of the report, then deleted. " * 3))
    rig.delete(gone)
    rig.publish(article(231, text="A newer version, indexed for a moment. " * 3))
    rig.publish(article(231, text="Too short.", title=""))  # one batch of four
    rig.run_until(lambda: rig.broker.committed.get(P0) == 6, "the batch committed")
    second = rig.ledger.records[2:]
    assert [(r.article_id, r.outcome) for r in second] == [
        (gone.id, LedgerOutcome.DELETED),
        (shortened.id, LedgerOutcome.REJECTED),
    ], "one record per id: its last message's outcome"
    assert second[1].source is not None and second[1].source.offset == 5
