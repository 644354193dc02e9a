"""What travels through the worker's steps: one message as an :class:`Item`, one batch as a
:class:`Batch`.

An item carries its origin (for a DLQ write), its ``produced_at`` header, and what the
per-message steps made of it: the decoded article, its clean text, or a final verdict
(rejected with a reason, or poison with its DLQ reason); the dedup step adds its
:class:`dedup.index.Verdict` to the items it keeps. A batch is the working state of the
per-batch steps: who survives to be embedded, who turned out a duplicate or poison, the typed
rows to upsert (:class:`store.row.ArticleRow`) and the items they index. Its
:meth:`Batch.report` is the outcome of every message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consumers.clean import CleanArticle
from consumers.outcomes import IndexReport
from core.article import Article
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
class Item:
    """One consumed message as the per-message steps leave it.

    Exactly one of these holds once the per-message steps are done: ``clean`` (an article to
    index), ``reject`` (a final outcome, with its reason) or ``poison`` (the DLQ reason, JSON,
    of a message that breaks the Article contract and can never succeed).
    """

    produced_at_ms: int | None
    origin: Origin | None = None
    article: Article | None = None  # decoded, not yet cleaned
    clean: CleanArticle | None = None
    reject: RejectReason | None = None
    poison: str | None = None
    verdict: Verdict | None = None  # set by the dedup step on the items it keeps

    @property
    def article_id(self) -> str | None:
        return self.clean.article.id if self.clean else None

    @property
    def final(self) -> bool:
        """True once the item has an outcome that no later per-message step changes."""
        return self.reject is not None or self.poison is not None


@dataclass
class Batch:
    """The working state of one batch through the per-batch steps (one thread owns it).

    Built by :meth:`of` from a batch's items in offset order: rejected and poison items are
    set aside, and of several versions of one article id only the last is kept (its earlier
    versions are superseded by the row it becomes, and count as duplicates).
    """

    items: list[Item]
    survivors: list[Item]
    rejected: int
    superseded: int
    duplicates: list[Item] = field(default_factory=list)
    poison: list[tuple[Item, str]] = field(default_factory=list)
    rows: list[ArticleRow] = field(default_factory=list)
    indexed: list[Item] = field(default_factory=list)

    @classmethod
    def of(cls, items: list[Item]) -> Batch:
        latest: dict[str, Item] = {}
        rejected = 0
        poison: list[tuple[Item, str]] = []
        for item in items:
            if item.poison is not None:
                poison.append((item, item.poison))
                continue
            if item.clean is None:
                rejected += 1
                continue
            latest[item.clean.article.id] = item  # later offsets win
        return cls(
            items=items,
            survivors=list(latest.values()),
            rejected=rejected,
            superseded=len(items) - rejected - len(poison) - len(latest),
            poison=poison,
        )

    def report(self) -> IndexReport:
        """What the batch became: every message in exactly one outcome."""
        reasons: dict[RejectReason, int] = {}
        for item in self.items:
            if item.reject is not None:
                reasons[item.reject] = reasons.get(item.reject, 0) + 1
        return IndexReport(
            consumed=len(self.items),
            indexed=len(self.indexed),
            duplicate=self.superseded + len(self.duplicates),
            rejected=self.rejected,
            dlq=len(self.poison),
            rejected_by_reason=reasons,
        )
