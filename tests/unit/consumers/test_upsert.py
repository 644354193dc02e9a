"""The upsert step: a short count is retried until every row is acknowledged; a stop during an
outage abandons the batch."""

from __future__ import annotations

import threading

import pytest
from consumer_fakes import STOP, FakeMilvus, article
from consumer_fakes import embedded as _embedded

from consumers.outcomes import OutcomeTally
from consumers.retry import Abandoned
from consumers.upsert import Upsert


def test_upsert_retries_a_short_count_until_every_row_is_acknowledged() -> None:
    milvus, tally = FakeMilvus(), OutcomeTally("w")
    milvus.short_counts = 2
    Upsert(milvus.upsert, tally, stop=STOP, max_backoff_s=0.01)(_embedded(article(1), article(2)))
    assert milvus.calls == 3
    assert set(milvus.rows) == {article(1).id, article(2).id}
    assert tally.snapshot()["tts_samples"] == 2


def test_upsert_abandons_the_batch_when_the_worker_stops_during_an_outage() -> None:
    milvus, stop = FakeMilvus(), threading.Event()
    milvus.away = True
    upsert = Upsert(milvus.upsert, OutcomeTally("w"), stop=stop, max_backoff_s=0.01)
    stop.set()
    with pytest.raises(Abandoned):
        upsert(_embedded(article(1)))
    assert not milvus.rows
