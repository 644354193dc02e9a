"""The ledger's record and partition function (core.ledger): the contract between the workers
that write the ledger and explain and reconcile that read it."""

from __future__ import annotations

import zlib

import pytest

from core.errors import InvalidMessage
from core.ids import article_id
from core.ledger import (
    DeadLetter,
    LedgerOutcome,
    LedgerRecord,
    SourceMessage,
    explain_sentence,
    ledger_partition,
)

ID = article_id(link="https://example.org/a")
OTHER = article_id(link="https://example.org/b")


def _record(**fields: object) -> LedgerRecord:
    values: dict[str, object] = {
        "article_id": ID,
        "outcome": LedgerOutcome.INDEXED,
        "decided_at_ms": 1_700_000_001_000,
        "worker": "worker-1",
    }
    values.update(fields)
    return LedgerRecord(**values)  # type: ignore[arg-type]


def test_a_record_round_trips_and_leaves_out_what_does_not_apply() -> None:
    record = _record(
        source=SourceMessage("news.articles", 2, 41),
        url="https://example.org/a",
        feed_id="f1",
        fetched_at=1_700_000_000,
        produced_at_ms=1_700_000_000_500,
        indexed_at_ms=1_700_000_000_900,
        visible_by_ms=1_700_000_005_900,
    )
    body = record.to_json()
    assert body["v"] == 1 and body["id"] == ID and body["outcome"] == "indexed"
    assert body["source"] == {"topic": "news.articles", "partition": 2, "offset": 41}
    assert "duplicate_of" not in body and "dead_letter" not in body and "reason" not in body
    assert LedgerRecord.from_bytes(record.to_bytes()) == record
    dead = _record(
        outcome=LedgerOutcome.DEAD_LETTERED, dead_letter=DeadLetter("embed", "InvalidMessage", "x")
    )
    assert LedgerRecord.from_bytes(dead.to_bytes()) == dead


def test_a_record_of_an_unknown_version_or_shape_is_refused() -> None:
    with pytest.raises(InvalidMessage):
        LedgerRecord.from_bytes(b'{"v": 2, "id": "x", "outcome": "indexed"}')
    with pytest.raises(InvalidMessage):
        LedgerRecord.from_bytes(b'{"v": 1, "id": "x", "outcome": "vanished"}')
    with pytest.raises(InvalidMessage):
        LedgerRecord.from_bytes(b"not json")


def test_the_partition_of_an_id_is_crc32_of_it_modulo_the_partitions() -> None:
    assert ledger_partition(ID, 6) == zlib.crc32(ID.encode()) % 6
    ids = [article_id(link=f"https://example.org/{n}") for n in range(600)]
    counts = [0] * 6
    for ident in ids:
        counts[ledger_partition(ident, 6)] += 1
    assert min(counts) > 50, f"ids spread over every partition: {counts}"
    assert {ledger_partition(ident, 1) for ident in ids} == {0}
    with pytest.raises(ValueError):
        ledger_partition(ID, 0)


def test_the_sentence_says_whether_it_is_searchable_and_why_not() -> None:
    indexed = _record(indexed_at_ms=1_700_000_000_000, visible_by_ms=1_700_000_005_000)
    assert explain_sentence(indexed, in_milvus=True).startswith("searchable: indexed at 2023")
    assert "by 2023-11-14 22:13:25 UTC at the latest" in explain_sentence(indexed, in_milvus=True)
    assert "reconcile" in explain_sentence(indexed, in_milvus=False)
    assert "keyword index lacks it" in explain_sentence(
        indexed, in_milvus=True, in_keyword_index=False
    )
    duplicate = _record(outcome=LedgerOutcome.DUPLICATE, duplicate_of=OTHER)
    assert explain_sentence(duplicate, in_milvus=False, kept_in_milvus=True) == (
        f"duplicate of {OTHER} (indexed)"
    )
    rejected = _record(outcome=LedgerOutcome.REJECTED, reason="too_short")
    assert explain_sentence(rejected, in_milvus=False) == "rejected: too_short"
    deleted = _record(outcome=LedgerOutcome.DELETED, produced_at_ms=1_700_000_000_000)
    assert explain_sentence(deleted, in_milvus=False) == (
        "deleted by an operator at 2023-11-14 22:13:20 UTC"
    )
    expired = _record(outcome=LedgerOutcome.EXPIRED)
    assert explain_sentence(expired, in_milvus=False).startswith("expired: removed by retention")
    dead = _record(
        outcome=LedgerOutcome.DEAD_LETTERED,
        dead_letter=DeadLetter("decode", "InvalidMessage", "not JSON"),
    )
    assert explain_sentence(dead, in_milvus=False).startswith(
        "dead-lettered at decode: InvalidMessage: not JSON"
    )
    assert explain_sentence(None, in_milvus=False).startswith("never seen: no message")
