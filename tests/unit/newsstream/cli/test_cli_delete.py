"""`newsstream delete` and `newsstream audit`: a URL becomes its article id, nothing is deleted
without confirmation, and refusals keep the CLI's exit codes. The API call itself is replaced by
a recorder (the route is covered with a real API in the integration layer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from core.ids import article_id
from newsstream.cli import admin
from newsstream.cli.app import app
from newsstream.ops import api_client
from newsstream.ops.api_client import ApiAnswerError

URL = "https://Example.COM/news/dam?utm_source=rss&b=2&a=1#top"
ID = article_id(link="https://example.com/news/dam?a=1&b=2")


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Deletes the command asked the API for (none reach a network)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSSTREAM_DATA_DIR", str(tmp_path / "data"))
    seen: list[dict[str, Any]] = []

    def delete_article(
        base: str, target: str, reason: str | None, force: bool, key: str | None
    ) -> dict[str, Any]:
        seen.append({"base": base, "id": target, "reason": reason, "force": force, "key": key})
        return {"id": target, "status": "queued", "stored": True, "audit_id": "f" * 32}

    monkeypatch.setattr(api_client, "delete_article", delete_article)
    return seen


def test_a_url_becomes_its_article_id_by_the_id_rule() -> None:
    assert admin.article_target(URL) == ID
    assert admin.article_target(f"  {ID} ") == ID
    # A link that differs only in tracking parameters and fragment is the same article.
    assert admin.article_target("https://example.com/news/dam?b=2&a=1&fbclid=x") == ID


@pytest.mark.parametrize("bad", ["", "dam", "A" * 32, "ftp://example.com/x", "a" * 31])
def test_anything_else_is_a_usage_error(bad: str) -> None:
    with pytest.raises(typer.BadParameter, match="article id"):
        admin.article_target(bad)


def test_yes_deletes_the_id_of_the_url_through_the_api(calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(
        app, ["delete", URL, "--yes", "--reason", "legal", "--api", "http://api.test"]
    )
    assert result.exit_code == 0, result.output
    assert calls == [
        {"base": "http://api.test", "id": ID, "reason": "legal", "force": False, "key": None}
    ]
    assert f"delete of {ID}" in " ".join(result.output.split()) and "queued" in result.output


def test_on_a_terminal_it_asks_and_a_no_deletes_nothing(
    calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "stdin_is_terminal", lambda: True)
    declined = CliRunner().invoke(app, ["delete", ID, "--api", "http://api.test"], input="n\n")
    assert declined.exit_code == 1
    assert f"Delete article {ID}" in declined.output and "not deleted" in declined.output
    assert calls == []
    accepted = CliRunner().invoke(app, ["delete", ID, "--api", "http://api.test"], input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert [c["id"] for c in calls] == [ID]


def test_off_a_terminal_it_needs_yes(
    calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "stdin_is_terminal", lambda: False)
    result = CliRunner().invoke(app, ["delete", ID, "--api", "http://api.test"], input="y\n")
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert calls == []


def test_an_argument_that_is_neither_url_nor_id_exits_2(calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["delete", "not-an-article", "--yes"])
    assert result.exit_code == 2
    assert "article id" in result.output
    assert calls == []


def test_an_api_refusal_is_one_line_and_exit_1(
    calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any) -> dict[str, Any]:
        raise ApiAnswerError("http://api.test/articles/x answered 403 Forbidden with forbidden")

    monkeypatch.setattr(api_client, "delete_article", refuse)
    result = CliRunner().invoke(app, ["delete", ID, "--yes", "--api", "http://api.test"])
    assert result.exit_code == 1
    assert "403" in result.output


def test_the_client_sends_delete_with_reason_force_and_key_and_takes_202() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"id": ID, "status": "queued", "stored": False})

    body = api_client.delete_article(
        "http://api.test", ID, "why", True, "k1", transport=httpx.MockTransport(answer)
    )
    assert body["status"] == "queued"
    request = seen[0]
    assert request.method == "DELETE" and request.url.path == f"/articles/{ID}"
    assert dict(request.url.params) == {"force": "true", "reason": "why"}
    assert request.headers["X-API-Key"] == "k1"


def test_a_200_answer_to_a_delete_is_not_taken_for_an_accepted_delete() -> None:
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "queued"})

    with pytest.raises(ApiAnswerError):
        api_client.delete_article("http://api.test", ID, transport=httpx.MockTransport(answer))


def test_audit_prints_the_records_newest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSSTREAM_DATA_DIR", str(tmp_path / "data"))
    page = {
        "entries": [
            {"id": "1", "at": 1_764_000_100.5, "action": "article.delete", "target": ID,
             "by": "key:0123456789ab", "reason": "[bold]legal[/bold]", "details": {}},
        ],
        "next_before": 7,
    }  # fmt: skip
    asked: list[dict[str, Any]] = []

    def audit(base: str, params: dict[str, Any], key: str | None) -> dict[str, Any]:
        asked.append(params)
        return page

    monkeypatch.setattr(api_client, "audit", audit)
    monkeypatch.setattr(admin.console, "width", 200)  # one table row on one line
    result = CliRunner().invoke(
        app, ["audit", "--action", "article.delete", "--limit", "5", "--api", "http://api.test"]
    )
    assert result.exit_code == 0, result.output
    assert asked == [{"limit": 5, "action": "article.delete"}]
    flat = " ".join(result.output.split())
    assert "key:0123456789ab" in flat and "2025-11-24 16:01:40" in flat
    assert "[bold]legal[/bold]" in flat  # a reason is text, never markup
    assert "--before 7" in flat
    as_json = CliRunner().invoke(app, ["audit", "--json", "--api", "http://api.test"])
    assert json.loads(as_json.output) == page


def test_the_cli_names_the_actions_the_api_records() -> None:
    from search_api.audit import ACTIONS

    assert set(admin.AUDIT_ACTIONS) == set(ACTIONS)
