"""In-process stand-ins for what the worker's steps talk to outside the process: the model,
Milvus (the upsert and the story search) and the DLQ broker. Each can be switched "away" (an
outage: it raises a transient error) and records what it acknowledged, in one shared event log
with the commits, so a test can check the order things happened in. Also the articles, items
and batches the step tests feed in."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from arroyo.backends.kafka import KafkaPayload

from consumers.clean import Clean
from consumers.dedup_stage import DedupStage, index_params
from consumers.embed import Embed
from consumers.item import Batch, Deletion, Item, Origin
from core.article import DELETE_REASON_HEADER, Article, DeleteReason
from core.errors import TransientError
from core.ids import article_id
from core.ledger import LedgerRecord
from core.settings import Settings
from dedup.index import DedupIndex
from dedup.memory_backend import MemoryBackend
from store.row import ArticleRow

DIM = 8
PUBLISHED = 1_700_000_000
#: Marks a text whose embedding comes back unusable (NaN), as a broken model would return it.
NAN_MARK = "zzznanzzz"

_WORDS = [
    "harbour",
    "council",
    "river",
    "budget",
    "school",
    "storm",
    "election",
    "hospital",
    "railway",
    "bridge",
    "farmers",
    "museum",
    "festival",
    "court",
    "minister",
    "police",
    "market",
    "energy",
    "water",
    "housing",
    "airport",
    "science",
    "football",
    "concert",
    "library",
    "village",
    "forest",
    "island",
    "mayor",
    "teachers",
    "doctors",
    "nurses",
    "strike",
    "company",
    "factory",
    "prices",
    "wages",
    "taxes",
    "exports",
    "harvest",
    "drought",
    "flood",
    "wildfire",
    "volcano",
    "earthquake",
    "satellite",
    "rocket",
    "telescope",
    "vaccine",
    "trial",
    "verdict",
    "protest",
    "parliament",
    "senate",
    "treaty",
    "border",
    "ferry",
    "tunnel",
    "highway",
    "cyclists",
    "marathon",
    "orchestra",
    "painter",
    "novelist",
]


def article(
    n: int, *, text: str | None = None, title: str | None = None, url: str | None = None
) -> Article:
    """Article ``n``: an English text of its own (no two share enough to be near-duplicates)."""
    rng = random.Random(n)
    body = text or (
        "Officials said the "
        + " ".join(rng.choice(_WORDS) for _ in range(40))
        + " would be reviewed next week."
    )
    link = url or f"https://example.org/news/{n}"
    return Article(
        id=article_id(link=link),
        url=link,
        source="example.org",
        feed_id="f",
        title=title
        if title is not None
        else f"Report {n} on the " + " ".join(rng.sample(_WORDS, 4)),
        summary=body,
        published_at=PUBLISHED,
    )


def tombstone(article_id: str, reason: bytes | None = None) -> KafkaPayload:
    """A delete of ``article_id`` as the admin API and retention send it."""
    headers = [] if reason is None else [(DELETE_REASON_HEADER, reason)]
    return KafkaPayload(article_id.encode(), None, headers)


def origin(offset: int, value: bytes = b"x") -> Origin:
    return Origin(
        topic="news.articles", partition=0, offset=offset, key=None, value=value, headers=()
    )


#: Never set: the steps retry for as long as an outage lasts.
STOP = threading.Event()


def clean_item(a: Article, offset: int = 0, produced_at_ms: int | None = None) -> Item:
    """Article ``a`` as the per-batch steps get it: decoded at ``offset`` and cleaned."""
    return Clean()(Item(produced_at_ms=produced_at_ms, origin=origin(offset), article=a))


def delete_item(a: Article, offset: int, reason: DeleteReason = DeleteReason.DELETED) -> Item:
    """The decoded tombstone of article ``a`` at ``offset``."""
    return Item(produced_at_ms=None, origin=origin(offset), delete=Deletion(a.id, reason))


def memory_dedup() -> DedupStage:
    """A dedup stage over an in-memory index with the default settings."""
    params = index_params(Settings())
    return DedupStage(DedupIndex(MemoryBackend(params), params))


def embedded(*articles: Article) -> Batch:
    """One batch of ``articles`` (every one a survivor) after the embed step, with
    :class:`FakeEmbedder` vectors."""
    items = [clean_item(a, n, produced_at_ms=1) for n, a in enumerate(articles)]
    return Embed(FakeEmbedder())(Batch.of(items))


class Events:
    """One ordered log shared by the fakes and the commit recorder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[tuple[str, Any]] = []

    def add(self, what: str, detail: Any) -> None:
        with self._lock:
            self.log.append((what, detail))

    def index(self, what: str, predicate: Any = None) -> int:
        with self._lock:
            for n, (name, detail) in enumerate(self.log):
                if name == what and (predicate is None or predicate(detail)):
                    return n
        raise AssertionError(f"no {what} event in {self.log}")


class FakeEmbedder:
    """Deterministic vectors of ``DIM``; NaN for a text holding :data:`NAN_MARK`."""

    model_name = "fake-model"
    dimension = DIM

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        vectors = np.zeros((len(texts), DIM), dtype=np.float32)
        for n, text in enumerate(texts):
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:4]))
            vectors[n] = rng.random(DIM) + 0.1
            if NAN_MARK in text:
                vectors[n, 0] = np.nan
        return vectors


class FakeMilvus:
    """The upsert: stores rows by id; while ``away`` it raises a transient error; while
    ``hold`` is clear it blocks (a slow acknowledgement)."""

    def __init__(self, events: Events | None = None) -> None:
        self.events = events or Events()
        self.rows: dict[str, ArticleRow] = {}
        self.away = False
        self.hold = threading.Event()
        self.hold.set()
        self.calls = 0
        self.short_counts = 0  # upserts that acknowledge one row less than sent

    def upsert(self, rows: list[ArticleRow]) -> int:
        self.calls += 1
        self.hold.wait()
        if self.away:
            raise TransientError("Milvus is away")
        if self.short_counts:
            self.short_counts -= 1
            return len(rows) - 1
        for row in rows:
            self.rows[row.id] = row
        self.events.add("upsert", [row.id for row in rows])
        return len(rows)

    def delete(self, ids: list[str]) -> int:
        """The writer's delete: the rows go (an id not there is a no-op)."""
        self.calls += 1
        self.hold.wait()
        if self.away:
            raise TransientError("Milvus is away")
        for ident in ids:
            self.rows.pop(ident, None)
        self.events.add("delete", list(ids))
        return 0


class FakeDlq:
    """The DLQ sink: records what it acknowledged; while ``away`` it raises a transient error."""

    def __init__(self, events: Events | None = None) -> None:
        self.events = events or Events()
        self.sent: list[tuple[Origin, str]] = []
        self.away = False
        self.attempts = 0

    def send(self, items: list[tuple[Origin, str]], timeout_s: float = 30.0) -> None:
        self.attempts += 1
        if self.away:
            raise TransientError("DLQ broker is away")
        self.sent.extend(items)
        self.events.add("dlq", [origin.offset for origin, _ in items])


class FakeLedger:
    """The ledger sink: records what it acknowledged; while ``away`` it raises a transient
    error."""

    def __init__(self, events: Events | None = None) -> None:
        self.events = events or Events()
        self.records: list[LedgerRecord] = []
        self.away = False
        self.attempts = 0

    def send(self, records: list[LedgerRecord]) -> None:
        self.attempts += 1
        if self.away:
            raise TransientError("ledger broker is away")
        self.records.extend(records)
        self.events.add("ledger", [record.article_id for record in records])

    def latest(self) -> dict[str, LedgerRecord]:
        """The last acknowledged record of each id (what compaction keeps)."""
        return {record.article_id: record for record in self.records}


class OwnStories:
    """Story clustering that gives every row its own story (records the rows it saw)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.forgotten: list[str] = []

    def assign(self, rows: Sequence[ArticleRow]) -> list[ArticleRow]:
        self.seen.extend(row.id for row in rows)
        return [replace(row, story_id=row.id) for row in rows]

    def forget(self, ids: Collection[str]) -> None:
        self.forgotten.extend(ids)


class RecordingDedup:
    """A real dedup stage whose ``record`` calls go into the event log."""

    def __init__(self, inner: Any, events: Events) -> None:
        self._inner = inner
        self._events = events

    def partition(self, items: Any) -> Any:
        return self._inner.partition(items)

    def record(self, items: Any) -> None:
        self._events.add("record", [item.article_id for item in items])
        self._inner.record(items)

    def remove(self, article_ids: Any) -> None:
        self._events.add("forget", list(article_ids))
        self._inner.remove(article_ids)
