"""The operator actions behind the admin API's feed and DLQ routes, made from the settings.

What goes in: the API's settings. What comes out: :func:`admin_actions`, the
:class:`search_api.admin_routes.AdminActions` that ``newsstream serve`` gives the app: the feed
registry changes of :class:`newsstream.ops.feed_admin.FeedAdmin` and the DLQ listing and replay
of :mod:`newsstream.ops.dlq`, the very functions ``newsstream feeds`` and ``newsstream dlq`` run,
each recording its audit record (with the caller the route names) before it changes anything.
"""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from newsstream.ops.dlq import dlq_listing, replay_dlq
from newsstream.ops.feed_admin import FeedAdmin, status_json
from search_api.admin_routes import AdminActions
from search_api.audit import AuditLog


class RegistryFeeds:
    """:class:`search_api.feed_routes.FeedActions` on the registry of the settings' data dir."""

    def __init__(self, settings: Settings) -> None:
        self._admin = FeedAdmin(settings)

    def list_feeds(self) -> list[dict[str, Any]]:
        return [status_json(row) for row in self._admin.statuses()]

    def add(
        self,
        audit: AuditLog,
        by: str,
        url: str,
        name: str,
        tags: list[str],
        retention_days: int | None,
        reason: str | None,
    ) -> dict[str, Any]:
        change = self._admin.add(audit, by, url, name, tuple(tags), retention_days, reason)
        return change.as_json()

    def set_retention(
        self, audit: AuditLog, by: str, feed: str, retention_days: int | None, reason: str | None
    ) -> dict[str, Any]:
        return self._admin.set_retention(audit, by, feed, retention_days, reason).as_json()

    def remove(self, audit: AuditLog, by: str, feed: str, reason: str | None) -> dict[str, Any]:
        return self._admin.remove(audit, by, feed, reason).as_json()


class TopicDlq:
    """:class:`search_api.dlq_routes.DlqActions` on the settings' DLQ topic."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def listing(self, limit: int) -> dict[str, Any]:
        return dlq_listing(self._settings, limit)

    def replay(
        self, audit: AuditLog, by: str, stage: str | None, dry_run: bool, reason: str | None
    ) -> dict[str, Any]:
        report = replay_dlq(self._settings, stage, dry_run, audit=audit, by=by, reason=reason)
        return report.as_json()


def admin_actions(settings: Settings) -> AdminActions:
    """The admin API's feed and DLQ actions for ``settings``."""
    return AdminActions(feeds=RegistryFeeds(settings), dlq=TopicDlq(settings))
