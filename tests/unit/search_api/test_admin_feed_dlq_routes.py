"""The feed and DLQ admin routes' contract with the actions they are given (in-memory actions
and an in-memory record sink): they stand in the app's own route table, answer 201 for a new
feed and 200 for a change, map invalid input to 422, an unknown feed to 404 and an audit record
the broker did not take to 503, name the caller's key (never the key) to the actions, and let
only an admin key through."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.errors import InvalidInput, TransientError
from core.settings import Settings
from search_api.acked_producer import Record
from search_api.admin_routes import AdminActions
from search_api.app import create_app
from search_api.audit import AuditLog
from search_api.security import key_fingerprint

ADMIN = "admin-key-of-the-route-contract"
READ = "read-key-of-the-route-contract"


def _ident(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class Sink:
    """Records sent, or a broker that does not acknowledge."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.down = False

    def send(self, records: Sequence[Record]) -> None:
        if self.down:
            raise TransientError("no acknowledgement")
        self.records.extend(records)


class Feeds:
    """A registry in memory that records each change first, as the real actions do."""

    def __init__(self) -> None:
        self.feeds: dict[str, dict[str, Any]] = {}

    def list_feeds(self) -> list[dict[str, Any]]:
        return [
            {**feed, "origin": "registry", "last_fetch_at": None, "last_result": None,
             "last_error": None, "items": 0, "next_poll_at": None, "error_streak": 0}
            for feed in self.feeds.values()
        ]  # fmt: skip

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
        if not url.startswith("https://"):
            raise InvalidInput(f"a feed URL must be http(s)://host/...; found {url!r}")
        ident = _ident(url)
        record = audit.record("feed.add", ident, by, reason, {"url": url})
        created = ident not in self.feeds
        self.feeds[ident] = {
            "id": ident, "url": url, "name": name, "tags": tags, "retention_days": retention_days
        }  # fmt: skip
        return {"feed": self.feeds[ident], "created": created, "audit_id": record.id}

    def set_retention(
        self, audit: AuditLog, by: str, feed: str, retention_days: int | None, reason: str | None
    ) -> dict[str, Any]:
        if feed not in self.feeds:
            raise LookupError(f"{feed}: no such feed in the registry")
        record = audit.record("feed.retention", feed, by, reason, {})
        self.feeds[feed]["retention_days"] = retention_days
        return {"feed": self.feeds[feed], "created": False, "audit_id": record.id}

    def remove(self, audit: AuditLog, by: str, feed: str, reason: str | None) -> dict[str, Any]:
        if feed not in self.feeds:
            raise LookupError(f"{feed}: it comes from the packaged default list")
        record = audit.record("feed.remove", feed, by, reason, {})
        return {"feed": self.feeds.pop(feed), "created": False, "audit_id": record.id}


class Dlq:
    """Three dead letters of the decode stage, replayed once."""

    def __init__(self) -> None:
        self.pending = 3

    def listing(self, limit: int) -> dict[str, Any]:
        message = {
            "partition": 0, "offset": 0, "key": "k", "stage": "decode",
            "error_class": "InvalidMessage", "error_message": "not JSON",
            "original_topic": "news.articles", "original_partition": 0, "original_offset": 5,
            "value_bytes": 3, "value_preview": "abc",
        }  # fmt: skip
        return {"total": self.pending, "messages": [message] * min(limit, self.pending)}

    def replay(
        self, audit: AuditLog, by: str, stage: str | None, dry_run: bool, reason: str | None
    ) -> dict[str, Any]:
        sent, audit_id = self.pending, None
        if sent and not dry_run:
            audit_id = audit.record("dlq.replay", stage or "all", by, reason, {}).id
            self.pending = 0
        return {
            "read": 3, "already_replayed": 3 - sent, "other_stage": 0, "replayed": sent,
            "dry_run": dry_run, "by_stage": {"decode": sent}, "audit_id": audit_id,
        }  # fmt: skip


def _api() -> tuple[TestClient, Sink]:
    settings = Settings(
        api_search_events=False,
        api_admin_keys=[SecretStr(ADMIN)],
        api_read_keys=[SecretStr(READ)],
    )
    sink = Sink()
    app = create_app(settings, sink=sink, admin=AdminActions(feeds=Feeds(), dlq=Dlq()))
    # No lifespan: these routes never reach Milvus or the model.
    return TestClient(app, headers={"X-API-Key": ADMIN}), sink


def _actions(sink: Sink) -> list[tuple[str, str]]:
    return [
        (json.loads(r.value or b"")["action"], json.loads(r.value or b"")["by"])
        for r in sink.records
    ]


def test_feed_routes_answer_each_outcome_and_record_the_caller() -> None:
    api, sink = _api()
    url = "https://wire.example/feeds/rss.xml"
    ident = _ident(url)
    added = api.post("/admin/feeds", json={"url": url, "tags": ["x"]})
    assert added.status_code == 201, added.text
    assert added.json()["feed"]["id"] == ident and added.json()["audit_id"]
    assert api.post("/admin/feeds", json={"url": url}).status_code == 200
    bad = api.post("/admin/feeds", json={"url": "ftp://wire.example/rss"})
    assert bad.status_code == 422 and "http(s)" in bad.json()["error"]["message"]
    kept = api.patch(f"/admin/feeds/{ident}", json={"retention_days": 0})
    assert kept.status_code == 200 and kept.json()["feed"]["retention_days"] == 0
    assert api.patch(f"/admin/feeds/{ident}", json={}).status_code == 422  # window required
    assert [f["id"] for f in api.get("/admin/feeds").json()["feeds"]] == [ident]
    assert api.delete(f"/admin/feeds/{ident}", params={"reason": "gone"}).status_code == 200
    missing = api.delete(f"/admin/feeds/{ident}")
    assert missing.status_code == 404 and "packaged" in missing.json()["error"]["message"]
    assert api.patch(f"/admin/feeds/{ident}", json={"retention_days": 1}).status_code == 404
    who = key_fingerprint(ADMIN)
    assert _actions(sink) == [
        ("feed.add", who), ("feed.add", who), ("feed.retention", who), ("feed.remove", who)
    ]  # fmt: skip
    assert all(ADMIN.encode() not in (r.value or b"") for r in sink.records)


def test_an_audit_record_the_broker_did_not_take_answers_503_and_changes_nothing() -> None:
    api, sink = _api()
    sink.down = True
    answer = api.post("/admin/feeds", json={"url": "https://wire.example/rss"})
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    sink.down = False
    assert api.get("/admin/feeds").json()["feeds"] == []


def test_dlq_routes_list_replay_once_and_refuse_an_unknown_stage() -> None:
    api, sink = _api()
    listed = api.get("/admin/dlq", params={"limit": 2}).json()
    assert listed["total"] == 3 and len(listed["messages"]) == 2
    unknown = api.post("/admin/dlq/replay", json={"stage": "nope"})
    assert unknown.status_code == 422 and "decode" in unknown.json()["error"]["message"]
    assert api.post("/admin/dlq/replay", json={"dry_run": True}).json()["audit_id"] is None
    done = api.post("/admin/dlq/replay", json={"stage": "decode"}).json()
    assert done["replayed"] == 3 and done["audit_id"]
    assert api.post("/admin/dlq/replay", json={}).json()["replayed"] == 0
    assert _actions(sink) == [("dlq.replay", key_fingerprint(ADMIN))]


def test_only_an_admin_key_passes_and_the_routes_are_in_the_apps_table() -> None:
    api, sink = _api()
    reader = {"X-API-Key": READ}
    calls = [
        api.get("/admin/feeds", headers=reader),
        api.post("/admin/feeds", json={"url": "https://a.example/rss"}, headers=reader),
        api.patch("/admin/feeds/x", json={"retention_days": 1}, headers=reader),
        api.delete("/admin/feeds/x", headers=reader),
        api.get("/admin/dlq", headers=reader),
        api.post("/admin/dlq/replay", json={}, headers=reader),
    ]
    assert [c.status_code for c in calls] == [403] * len(calls)
    assert sink.records == []
    wrong = api.put("/admin/feeds/x")
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "DELETE, PATCH")
