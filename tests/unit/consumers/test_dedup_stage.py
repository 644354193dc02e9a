"""The dedup step: an exact duplicate of an indexed article is set aside; an outage of the
dedup backend is waited out."""

from __future__ import annotations

from typing import Any

from consumer_fakes import STOP, article
from consumer_fakes import clean_item as _item
from consumer_fakes import memory_dedup as _dedup

from consumers.dedup_stage import CheckDuplicates
from consumers.item import Batch
from core.errors import TransientError


def test_dedup_sets_aside_an_exact_duplicate_of_an_indexed_article() -> None:
    dedup = _dedup()
    step = CheckDuplicates(dedup, stop=STOP, max_backoff_s=0.01)
    text = "The same wire story, word for word, published by two sites on the same day."
    kept = step(Batch.of([_item(article(1, text=text, title="Wire", url="https://a.example/1"))]))
    assert len(kept.survivors) == 1 and not kept.duplicates
    dedup.record(kept.survivors)
    copy = step(
        Batch.of([_item(article(2, text=text, title="Wire", url="https://b.example/2"), 1)])
    )
    assert not copy.survivors and len(copy.duplicates) == 1
    assert copy.report().duplicate == 1


def test_dedup_waits_out_an_outage_of_its_backend() -> None:
    dedup = _dedup()
    failures = iter([TransientError("redis away"), TransientError("still away")])

    class Flaky:
        def partition(self, items: Any) -> Any:
            for failure in failures:
                raise failure
            return dedup.partition(items)

        def record(self, items: Any) -> None:
            pass

    batch = CheckDuplicates(Flaky(), stop=STOP, max_backoff_s=0.01)(Batch.of([_item(article(1))]))
    assert len(batch.survivors) == 1
