"""The delete step: a batch's tombstones leave Milvus, then the dedup index, through outages; a
stop during an outage abandons the batch; no tombstones, no calls."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from consumer_fakes import STOP, Events, FakeMilvus, article
from consumer_fakes import clean_item as _item
from consumer_fakes import delete_item as _delete
from consumer_fakes import embedded as _embedded

from consumers.delete import DeleteArticles
from consumers.item import Batch
from consumers.retry import Abandoned
from core.errors import TransientError


class Forgets:
    """The dedup stage's remove, with an outage of ``failures`` calls first."""

    def __init__(self, events: Events, failures: int = 0) -> None:
        self.events = events
        self.failures = failures

    def partition(self, items: Any) -> Any:
        return list(items), []

    def record(self, items: Any) -> None:
        pass

    def remove(self, article_ids: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientError("redis away")
        self.events.add("forget", list(article_ids))


def test_the_delete_step_removes_from_every_store_through_outages_then_returns() -> None:
    events = Events()
    milvus, dedup = FakeMilvus(events), Forgets(events, failures=2)
    milvus.rows = {article(1).id: _embedded(article(1)).rows[0]}
    step = DeleteArticles(milvus.delete, dedup, stop=STOP, max_backoff_s=0.01)
    milvus.away = True
    done = threading.Event()
    batch = Batch.of([_delete(article(1), 0), _delete(article(9), 1)])
    worker = threading.Thread(target=lambda: (step(batch), done.set()))
    worker.start()
    for _ in range(3000):  # a bound on the wait, not a measure
        if milvus.calls >= 3:
            break
        threading.Event().wait(0.01)
    assert not done.is_set() and article(1).id in milvus.rows  # waits out the outage
    milvus.away = False
    worker.join(10)
    assert done.is_set() and milvus.rows == {}
    # Milvus (with the keyword index and other rows) first, then the dedup index; an id that
    # is not there (9) is a no-op.
    assert events.log == [
        ("delete", [article(1).id, article(9).id]),
        ("forget", [article(1).id, article(9).id]),
    ]


def test_the_delete_step_abandons_the_batch_when_the_worker_stops_during_an_outage() -> None:
    milvus, stop = FakeMilvus(), threading.Event()
    milvus.away = True
    stop.set()
    step = DeleteArticles(milvus.delete, Forgets(Events()), stop=stop, max_backoff_s=0.01)
    with pytest.raises(Abandoned):
        step(Batch.of([_delete(article(1), 0)]))


def test_a_batch_without_tombstones_does_not_call_the_stores() -> None:
    milvus = FakeMilvus()
    DeleteArticles(milvus.delete, Forgets(Events()), stop=STOP, max_backoff_s=0.01)(
        Batch.of([_item(article(1))])
    )
    assert milvus.calls == 0
