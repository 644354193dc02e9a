"""The decode step: a message becomes an article, a delete (a tombstone) or poison with the
reason and the original bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from arroyo.backends.kafka import KafkaPayload
from arroyo.types import BrokerValue, Message, Partition, Topic
from consumer_fakes import article

from consumers.clean import Clean
from consumers.consumer import TOMBSTONE
from consumers.decode import Decode
from consumers.item import Deletion
from consumers.quality import QualityGate
from core.article import DELETE_REASON_HEADER, DeleteReason

PARTITION = Partition(Topic("news.articles"), 3)


def _message(
    value: bytes | None, offset: int = 7, key: bytes = b"key", **headers: bytes
) -> Message[KafkaPayload]:
    payload = KafkaPayload(key, value, list(headers.items()))
    return Message(BrokerValue(payload, PARTITION, offset, datetime.now(UTC)))


def test_decode_turns_a_valid_message_into_an_article_with_its_origin() -> None:
    a = article(1)
    item = Decode(max_message_bytes=100_000)(_message(a.to_bytes(), produced_at=b"1234"))
    assert item.article == a and item.poison is None and not item.final
    assert item.produced_at_ms == 1234
    assert item.origin is not None
    assert (item.origin.topic, item.origin.partition, item.origin.offset) == ("news.articles", 3, 7)
    assert item.origin.value == a.to_bytes() and item.origin.key == b"key"


def test_decode_makes_poison_of_broken_json_and_keeps_the_original_bytes() -> None:
    item = Decode(max_message_bytes=100_000)(_message(b"{broken"))
    assert item.final and item.article is None and item.poison is not None
    reason = json.loads(item.poison)
    assert (reason["stage"], reason["error_class"]) == ("decode", "InvalidMessage")
    assert item.origin is not None and item.origin.value == b"{broken"


def test_decode_makes_poison_of_a_message_over_the_size_cap() -> None:
    value = article(2).to_bytes()
    item = Decode(max_message_bytes=len(value) - 1)(_message(value))
    assert item.poison is not None and "over" in json.loads(item.poison)["message"]
    assert Decode(max_message_bytes=len(value))(_message(value)).poison is None


def test_a_bad_produced_at_header_is_ignored() -> None:
    item = Decode(max_message_bytes=100_000)(_message(article(3).to_bytes(), produced_at=b"x"))
    assert item.produced_at_ms is None and item.article is not None


def _tombstone(key: bytes | None, **headers: bytes) -> Message[KafkaPayload]:
    payload = KafkaPayload(key, None, list(headers.items()))
    return Message(BrokerValue(payload, PARTITION, 9, datetime.now(UTC)))


def test_decode_turns_a_tombstone_with_an_article_id_into_a_delete() -> None:
    ident = article(7).id
    decode = Decode(max_message_bytes=100_000)
    item = decode(_tombstone(ident.encode()))
    assert item.final and item.poison is None and item.article is None
    assert item.delete == Deletion(ident, DeleteReason.DELETED)
    assert item.article_id == ident
    expired = decode(_tombstone(ident.encode(), **{DELETE_REASON_HEADER: b"expired"}))
    assert expired.delete == Deletion(ident, DeleteReason.EXPIRED)
    # The later steps leave it alone.
    assert QualityGate(min_chars=40)(Clean()(item)) is item


def test_a_tombstone_without_an_article_id_as_its_key_is_poison() -> None:
    decode = Decode(max_message_bytes=100_000)
    for key in (None, b"", b"not-an-article-id"):
        item = decode(_tombstone(key))
        assert item.delete is None and item.poison is not None, key
        reason = json.loads(item.poison)
        assert (reason["stage"], reason["error_class"]) == ("decode", "InvalidMessage")
        assert "tombstone" in reason["message"]


def test_a_null_value_from_the_kafka_consumer_is_a_tombstone_an_empty_one_is_poison() -> None:
    # arroyo's Kafka consumer hands null values over as ``b""``; ours marks them TOMBSTONE.
    ident = article(8).id.encode()
    decode = Decode(max_message_bytes=100_000)
    assert decode(_message(TOMBSTONE or b"", key=ident)).delete is not None
    empty = decode(_message(b"", key=ident))
    assert empty.delete is None and empty.poison is not None
