"""POST /admin/reindex and GET /admin/reindex/{id} (in-memory record sink, no Milvus): only an
admin key starts or reads a job; a start is recorded in the audit (action ``reindex``) before the
job runs and answers 202 with the job's id; the job's progress says when it failed and why; an
unknown job answers 404."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from search_api.acked_producer import Record
from search_api.app import create_app
from search_api.backend import Backend
from search_api.security import key_fingerprint, needs_admin

from probes import wait_until

READ_KEY = "read-key-of-the-reindex-routes"
ADMIN_KEY = "admin-key-of-the-reindex-routes"


class Sink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def send(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


def _api(tmp_path: Any) -> tuple[TestClient, Sink]:
    # No Milvus URI: the job fails at its first step, with the configuration message.
    settings = Settings(
        data_dir=tmp_path,
        api_search_events=False,
        api_read_keys=[SecretStr(READ_KEY)],
        api_admin_keys=[SecretStr(ADMIN_KEY)],
        kafka_audit_topic="t.audit",
    )
    sink = Sink()
    return TestClient(create_app(settings, backend=Backend(settings), sink=sink)), sink


def test_only_an_admin_key_starts_or_reads_a_reindex(tmp_path: Any) -> None:
    api, sink = _api(tmp_path)
    read = {"X-API-Key": READ_KEY}
    assert api.post("/admin/reindex", headers=read).status_code == 403
    assert api.get("/admin/reindex/abc", headers=read).status_code == 403
    assert sink.records == []
    assert needs_admin("GET", "/admin/reindex/abc") and not needs_admin("GET", "/search")


def test_a_started_reindex_is_audited_and_its_progress_says_why_it_failed(tmp_path: Any) -> None:
    api, sink = _api(tmp_path)
    admin = {"X-API-Key": ADMIN_KEY}
    started = api.post("/admin/reindex", json={"reason": "new index"}, headers=admin)
    assert started.status_code == 202, started.text
    job = started.json()["id"]
    [record] = sink.records
    entry = json.loads(record.value or b"")
    assert entry["action"] == "reindex" and entry["reason"] == "new index"
    assert entry["by"] == key_fingerprint(ADMIN_KEY)

    def progress() -> dict[str, Any]:
        answer = api.get(f"/admin/reindex/{job}", headers=admin)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    wait_until(lambda: progress()["phase"] == "failed", 10, "the job to fail")
    assert "NEWSSTREAM_MILVUS_URI" in progress()["error"]
    assert api.get("/admin/reindex/unknown", headers=admin).status_code == 404
