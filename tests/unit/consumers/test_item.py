"""Batch.of: in a batch the last version of an id wins and the log order decides between a
delete and a publish; every message is counted in the batch's report."""

from __future__ import annotations

from consumer_fakes import FakeEmbedder, article
from consumer_fakes import clean_item as _item
from consumer_fakes import delete_item as _delete

from consumers.embed import Embed
from consumers.item import Batch, Item
from core.article import DeleteReason
from core.metrics import RejectReason


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
