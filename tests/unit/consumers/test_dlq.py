"""The DLQ step: poison is routed to the DLQ with its origin, through outages, behind one circuit
breaker."""

from __future__ import annotations

import threading

import pytest
from consumer_fakes import FakeDlq, origin

from consumers.dlq import DlqBreaker, DlqFlood, RouteToDlq
from consumers.item import Batch, Item

STOP = threading.Event()


def _poison(offset: int) -> Item:
    return Item(
        produced_at_ms=None, origin=origin(offset, b"{broken"), poison='{"stage": "decode"}'
    )


def test_the_breaker_opens_past_the_limit_of_poison_in_a_row() -> None:
    breaker = DlqBreaker(max_consecutive=3, ratio_min_messages=1_000)
    breaker.judge(["p", "p", "p", None])  # a good message ends the run
    breaker.judge(["p", "p", "p"])
    with pytest.raises(DlqFlood, match="4 poison messages in a row"):
        breaker.judge(["p"])


def test_the_breaker_opens_on_the_share_of_poison_once_enough_messages_were_seen() -> None:
    breaker = DlqBreaker(max_consecutive=1_000, max_ratio=0.5, ratio_min_messages=10)
    breaker.judge(["p", None] * 4)  # 50% of 8: not yet enough messages, and not above the limit
    with pytest.raises(DlqFlood, match="60% of 10 messages were poison"):
        breaker.judge(["p", "p", "p"])


def test_routing_writes_a_batch_s_poison_with_its_origin() -> None:
    dlq = FakeDlq()
    batch = Batch.of([_poison(4), Item(produced_at_ms=None, poison=None), _poison(6)])
    RouteToDlq(dlq, DlqBreaker(), stop=STOP, max_backoff_s=0.01)(batch)
    assert [(o.offset, o.value) for o, _ in dlq.sent] == [(4, b"{broken"), (6, b"{broken")]


def test_routing_waits_out_a_dlq_outage_instead_of_dropping() -> None:
    dlq = FakeDlq()
    dlq.away = True
    route = RouteToDlq(dlq, DlqBreaker(), stop=STOP, max_backoff_s=0.01)
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: (route(Batch.of([_poison(1)])), done.set()), daemon=True
    )
    thread.start()
    while dlq.attempts < 3:  # retried, and meanwhile neither dropped nor passed on
        assert not done.wait(0.01)
    dlq.away = False
    thread.join(10)
    assert done.is_set() and [o.offset for o, _ in dlq.sent] == [1]


def test_an_open_breaker_stops_the_batch_before_anything_is_written() -> None:
    dlq = FakeDlq()
    route = RouteToDlq(dlq, DlqBreaker(max_consecutive=2), stop=STOP, max_backoff_s=0.01)
    with pytest.raises(DlqFlood):
        route(Batch.of([_poison(n) for n in range(3)]))
    assert dlq.sent == []
