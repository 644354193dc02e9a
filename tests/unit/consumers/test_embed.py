"""The embed step: only survivors are embedded, in one call; an unusable vector is poison; each
row holds the content hash the dedup step decided."""

from __future__ import annotations

import json

from consumer_fakes import NAN_MARK, STOP, FakeEmbedder, article
from consumer_fakes import clean_item as _item
from consumer_fakes import embedded as _embedded
from consumer_fakes import memory_dedup as _dedup

from consumers.dedup_stage import CheckDuplicates
from consumers.embed import Embed
from consumers.item import Batch, Item
from core.metrics import RejectReason
from dedup.index import text_hash


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
