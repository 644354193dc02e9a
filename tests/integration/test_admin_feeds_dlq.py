"""The admin API's feed registry and DLQ routes against the local broker: feeds added, their
windows changed and removed over HTTP land in the data dir's registry; dead letters are listed
and replayed once; each action is in the audit with the admin key's fingerprint; a read key gets
403 on every one of these routes; invalid input answers 422 with the command line's message
and records nothing; `newsstream dlq replay` records its replay as `cli:<user>`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from consumers.dlq import DlqWriter, dlq_reason
from consumers.item import Origin
from core.errors import InvalidMessage
from core.kafka import ensure_topics
from core.metrics import Stage
from core.settings import Settings
from newsstream.cli.app import app as cli
from newsstream.ops.admin_api import admin_actions
from newsstream.ops.operator_audit import cli_identity
from producers.feeds import MAX_RETENTION_DAYS, feed_id
from producers.registry import FeedRegistry, state_path
from search_api.acked_producer import AckedProducer
from search_api.app import create_app
from search_api.audit import AuditLog, AuditRecord
from search_api.security import key_fingerprint

from probes import read_topic
from worker_procs import settings_env

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-the-admin-route-tests"
READ = "read-key-for-the-admin-route-tests"
AS_ADMIN = {"X-API-Key": ADMIN}
AS_READER = {"X-API-Key": READ}
URL = "https://wire.example/rss"
OTHER = "https://other.example/feed.xml"
POISON = [(f"key-{n}".encode(), f"not an article {n}".encode()) for n in range(3)]


@pytest.fixture
def settings(make_settings: Any, unique_name: str) -> Settings:
    return make_settings(
        api_search_events=False,
        api_admin_keys=[SecretStr(ADMIN)],
        api_read_keys=[SecretStr(READ)],
        kafka_audit_topic=f"{unique_name}.audit",
        kafka_story_edits_topic=f"{unique_name}.story-edits",
    )


@pytest.fixture
def api(settings: Settings, embedder: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings, embedder, admin=admin_actions(settings))) as client:
        yield client


def _audit(settings: Settings, action: str | None = None) -> list[AuditRecord]:
    """The audit's records, oldest first."""
    producer = AckedProducer(settings)
    try:
        return list(reversed(AuditLog(settings, producer).read(200, action).entries))
    finally:
        producer.close()


def _registry(settings: Settings) -> dict[str, int | None]:
    """The data dir's registry feeds: url -> retention window."""
    registry = FeedRegistry(state_path(settings.data_dir))
    try:
        return {spec.url: spec.retention_days for spec in registry.all()}
    finally:
        registry.close()


def _seed_dlq(settings: Settings) -> None:
    """Write :data:`POISON` to the DLQ as the worker's DLQ writer does (decode stage)."""
    ensure_topics(settings)
    writer = DlqWriter(settings)
    reason = dlq_reason(Stage.DECODE, InvalidMessage("not JSON"))
    writer.send(
        [
            (Origin(settings.kafka_topic, 0, n, key, value, ()), reason)
            for n, (key, value) in enumerate(POISON)
        ]
    )
    writer.close()


def test_feeds_added_changed_and_removed_over_http_are_in_the_registry_and_the_audit(
    settings: Settings, api: TestClient
) -> None:
    ident = feed_id(URL)
    added = api.post(
        "/admin/feeds", json={"url": URL, "name": "Wire", "tags": ["a"]}, headers=AS_ADMIN
    )
    assert added.status_code == 201, added.text
    assert added.json()["feed"] == {
        "id": ident, "url": URL, "name": "Wire", "tags": ["a"], "retention_days": None
    }  # fmt: skip
    again = api.post(
        "/admin/feeds", json={"url": URL, "name": "Wire", "retention_days": 7}, headers=AS_ADMIN
    )
    assert again.status_code == 200 and again.json()["created"] is False, again.text
    assert _registry(settings) == {URL: 7}
    listed = api.get("/admin/feeds", headers=AS_ADMIN)
    assert listed.status_code == 200, listed.text
    rows = {row["id"]: row for row in listed.json()["feeds"]}
    assert rows[ident]["origin"] == "registry" and rows[ident]["retention_days"] == 7
    forever = api.patch(
        f"/admin/feeds/{ident}", json={"retention_days": 0, "reason": "legal"}, headers=AS_ADMIN
    )
    assert forever.status_code == 200 and forever.json()["feed"]["retention_days"] == 0
    assert _registry(settings) == {URL: 0}
    default = api.patch(f"/admin/feeds/{ident}", json={"retention_days": None}, headers=AS_ADMIN)
    assert default.status_code == 200 and _registry(settings) == {URL: None}
    removed = api.delete(f"/admin/feeds/{ident}", params={"reason": "gone"}, headers=AS_ADMIN)
    assert removed.status_code == 200, removed.text
    assert _registry(settings) == {}
    assert api.delete(f"/admin/feeds/{ident}", headers=AS_ADMIN).status_code == 404

    records = [r for r in _audit(settings) if r.action.startswith("feed.")]
    assert [(r.action, r.target) for r in records] == [
        ("feed.add", ident),
        ("feed.add", ident),
        ("feed.retention", ident),
        ("feed.retention", ident),
        ("feed.remove", ident),
    ]
    assert {r.by for r in records} == {key_fingerprint(ADMIN)}
    assert records[1].details["retention_days"] == 7 and records[1].details["new"] is False
    assert (records[2].details["was"], records[2].details["retention_days"]) == (7, 0)
    assert records[2].reason == "legal" and records[4].reason == "gone"
    assert added.json()["audit_id"] == records[0].id
    # `GET /audit` shows them to an admin, filtered by action.
    page = api.get("/audit", params={"action": "feed.retention"}, headers=AS_ADMIN)
    assert [e["target"] for e in page.json()["entries"]] == [ident, ident]


def test_a_read_key_gets_403_on_every_feed_and_dlq_route_and_nothing_is_recorded(
    settings: Settings, api: TestClient
) -> None:
    ident = feed_id(URL)
    calls = [
        api.get("/admin/feeds", headers=AS_READER),
        api.post("/admin/feeds", json={"url": URL}, headers=AS_READER),
        api.patch(f"/admin/feeds/{ident}", json={"retention_days": 3}, headers=AS_READER),
        api.delete(f"/admin/feeds/{ident}", headers=AS_READER),
        api.get("/admin/dlq", headers=AS_READER),
        api.post("/admin/dlq/replay", json={}, headers=AS_READER),
    ]
    assert [c.status_code for c in calls] == [403] * len(calls), [c.text for c in calls]
    assert api.get("/admin/feeds", headers=AS_ADMIN).status_code == 200
    assert _registry(settings) == {}
    assert _audit(settings) == []


def test_invalid_input_answers_422_with_the_reason_and_records_nothing(
    settings: Settings, api: TestClient
) -> None:
    bad = {
        "ftp": api.post("/admin/feeds", json={"url": "ftp://wire.example/rss"}, headers=AS_ADMIN),
        "no url": api.post("/admin/feeds", json={"name": "x"}, headers=AS_ADMIN),
        "negative": api.post(
            "/admin/feeds", json={"url": URL, "retention_days": -1}, headers=AS_ADMIN
        ),
        "too long": api.post(
            "/admin/feeds",
            json={"url": URL, "retention_days": MAX_RETENTION_DAYS + 1},
            headers=AS_ADMIN,
        ),
        "no window": api.patch(f"/admin/feeds/{feed_id(URL)}", json={}, headers=AS_ADMIN),
        "stage": api.post("/admin/dlq/replay", json={"stage": "nope"}, headers=AS_ADMIN),
    }
    assert {name: answer.status_code for name, answer in bad.items()} == dict.fromkeys(bad, 422)
    assert "http(s)" in bad["ftp"].json()["error"]["message"]
    for name in ("negative", "too long"):
        assert (
            f"0 (keep forever) to {MAX_RETENTION_DAYS} days" in bad[name].json()["error"]["message"]
        )
    assert "decode" in bad["stage"].json()["error"]["message"]
    # A feed the registry does not hold: 404, and one of the packaged list says where it is.
    unknown = api.patch(
        "/admin/feeds/0123456789abcdef", json={"retention_days": 3}, headers=AS_ADMIN
    )
    assert unknown.status_code == 404 and "no such feed" in unknown.json()["error"]["message"]
    packaged = api.get("/admin/feeds", headers=AS_ADMIN).json()["feeds"][0]
    assert packaged["origin"] == "default"
    refused = api.delete(f"/admin/feeds/{packaged['id']}", headers=AS_ADMIN)
    assert refused.status_code == 404 and "packaged" in refused.json()["error"]["message"]
    assert _registry(settings) == {}
    assert _audit(settings) == []


def test_dead_letters_are_listed_and_replayed_once_over_http_and_the_replay_is_audited(
    settings: Settings, api: TestClient
) -> None:
    _seed_dlq(settings)
    listed = api.get("/admin/dlq", params={"limit": 2}, headers=AS_ADMIN)
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == len(POISON)
    first = listed.json()["messages"][0]
    assert (first["stage"], first["error_class"]) == ("decode", "InvalidMessage")
    assert len(listed.json()["messages"]) == 2

    dry = api.post("/admin/dlq/replay", json={"dry_run": True}, headers=AS_ADMIN).json()
    assert (dry["replayed"], dry["audit_id"]) == (len(POISON), None)
    assert _audit(settings) == []
    done = api.post(
        "/admin/dlq/replay", json={"stage": "decode", "reason": "parser fixed"}, headers=AS_ADMIN
    )
    assert done.status_code == 200, done.text
    assert done.json()["replayed"] == len(POISON) and done.json()["by_stage"] == {"decode": 3}
    requeued = read_topic(settings, settings.kafka_topic)
    assert sorted((m.key(), m.value()) for m in requeued) == sorted(POISON)
    again = api.post("/admin/dlq/replay", json={}, headers=AS_ADMIN).json()
    assert (again["replayed"], again["audit_id"]) == (0, None)

    (record,) = _audit(settings, "dlq.replay")
    assert (record.target, record.by, record.reason) == (
        "decode", key_fingerprint(ADMIN), "parser fixed"
    )  # fmt: skip
    assert record.details["messages"] == len(POISON) and record.id == done.json()["audit_id"]


def test_the_cli_replay_is_audited_as_the_user_who_ran_it(
    make_settings: Any, unique_name: str
) -> None:
    settings = make_settings(kafka_audit_topic=f"{unique_name}.audit")
    _seed_dlq(settings)
    result = CliRunner().invoke(cli, ["dlq", "replay", "--json"], env=settings_env(settings))
    assert result.exit_code == 0, result.output
    (record,) = _audit(settings, "dlq.replay")
    assert (record.target, record.by) == ("all", cli_identity())
    assert record.by.startswith("cli:") and record.details["messages"] == len(POISON)


def test_feed_commands_are_audited_as_the_user_who_ran_them(
    make_settings: Any, unique_name: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_audit_topic=f"{unique_name}.audit")
    env = settings_env(settings)
    runner = CliRunner()
    opml = tmp_path / "more.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline type="rss" text="Other" xmlUrl="' + OTHER + '"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    for args in (
        ["feeds", "add", URL, "--retention-days", "7"],
        ["feeds", "update", URL, "--retention-days", "0"],
        ["feeds", "remove", URL],
        ["feeds", "import", str(opml)],
    ):
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 0, f"{args}: {result.output}"
        assert "not recorded" not in result.output
    records = _audit(settings)
    assert [(r.action, r.target, r.by) for r in records] == [
        ("feed.add", feed_id(URL), cli_identity()),
        ("feed.retention", feed_id(URL), cli_identity()),
        ("feed.remove", feed_id(URL), cli_identity()),
        ("feed.add", feed_id(OTHER), cli_identity()),
    ]
    assert records[0].details["retention_days"] == 7 and records[1].details["was"] == 7
    assert records[3].details["opml"] == "more.opml" and _registry(settings) == {OTHER: None}
