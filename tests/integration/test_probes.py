"""The test probes themselves: a read that runs out of time says so instead of answering."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from core.kafka import ensure_topics
from core.settings import Settings

from probes import ProbeTimeout, read_topic, total_lag

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(kafka_bootstrap: str, unique_name: str) -> Settings:
    values = Settings(
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic=f"{unique_name}.articles",
        kafka_dlq_topic=f"{unique_name}.dlq",
        kafka_search_events_topic=f"{unique_name}.search",
        kafka_status_topic=f"{unique_name}.status",
        kafka_group_id=f"{unique_name}-workers",
        kafka_partitions=2,
    )
    ensure_topics(values)
    return values


def test_reading_to_the_end_returns_every_message(settings: Settings) -> None:
    assert read_topic(settings, settings.kafka_dlq_topic) == []
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for n in range(3):
        producer.produce(settings.kafka_dlq_topic, value=f"m{n}".encode())
    assert producer.flush(30) == 0
    assert sorted(m.value() for m in read_topic(settings, settings.kafka_dlq_topic)) == [
        b"m0",
        b"m1",
        b"m2",
    ]


def test_a_read_that_reaches_its_deadline_raises(settings: Settings) -> None:
    with pytest.raises(ProbeTimeout, match="did not reach their end"):
        read_topic(settings, settings.kafka_dlq_topic, timeout_s=0)
    assert total_lag(settings) is not None  # the same read with time to answer


def test_a_topic_that_does_not_exist_is_no_empty_topic(settings: Settings) -> None:
    with pytest.raises(ProbeTimeout):
        read_topic(settings, f"{settings.kafka_topic}.missing", timeout_s=5)
