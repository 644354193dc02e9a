"""Feed registry changes as audited admin actions, shared by ``newsstream feeds`` and the
admin API (``/admin/feeds``).

What goes in: the settings (the registry of the data dir, :func:`producers.registry.state_path`,
opened by :func:`producers.feed_topic.open_registry`: with a broker, a change goes to the feeds
topic the producers share as well), an audit writer (``None``: no broker is known, see
:mod:`newsstream.ops.operator_audit`), who asks and why. What comes out: :class:`FeedChange`
(the feed as the registry now holds it, whether it was new, the audit record's id).

Each change goes the same way: the input is checked as the registry checks it (URL, retention
bounds: :class:`core.errors.InvalidInput`), the registry is asked whether the feed exists, the
audit record is written (acknowledged by the broker), and only then does the registry method
(:meth:`producers.registry.FeedRegistry.add`, ``set_retention``, ``remove``, or
:func:`producers.feed_topic.remove_from_topic` for a feed only the shared topic holds) make the
change. So an invalid request or an unknown feed leaves no record, and with an audit writer a
change never goes unrecorded; a record whose change then failed can exist, never the reverse.

Actions (:data:`search_api.audit.ACTIONS`): ``feed.add`` (details: url, name, tags,
retention_days, whether the feed was new), ``feed.retention`` (details: url, retention_days
and what it was; None follows ``NEWSSTREAM_RETENTION_DAYS``), ``feed.remove`` (details: url,
and ``shared_only`` when only the feeds topic held it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import NewsstreamError
from core.settings import Settings
from newsstream.ops.operator_audit import audit_settings, cli_audit, cli_identity
from producers.feed_topic import decode_spec, open_registry, read_feed_keys, remove_from_topic
from producers.feeds import FeedSpec, feed_id
from producers.registry import (
    FeedOrigin,
    FeedRegistry,
    FeedStatus,
    check_retention_days,
    feed_statuses,
    parse_opml,
    resolve_feeds,
    state_path,
    validate_url,
)
from producers.state import ProducerState
from search_api.audit import AuditLog


class FeedNotInRegistry(NewsstreamError, LookupError):
    """The registry does not hold the feed; the message says where it comes from instead."""


@dataclass(frozen=True)
class FeedChange:
    """What one change did: the feed now, whether it is new, the audit record (if recorded)."""

    feed: FeedSpec
    created: bool
    audit_id: str | None

    def as_json(self) -> dict[str, Any]:
        return {"feed": feed_json(self.feed), "created": self.created, "audit_id": self.audit_id}


def feed_json(spec: FeedSpec) -> dict[str, Any]:
    """A feed as JSON: id, url, name, tags, retention_days."""
    return {
        "id": spec.id,
        "url": spec.url,
        "name": spec.name,
        "tags": list(spec.tags),
        "retention_days": spec.retention_days,
    }


def status_json(row: FeedStatus) -> dict[str, Any]:
    """One ``feeds list`` row as JSON: the feed, its origin and its poll state."""
    st = row.state
    return {
        **feed_json(row.spec),
        "origin": str(row.origin),
        "last_fetch_at": st.last_fetch_at,
        "last_result": st.last_result,
        "last_error": st.last_error,
        "items": st.items,
        "next_poll_at": st.next_poll_at if st.last_fetch_at else None,
        "error_streak": st.error_streak,
    }


@dataclass(frozen=True)
class OpmlImport:
    """What an OPML import did: feeds in the file, added, already there, outlines skipped
    (with the reason), and whether the additions were recorded in the audit."""

    feeds: int
    added: int
    existing: int
    problems: list[str]
    recorded: bool


class FeedAdmin:
    """The registry of ``settings``' data dir, changed through audited actions."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @contextmanager
    def _registry(self) -> Iterator[FeedRegistry]:
        # The registry the command line changes: with a broker, its changes go to the feeds
        # topic the producers share as well.
        registry = open_registry(self._settings)
        try:
            yield registry
        finally:
            registry.close()

    def statuses(self) -> list[FeedStatus]:
        """Every feed polled (feeds file or packaged list, and the registry) with its status."""
        path = state_path(self._settings.data_dir)
        registry, state = FeedRegistry(path), ProducerState(path)
        try:
            return feed_statuses(self._settings.feeds_file, registry, state)
        finally:
            registry.close()
            state.close()

    def add(
        self,
        audit: AuditLog | None,
        by: str,
        url: str,
        name: str = "",
        tags: tuple[str, ...] = (),
        retention_days: int | None = None,
        reason: str | None = None,
    ) -> FeedChange:
        """Add a feed (or change its name and tags; its window too when ``retention_days``)."""
        clean = validate_url(url)
        days = check_retention_days(retention_days)
        with self._registry() as registry:
            before = registry.get(feed_id(clean))
            details = {
                "url": clean,
                "name": name.strip(),
                "tags": list(tags),
                "retention_days": days,
                "new": before is None,
            }
            record = _record(audit, "feed.add", feed_id(clean), by, reason, details)
            spec, created = registry.add(clean, name, tags, days)
        return FeedChange(spec, created, record)

    def set_retention(
        self,
        audit: AuditLog | None,
        by: str,
        target: str,
        retention_days: int | None,
        reason: str | None = None,
    ) -> FeedChange:
        """Set a registry feed's window (None: follow the global window again).

        Raises :class:`FeedNotInRegistry` when the registry does not hold ``target`` (a URL or
        an id)."""
        days = check_retention_days(retention_days)
        with self._registry() as registry:
            before = self._registered(registry, target)
            details = {"url": before.url, "retention_days": days, "was": before.retention_days}
            record = _record(audit, "feed.retention", before.id, by, reason, details)
            spec = registry.set_retention(before.id, days)
        if spec is None:  # removed by another process between the two calls
            raise FeedNotInRegistry(f"{target}: no such feed in the registry")
        return FeedChange(spec, False, record)

    def remove(
        self, audit: AuditLog | None, by: str, target: str, reason: str | None = None
    ) -> FeedChange:
        """Remove a registry feed (its poll state is kept): from this data dir's registry, or,
        with a broker, from the feeds topic the producers share when only that holds it (a feed
        added on another machine, or published from a feeds file or the packaged list).

        Raises :class:`FeedNotInRegistry` when neither holds ``target``; for a feed of the
        feeds file the message says to edit that file."""
        ident = _ident(target)
        with self._registry() as registry:
            local = registry.get(ident)
            if local is not None:
                record = _record(audit, "feed.remove", ident, by, reason, {"url": local.url})
                return FeedChange(registry.remove(ident) or local, False, record)
            value = read_feed_keys(self._settings).get(ident) if registry.shared else None
            if value is None:
                raise self._not_held(registry, target)
            shared = decode_spec(value)
            details = {"url": shared.url, "shared_only": True}
            record = _record(audit, "feed.remove", ident, by, reason, details)
            return FeedChange(remove_from_topic(self._settings, ident) or shared, False, record)

    def import_opml(
        self, audit: AuditLog | None, by: str, path: Path, reason: str | None = None
    ) -> OpmlImport:
        """Add every feed of an OPML file: one ``feed.add`` record per feed (details name the
        file), all written before :meth:`producers.registry.FeedRegistry.import_opml` adds them.
        An unreadable or unsafe file raises :class:`core.errors.InvalidInput` (nothing
        recorded)."""
        specs, problems = parse_opml(path)
        with self._registry() as registry:
            for spec in specs:
                details = {
                    "url": spec.url,
                    "name": spec.name,
                    "tags": list(spec.tags),
                    "retention_days": spec.retention_days,
                    "new": registry.get(spec.id) is None,
                    "opml": path.name,
                }
                _record(audit, "feed.add", spec.id, by, reason, details)
            added, existing = registry.import_opml(path)
        return OpmlImport(len(specs), added, existing, problems, audit is not None)

    def _registered(self, registry: FeedRegistry, target: str) -> FeedSpec:
        found = registry.get(_ident(target))
        if found is None:
            raise self._not_held(registry, target)
        return found

    def _not_held(self, registry: FeedRegistry, target: str) -> FeedNotInRegistry:
        """The error for a feed the registry lacks: where it comes from instead, if anywhere."""
        key = target.strip()
        elsewhere = [
            r
            for r in resolve_feeds(self._settings.feeds_file, registry)
            if key in (r.spec.url, r.spec.id) and r.origin != FeedOrigin.REGISTRY
        ]
        where = (
            f"it comes from {self._settings.feeds_file or 'the packaged default list'}; "
            "edit that file to change it"
            if elsewhere
            else "no such feed in the registry (`feeds add` it)"
        )
        return FeedNotInRegistry(f"{target}: {where}")


def _ident(target: str) -> str:
    key = target.strip()
    return feed_id(key) if "://" in key else key


def _record(
    audit: AuditLog | None,
    action: str,
    target: str,
    by: str,
    reason: str | None,
    details: dict[str, Any],
) -> str | None:
    """Write the audit record (None without a broker); raises TransientError when the broker
    does not acknowledge it, before anything changed."""
    if audit is None:
        return None
    return audit.record(action, target, by, reason, details).id


@contextmanager
def cli_feed_admin(settings: Settings) -> Iterator[tuple[FeedAdmin, AuditLog | None, str]]:
    """For ``newsstream feeds``: the registry on the broker the producers share (the configured
    one, else the running `up`'s: :func:`newsstream.ops.operator_audit.audit_settings`), the
    audit writer (None without a broker: the caller says the change is unrecorded) and who
    runs the command (``cli:<user>``)."""
    with cli_audit(settings) as audit:
        yield FeedAdmin(audit_settings(settings) or settings), audit, cli_identity()
