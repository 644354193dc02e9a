"""What travels through the worker's steps: one message as an :class:`Item`, one batch as a
:class:`Batch`.

An item carries its origin (for a DLQ write), its ``produced_at`` header, and what the
per-message steps made of it: the decoded article, its clean text, or a final verdict
(rejected with a reason, or poison with its DLQ reason), or the delete a tombstone asks for;
the dedup step adds its
:class:`dedup.index.Verdict` to the items it keeps. A batch is the working state of the
per-batch steps: who survives to be embedded, who turned out a duplicate or poison, the typed
rows to upsert (:class:`store.row.ArticleRow`) and the items they index. Its
:meth:`Batch.report` is the outcome of every message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumers.clean import CleanArticle
from consumers.outcomes import IndexReport
from core.article import Article, DeleteReason
from core.metrics import RejectReason
from dedup.index import Verdict
from store.row import ArticleRow


@dataclass(frozen=True)
class Origin:
    """Where a message came from, and its original bytes (for a later DLQ write)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Deletion:
    """What a tombstone asks for: the article ``article_id`` leaves every store."""

    article_id: str
    reason: DeleteReason


@dataclass(frozen=True)
class Item:
    """One consumed message as the per-message steps leave it.

    Exactly one of these holds once the per-message steps are done: ``clean`` (an article to
    index), ``delete`` (a tombstone: the article leaves), ``reject`` (a final outcome, with its
    reason) or ``poison`` (the DLQ reason, JSON, of a message that breaks the contract of the
    topic and can never succeed).
    """

    produced_at_ms: int | None
    origin: Origin | None = None
    article: Article | None = None  # decoded, not yet cleaned; a rejected item keeps it
    clean: CleanArticle | None = None
    reject: RejectReason | None = None
    poison: str | None = None
    delete: Deletion | None = None
    verdict: Verdict | None = None  # set by the dedup step on the items it keeps

    @property
    def article_id(self) -> str | None:
        if self.delete is not None:
            return self.delete.article_id
        return self.clean.article.id if self.clean else None

    @property
    def final(self) -> bool:
        """True once the item has an outcome that no later per-message step changes."""
        return self.reject is not None or self.poison is not None or self.delete is not None


@dataclass
class Batch:
    """The working state of one batch through the per-batch steps (one thread owns it).

    Built by :meth:`of` from a batch's items in offset order, which is the log order of each
    article id (an id's messages share one partition): rejected and poison items are set aside;
    every id that has a tombstone in the batch is deleted first (``deleted_ids``), then each id
    whose last message is an article is indexed from that last version (``survivors``). So
    delete-then-publish ends indexed and publish-then-delete ends deleted, as the log says. An
    article superseded by a later message of its id is not indexed and counts as a duplicate;
    every tombstone counts as deleted or expired (its header's reason).
    """

    items: list[Item]
    survivors: list[Item]
    rejected: int
    superseded: int
    deleted_ids: list[str] = field(default_factory=list)
    duplicates: list[Item] = field(default_factory=list)
    poison: list[tuple[Item, str]] = field(default_factory=list)
    rows: list[ArticleRow] = field(default_factory=list)
    indexed: list[Item] = field(default_factory=list)
    indexed_at_ms: int | None = None  # when Milvus acknowledged ``rows`` (the upsert step)

    @classmethod
    def of(cls, items: list[Item]) -> Batch:
        latest: dict[str, Item] = {}
        deleted: dict[str, None] = {}  # ids in the order of their first tombstone
        rejected = articles = 0
        poison: list[tuple[Item, str]] = []
        for item in items:
            if item.poison is not None:
                poison.append((item, item.poison))
            elif item.delete is not None:
                deleted[item.delete.article_id] = None
                latest[item.delete.article_id] = item  # later offsets win
            elif item.clean is None:
                rejected += 1
            else:
                articles += 1
                latest[item.clean.article.id] = item
        survivors = [item for item in latest.values() if item.clean is not None]
        return cls(
            items=items,
            survivors=survivors,
            rejected=rejected,
            superseded=articles - len(survivors),
            deleted_ids=list(deleted),
            poison=poison,
        )

    def report(self) -> IndexReport:
        """What the batch became: every message in exactly one outcome."""
        reasons: dict[RejectReason, int] = {}
        deletes: dict[DeleteReason, int] = {}
        for item in self.items:
            if item.reject is not None:
                reasons[item.reject] = reasons.get(item.reject, 0) + 1
            elif item.delete is not None:
                deletes[item.delete.reason] = deletes.get(item.delete.reason, 0) + 1
        return IndexReport(
            consumed=len(self.items),
            indexed=len(self.indexed),
            duplicate=self.superseded + len(self.duplicates),
            rejected=self.rejected,
            dlq=len(self.poison),
            deleted=deletes.get(DeleteReason.DELETED, 0),
            expired=deletes.get(DeleteReason.EXPIRED, 0),
            rejected_by_reason=reasons,
        )
