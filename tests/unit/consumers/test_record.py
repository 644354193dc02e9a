"""The record step: only indexed articles are remembered by the dedup index."""

from __future__ import annotations

from consumer_fakes import STOP, FakeEmbedder, article
from consumer_fakes import clean_item as _item
from consumer_fakes import memory_dedup as _dedup

from consumers.dedup_stage import CheckDuplicates
from consumers.embed import Embed
from consumers.item import Batch
from consumers.record import RecordDedupState


def test_record_remembers_only_indexed_articles() -> None:
    dedup = _dedup()
    check = CheckDuplicates(dedup, stop=STOP, max_backoff_s=0.01)
    record = RecordDedupState(dedup, stop=STOP, max_backoff_s=0.01)
    text = "A story that two sites carried word for word on the very same afternoon."
    batch = Embed(FakeEmbedder())(check(Batch.of([_item(article(1, text=text, title="Wire"), 0)])))
    # Not recorded yet (as after a crash before the upsert): the article is no duplicate of
    # itself when it is consumed again.
    again = check(Batch.of([_item(article(1, text=text, title="Wire"), 0)]))
    assert len(again.survivors) == 1
    record(batch)
    copy = check(Batch.of([_item(article(2, text=text, title="Wire"), 1)]))
    assert not copy.survivors
