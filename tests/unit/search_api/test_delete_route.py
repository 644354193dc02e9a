"""DELETE /articles/{id} and GET /audit in the app as composed (keys, guard, routes), with the
index and Kafka replaced by stand-ins: who may delete, what a delete sends, and what the audit
records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.article import DELETE_REASON_HEADER
from core.errors import TransientError
from core.settings import Settings
from search_api.acked_producer import Record
from search_api.app import create_app
from search_api.audit import AuditRecord
from search_api.backend import Backend
from search_api.security import key_fingerprint

STORED = "a" * 32
UNKNOWN = "b" * 32
READ_KEY = "read-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"


class Rows:
    """Stands in for the searcher: ``get`` knows :data:`STORED`, or raises when away."""

    def __init__(self, away: bool = False) -> None:
        self.away = away

    def get(self, article_id: str) -> dict[str, Any] | None:
        if self.away:
            raise TransientError("Milvus unavailable")
        return {"id": article_id} if article_id == STORED else None


class IndexStandIn(Backend):
    def __init__(self, settings: Settings, rows: Rows) -> None:
        super().__init__(settings)
        self.rows = rows

    def searcher(self) -> Any:
        return self.rows


class Sink:
    """Collects what the app sends to Kafka; fails every send when ``down``."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.down = False

    def send(self, records: Sequence[Record]) -> None:
        if self.down:
            raise TransientError("Kafka did not acknowledge")
        self.records.extend(records)


def make_api(keys: bool = True, away: bool = False) -> tuple[TestClient, Sink, Settings]:
    settings = Settings(
        api_search_events=False,
        api_read_keys=[SecretStr(READ_KEY)] if keys else [],
        api_admin_keys=[SecretStr(ADMIN_KEY)] if keys else [],
        kafka_topic="t.articles",
        kafka_audit_topic="t.audit",
    )
    sink = Sink()
    app = create_app(settings, backend=IndexStandIn(settings, Rows(away)), sink=sink)
    return TestClient(app), sink, settings


def test_an_admin_key_deletes_with_a_tombstone_after_the_audit_record() -> None:
    api, sink, _ = make_api()
    answer = api.delete(
        f"/articles/{STORED}", params={"reason": "legal request"}, headers={"X-API-Key": ADMIN_KEY}
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["id"] == STORED and body["status"] == "queued" and body["stored"] is True
    audit, tomb = sink.records
    # The record comes first: a delete is never published unrecorded.
    assert audit.topic == "t.audit"
    assert (tomb.topic, tomb.key, tomb.value) == ("t.articles", STORED.encode(), None)
    assert tomb.headers[DELETE_REASON_HEADER] == b"deleted"
    assert int(tomb.headers["produced_at"]) > 0
    entry = AuditRecord.model_validate(json.loads(audit.value or b""))
    assert entry.id == body["audit_id"]


def test_the_audit_record_names_the_key_by_fingerprint_never_the_key() -> None:
    api, sink, _ = make_api()
    api.delete(
        f"/articles/{STORED}", params={"reason": "legal request"}, headers={"X-API-Key": ADMIN_KEY}
    )
    raw = sink.records[0].value or b""
    assert ADMIN_KEY.encode() not in raw
    value = json.loads(raw)
    assert set(value) == {"id", "at", "action", "target", "by", "reason", "details"}
    assert value["action"] == "article.delete" and value["target"] == STORED
    assert value["by"] == key_fingerprint(ADMIN_KEY)
    assert value["by"].startswith("key:") and len(value["by"]) == len("key:") + 12
    assert value["reason"] == "legal request" and value["details"] == {"stored": True}
    assert sink.records[0].key == STORED.encode()


def test_a_read_key_gets_403_and_nothing_is_sent() -> None:
    api, sink, _ = make_api()
    answer = api.delete(f"/articles/{STORED}", headers={"X-API-Key": READ_KEY})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"
    assert api.delete(f"/articles/{STORED}").status_code == 401
    assert sink.records == []


def test_without_keys_the_loopback_api_deletes_and_records_loopback() -> None:
    api, sink, _ = make_api(keys=False)
    assert api.delete(f"/articles/{STORED}").status_code == 202
    assert json.loads(sink.records[0].value or b"")["by"] == "loopback"


def test_an_id_the_index_does_not_hold_is_404_unless_forced() -> None:
    api, sink, _ = make_api()
    admin = {"X-API-Key": ADMIN_KEY}
    assert api.delete(f"/articles/{UNKNOWN}", headers=admin).status_code == 404
    assert api.delete("/articles/not-an-id", headers=admin).status_code == 404
    assert sink.records == []
    forced = api.delete(f"/articles/{UNKNOWN}", params={"force": "true"}, headers=admin)
    assert forced.status_code == 202 and forced.json()["stored"] is False
    assert sink.records[-1].key == UNKNOWN.encode() and sink.records[-1].value is None


def test_an_index_that_does_not_answer_does_not_stop_a_delete() -> None:
    api, sink, _ = make_api(away=True)
    answer = api.delete(f"/articles/{UNKNOWN}", headers={"X-API-Key": ADMIN_KEY})
    assert answer.status_code == 202 and answer.json()["stored"] is None
    assert sink.records[-1].value is None


def test_kafka_not_acknowledging_answers_503_with_retry_after() -> None:
    api, sink, _ = make_api()
    sink.down = True
    answer = api.delete(f"/articles/{STORED}", headers={"X-API-Key": ADMIN_KEY})
    assert answer.status_code == 503 and answer.headers["Retry-After"].isdigit()
    assert "Kafka" in answer.json()["error"]["message"]


def test_an_overlong_reason_is_refused() -> None:
    api, sink, _ = make_api()
    answer = api.delete(
        f"/articles/{STORED}", params={"reason": "x" * 501}, headers={"X-API-Key": ADMIN_KEY}
    )
    assert answer.status_code == 422 and sink.records == []


def test_the_audit_needs_an_admin_key_and_knows_its_actions() -> None:
    api, _, _ = make_api()
    assert api.get("/audit", headers={"X-API-Key": READ_KEY}).status_code == 403
    unknown = api.get("/audit", params={"action": "drop"}, headers={"X-API-Key": ADMIN_KEY})
    assert unknown.status_code == 422
    assert "article.delete" in unknown.json()["error"]["message"]


def test_fingerprints_are_stable_and_tell_keys_apart() -> None:
    assert key_fingerprint(ADMIN_KEY) == key_fingerprint(ADMIN_KEY)
    assert key_fingerprint(ADMIN_KEY) != key_fingerprint(READ_KEY)
    assert ADMIN_KEY not in key_fingerprint(ADMIN_KEY)
