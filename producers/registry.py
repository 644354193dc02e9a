"""The feed registry: feeds added by users, persisted in ``<data dir>/producer.sqlite3``.

What goes in: URLs with an optional name, tags and retention window (``newsstream feeds add``
and ``feeds update``), OPML files. What comes out: the feeds to poll, each with its origin, and
their status for ``feeds list``.

A feed's retention window (``retention_days``: None follows ``NEWSSTREAM_RETENTION_DAYS``, 0
keeps the feed's articles forever; see :mod:`producers.retention`) is a nullable column added by
:data:`_MIGRATIONS` to registry files made before it existed. In OPML it is the
``newsstream:retentionDays`` attribute of an outline, in the :data:`OPML_NAMESPACE` namespace,
so other readers ignore it and an export imports back with the same windows.

How registry feeds and config-file feeds merge (:func:`resolve_feeds`):

- The feeds to poll are the feeds of the config file (``NEWSSTREAM_FEEDS_FILE``) plus the
  registry's feeds. A feed is identified by its canonical URL (:func:`producers.feeds.feed_id`),
  so a URL in both is polled once; the registry's name and tags win, because they are the
  latest thing a user typed.
- Without a config file, the packaged curated list stands in for it only while the registry is
  empty: the first ``feeds add`` or ``feeds import`` means the user now chooses the feeds.
- ``feeds remove`` removes registry feeds only; a feed from the config file is removed by
  editing that file (the command says so). Removing a feed keeps its poll state, so adding it
  again does not republish what was already delivered.

Shared by producers: :func:`producers.feed_topic.open_registry` gives the registry a sink that
writes every change to the feeds topic, which the producers' group polls from
(:mod:`producers.shard`); this SQLite file stays the local view, and a producer publishes at
start the local feeds the topic never held (the packaged defaults included).

Guarantees: URLs are validated (http or https with a host) before anything is stored; OPML is
parsed without DTDs or entities (a document that declares entities is refused).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from core.errors import ConfigurationError, InvalidInput
from producers.feeds import MAX_RETENTION_DAYS, FeedSpec, feed_id, load_feeds
from producers.state import FeedState, ProducerState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_registry (
    feed_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    added_at REAL NOT NULL,
    retention_days INTEGER
);
"""
#: Columns added after the first release: (column, its definition), applied to older files.
_MIGRATIONS = (("retention_days", "INTEGER"),)
MAX_OPML_BYTES = 5_000_000
#: The namespace of newsstream's own OPML attributes.
OPML_NAMESPACE = "https://github.com/newsstream/opml"
_RETENTION_ATTR = f"{{{OPML_NAMESPACE}}}retentionDays"
ET.register_namespace("newsstream", OPML_NAMESPACE)
_COLUMNS = "url, name, tags, retention_days"


class FeedOrigin(StrEnum):
    """Where a feed to poll comes from."""

    REGISTRY = "registry"
    FILE = "file"
    DEFAULT = "default"


@dataclass(frozen=True)
class ResolvedFeed:
    """A feed to poll and where it comes from."""

    spec: FeedSpec
    origin: FeedOrigin


@dataclass(frozen=True)
class FeedStatus:
    """One row of ``feeds list``: the feed, its origin and its poll state."""

    spec: FeedSpec
    origin: FeedOrigin
    state: FeedState


def state_path(data_dir: Path) -> Path:
    """The SQLite file shared by the registry and the producer's poll state."""
    return data_dir / "producer.sqlite3"


def validate_url(url: str) -> str:
    """``url`` stripped, or :class:`InvalidInput` when it is not an http(s) URL with a host."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise InvalidInput(f"not a valid URL: {url!r} ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidInput(f"a feed URL must be http(s)://host/...; found {url!r}")
    return text


class RegistrySink(Protocol):
    """Where registry changes go besides SQLite: the feeds topic
    (:class:`producers.feed_topic.FeedTopicWriter`), which producers share."""

    def put(self, specs: Iterable[FeedSpec]) -> None: ...

    def remove(self, feed_id: str) -> None: ...

    def close(self) -> None: ...


class FeedRegistry:
    """Registry feeds in SQLite (thread-safe; several processes may share the file).

    With a ``sink``, every change (add, update, remove, import) is also written to it and
    acknowledged before the method returns; the registry closes it. A sink error
    (:class:`core.errors.TransientError` when Kafka is away) propagates after the local file
    changed: running the same command again is harmless (same key, same value).
    """

    def __init__(self, path: Path, sink: RegistrySink | None = None) -> None:
        self._sink = sink
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        _migrate(self._db)
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """True when changes also go to the feeds topic the producers share."""
        return self._sink is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._sink is not None:
            self._sink.close()

    def add(
        self,
        url: str,
        name: str = "",
        tags: tuple[str, ...] = (),
        retention_days: int | None = None,
    ) -> tuple[FeedSpec, bool]:
        """Add (or update the name and tags of) a feed; returns it and whether it was new.

        ``retention_days`` sets the feed's own window when given; None leaves a registered
        feed's window as it was (a new feed then follows the global window).
        """
        stored, new = self._add_local(url, name, tags, retention_days)
        if self._sink is not None:
            self._sink.put([stored])
        return stored, new

    def _add_local(
        self, url: str, name: str, tags: tuple[str, ...], retention_days: int | None
    ) -> tuple[FeedSpec, bool]:
        days = check_retention_days(retention_days)
        spec = FeedSpec(url=validate_url(url), name=name.strip(), tags=_clean_tags(tags))
        with self._lock:
            existed = self._db.execute(
                "SELECT 1 FROM feed_registry WHERE feed_id=?", (spec.id,)
            ).fetchone()
            self._db.execute(
                "INSERT INTO feed_registry(feed_id, url, name, tags, added_at, retention_days) "
                "VALUES(?,?,?,?,?,?) ON CONFLICT(feed_id) DO UPDATE SET name=excluded.name, "
                "tags=excluded.tags, "
                "retention_days=coalesce(excluded.retention_days, feed_registry.retention_days)",
                (spec.id, spec.url, spec.name, json.dumps(list(spec.tags)), time.time(), days),
            )
        stored = self.get(spec.id)
        return stored or spec, existed is None

    def set_retention(self, url_or_id: str, days: int | None) -> FeedSpec | None:
        """Set a registry feed's own window (None: follow the global one again); returns the
        feed, or None when the registry does not hold it."""
        checked = check_retention_days(days)
        target = _ident(url_or_id)
        with self._lock:
            changed = self._db.execute(
                "UPDATE feed_registry SET retention_days=? WHERE feed_id=?", (checked, target)
            ).rowcount
        spec = self.get(target) if changed else None
        if spec is not None and self._sink is not None:
            self._sink.put([spec])
        return spec

    def remove(self, url_or_id: str) -> FeedSpec | None:
        """Remove a feed by URL or id; returns it, or None when the registry does not hold it."""
        target = _ident(url_or_id)
        found = self.get(target)
        if found is not None:
            with self._lock:
                self._db.execute("DELETE FROM feed_registry WHERE feed_id=?", (target,))
            if self._sink is not None:
                self._sink.remove(target)
        return found

    def get(self, ident: str) -> FeedSpec | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM feed_registry WHERE feed_id=?", (ident,)
            ).fetchone()
        return _spec(row) if row else None

    def all(self) -> list[FeedSpec]:
        """Every registry feed, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM feed_registry ORDER BY added_at, url"
            ).fetchall()
        return [_spec(row) for row in rows]

    def import_opml(self, path: Path) -> tuple[int, int]:
        """Add every feed of an OPML file; returns (added, already there)."""
        added = existing = 0
        stored: list[FeedSpec] = []
        for spec in parse_opml(path)[0]:
            kept, new = self._add_local(spec.url, spec.name, spec.tags, spec.retention_days)
            stored.append(kept)
            added += new
            existing += not new
        if stored and self._sink is not None:
            self._sink.put(stored)
        return added, existing


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns of :data:`_MIGRATIONS` a registry file made by an older release lacks."""
    present = {row[1] for row in db.execute("PRAGMA table_info(feed_registry)")}
    for column, definition in _MIGRATIONS:
        if column in present:
            continue
        try:
            db.execute(f"ALTER TABLE feed_registry ADD COLUMN {column} {definition}")
        except sqlite3.OperationalError as exc:
            # Another process sharing the file added it between our check and our ALTER.
            if "duplicate column" not in str(exc):
                raise


def _ident(url_or_id: str) -> str:
    key = url_or_id.strip()
    return feed_id(key) if "://" in key else key


def check_retention_days(days: int | None) -> int | None:
    """``days`` when it is None or a whole number of days from 0 to the maximum; else
    :class:`InvalidInput` naming what was expected."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_RETENTION_DAYS:
        raise InvalidInput(
            f"a feed's retention must be 0 (keep forever) to {MAX_RETENTION_DAYS} days, "
            f"found {days!r}"
        )
    return days


def _spec(row: tuple[str, str, str, int | None]) -> FeedSpec:
    url, name, tags, retention_days = row
    return FeedSpec(url=url, name=name, tags=tuple(json.loads(tags)), retention_days=retention_days)


def _clean_tags(tags: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    cleaned: list[str] = []
    for tag in tags:
        for part in tag.split(","):
            if part.strip() and part.strip() not in cleaned:
                cleaned.append(part.strip())
    return tuple(cleaned)


def resolve_feeds(feeds_file: Path | None, registry: FeedRegistry) -> list[ResolvedFeed]:
    """The feeds to poll: config file (or packaged defaults) merged with the registry.

    See the module docstring for the rule. Raises :class:`ConfigurationError` when the config
    file is unreadable or malformed.
    """
    registered = registry.all()
    if feeds_file is not None:
        base = [ResolvedFeed(s, FeedOrigin.FILE) for s in load_feeds(feeds_file)]
    elif not registered:
        base = [ResolvedFeed(s, FeedOrigin.DEFAULT) for s in load_feeds(None)]
    else:
        base = []
    merged: dict[str, ResolvedFeed] = {r.spec.id: r for r in base}
    for spec in registered:
        merged[spec.id] = ResolvedFeed(spec, FeedOrigin.REGISTRY)
    return list(merged.values())


def feed_statuses(
    feeds_file: Path | None, registry: FeedRegistry, state: ProducerState
) -> list[FeedStatus]:
    """``feeds list``: every feed to poll with its poll state (fresh state if never polled)."""
    return [
        FeedStatus(r.spec, r.origin, state.feed(r.spec.id, r.spec.url))
        for r in resolve_feeds(feeds_file, registry)
    ]


def parse_opml(path: Path) -> tuple[list[FeedSpec], list[str]]:
    """Feeds of an OPML file and the problems met (outlines skipped, with the reason).

    A nested outline's ``text`` (and a ``category`` attribute) become the feed's tags. Raises
    :class:`InvalidInput` when the file is not OPML or declares entities.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"OPML file {path} cannot be read: {exc}") from exc
    if len(data) > MAX_OPML_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_OPML_BYTES} bytes")
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        raise InvalidInput(f"{path}: OPML with a DTD or entities is refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidInput(f"{path}: not well-formed XML ({exc})") from None
    if root.tag.lower() != "opml" or root.find("body") is None:
        raise InvalidInput(f"{path}: not an OPML document (root <{root.tag}>)")
    feeds: list[FeedSpec] = []
    problems: list[str] = []
    seen: set[str] = set()

    def walk(node: ET.Element, tags: tuple[str, ...]) -> None:
        for outline in node.findall("outline"):
            url = outline.get("xmlUrl") or outline.get("xmlurl") or ""
            label = (outline.get("title") or outline.get("text") or "").strip()
            if not url:
                walk(outline, (*tags, label) if label else tags)
                continue
            try:
                valid = validate_url(url)
            except InvalidInput as exc:
                problems.append(str(exc))
                continue
            category = tuple(c.strip("/ ") for c in (outline.get("category") or "").split(","))
            name = "" if label == url else label  # export writes the URL when unnamed
            try:
                retention = _opml_retention(outline.get(_RETENTION_ATTR))
            except InvalidInput as exc:
                problems.append(f"{valid}: {exc}")
                continue
            spec = FeedSpec(valid, name, _clean_tags((*tags, *category)), retention)
            if spec.id not in seen:
                seen.add(spec.id)
                feeds.append(spec)

    walk(root.find("body"), ())  # type: ignore[arg-type]
    return feeds, problems


def _opml_retention(value: str | None) -> int | None:
    """The ``newsstream:retentionDays`` attribute as days (None when absent)."""
    if value is None:
        return None
    try:
        days = int(value.strip())
    except ValueError:
        raise InvalidInput(f"retentionDays must be a whole number, found {value!r}") from None
    return check_retention_days(days)


def to_opml(feeds: list[FeedSpec], title: str = "newsstream feeds") -> str:
    """An OPML 2.0 document of ``feeds`` (tags in the ``category`` attribute, a feed's own
    retention window in ``newsstream:retentionDays``)."""
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(opml, "body")
    for spec in feeds:
        attrs = {"type": "rss", "text": spec.name or spec.url, "xmlUrl": spec.url}
        if spec.name:
            attrs["title"] = spec.name
        if spec.tags:
            attrs["category"] = ",".join(spec.tags)
        if spec.retention_days is not None:
            attrs[_RETENTION_ATTR] = str(spec.retention_days)
        ET.SubElement(body, "outline", attrs)
    ET.indent(opml)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(opml, encoding="unicode") + "\n"
