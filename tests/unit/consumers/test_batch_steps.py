"""The per-batch steps: in-batch superseding and log order, delete, dedup, embed, story, upsert,
record."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from consumer_fakes import (
    NAN_MARK,
    Events,
    FakeEmbedder,
    FakeMilvus,
    OwnStories,
    article,
    origin,
)

from consumers.clean import Clean
from consumers.dedup_stage import CheckDuplicates, DedupStage, index_params
from consumers.delete import DeleteArticles
from consumers.embed import Embed
from consumers.item import Batch, Deletion, Item
from consumers.outcomes import OutcomeTally
from consumers.record import RecordDedupState
from consumers.retry import Abandoned
from consumers.stories import AssignStories
from consumers.upsert import Upsert
from core.article import Article, DeleteReason
from core.errors import TransientError
from core.metrics import RejectReason
from core.settings import Settings
from dedup.index import DedupIndex, text_hash
from dedup.memory_backend import MemoryBackend

STOP = threading.Event()  # never set: the steps retry for as long as an outage lasts


def _item(a: Article, offset: int = 0, produced_at_ms: int | None = None) -> Item:
    return Clean()(Item(produced_at_ms=produced_at_ms, origin=origin(offset), article=a))


def _dedup() -> DedupStage:
    params = index_params(Settings())
    return DedupStage(DedupIndex(MemoryBackend(params), params))


def test_a_batch_keeps_the_last_version_of_an_id_and_reports_every_message() -> None:
    first, second = article(1, text="first version " * 10), article(1, text="second one " * 10)
    items = [
        _item(first, 0),
        Item(produced_at_ms=None, reject=RejectReason.SPAM),
        Item(produced_at_ms=None, poison="{}"),
        _item(second, 3),
    ]
    batch = Batch.of(items)
    assert [i.clean.article for i in batch.survivors if i.clean] == [second]
    assert (batch.rejected, batch.superseded, len(batch.poison)) == (1, 1, 1)
    report = Embed(FakeEmbedder())(batch).report()
    assert report.indexed == 1
    assert report.consumed == 4 == report.indexed + report.duplicate + report.rejected + report.dlq
    assert report.rejected_by_reason == {RejectReason.SPAM: 1}


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


def test_embed_embeds_only_the_survivors_and_makes_poison_of_an_unusable_vector() -> None:
    embedder = FakeEmbedder()
    good, broken = _item(article(1), 0), _item(article(2, text=f"{NAN_MARK} " * 10), 1)
    batch = Batch.of([good, broken, Item(produced_at_ms=None, reject=RejectReason.EMPTY)])
    batch = Embed(embedder)(batch)
    assert len(embedder.calls) == 1 and len(embedder.calls[0]) == 2  # one call, survivors only
    assert batch.indexed == [good]
    assert [row.id for row in batch.rows] == [article(1).id]
    row = batch.rows[0]
    assert len(row.embedding) == 8 and row.model == "fake-model"
    assert row.story_id == row.id and row.also_reported_by == ()
    assert [item for item, _ in batch.poison] == [broken]
    assert json.loads(batch.poison[0][1])["stage"] == "embed"
    assert batch.report().dlq == 1


def test_embed_does_not_call_the_model_for_a_batch_without_survivors() -> None:
    embedder = FakeEmbedder()
    Embed(embedder)(Batch.of([Item(produced_at_ms=None, reject=RejectReason.EMPTY)]))
    assert embedder.calls == []


def _embedded(*articles: Article) -> Batch:
    items = [_item(a, n, produced_at_ms=1) for n, a in enumerate(articles)]
    return Embed(FakeEmbedder())(Batch.of(items))


def test_story_sets_the_story_of_every_row() -> None:
    stories = OwnStories()
    batch = AssignStories(stories, stop=STOP, max_backoff_s=0.01)(_embedded(article(1), article(2)))
    assert stories.seen == [article(1).id, article(2).id]
    assert all(row.story_id == row.id for row in batch.rows)


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


def test_a_row_holds_the_one_content_hash_the_dedup_step_decided() -> None:
    dedup = _dedup()
    wire = "UPDATE 2: The harbour council voted to reopen the old ferry route next spring."
    checked = CheckDuplicates(dedup, stop=STOP, max_backoff_s=0.01)(
        Batch.of([_item(article(1, text=wire, title="Ferry"), 0)])
    )
    (kept,) = checked.survivors
    assert kept.verdict is not None and kept.clean is not None
    (row,) = Embed(FakeEmbedder())(checked).rows
    assert row.content_hash == kept.verdict.content_hash == text_hash(kept.clean.text)
    # An item the dedup step did not see gets the same hash of the same text.
    (unchecked,) = _embedded(article(1, text=wire, title="Ferry")).rows
    assert unchecked.content_hash == row.content_hash


def _delete(a: Article, offset: int, reason: DeleteReason = DeleteReason.DELETED) -> Item:
    return Item(produced_at_ms=None, origin=origin(offset), delete=Deletion(a.id, reason))


def test_in_a_batch_the_log_order_of_an_id_decides_between_delete_and_publish() -> None:
    gone, back, other = article(1), article(2), article(3)
    batch = Batch.of(
        [
            _item(gone, 0),
            _delete(back, 1, DeleteReason.EXPIRED),
            _delete(gone, 2),
            _item(back, 3),
            _item(other, 4),
        ]
    )
    # published then deleted: deleted, never indexed; deleted then published: both happen, in
    # that order (the delete step runs before the article is checked and indexed).
    assert batch.deleted_ids == [back.id, gone.id]
    assert [i.article_id for i in batch.survivors] == [back.id, other.id]
    report = Embed(FakeEmbedder())(batch).report()
    assert (report.indexed, report.duplicate, report.deleted, report.expired) == (2, 1, 1, 1)
    assert report.consumed == 5 == (
        report.indexed + report.duplicate + report.rejected + report.dlq
        + report.deleted + report.expired
    )  # fmt: skip


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
