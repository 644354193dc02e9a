"""DELETE /articles/{id} and the audit against the local broker and Milvus: the tombstone lands
where the article's own messages are, with its reason; the audit lists the delete with the key's
fingerprint, newest first, a bounded page at a time; `newsstream delete` and `newsstream audit`
do the same through a served API; and, with a real worker, a deleted article leaves the index
and search."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from core.article import DELETE_REASON_HEADER
from core.ids import article_id
from core.kafka import ensure_topics
from core.settings import Settings
from newsstream.cli.app import app as cli
from producers.publisher import Publisher
from search_api.app import create_app
from search_api.security import key_fingerprint
from store.client import connect
from store.writer import ArticleWriter

from probes import read_topic, wait_until
from running import running_worker, serving
from worker_procs import news_article, stored_row

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-the-delete-tests"
READ = "read-key-for-the-delete-tests"
URLS = [f"https://delete{n}.example/news/{n}" for n in range(3)]


@pytest.fixture
def stored(make_settings: Any, embedder: Any, unique_name: str) -> Iterator[Settings]:
    """Settings with keys whose collection holds the rows of :data:`URLS`, each article also
    published on the articles topic (as a feed producer would)."""
    settings = make_settings(
        api_search_events=False,
        api_admin_keys=[SecretStr(ADMIN)],
        api_read_keys=[SecretStr(READ)],
        kafka_story_edits_topic=f"{unique_name}.story-edits",
        kafka_audit_topic=f"{unique_name}.audit",
    )
    titles = [f"Bridge {n} closes for repairs" for n in range(len(URLS))]
    vectors = embedder.embed(titles)
    rows = [
        stored_row(url, title, f"{title}. More soon.", vector, embedder.model_name)
        for url, title, vector in zip(URLS, titles, vectors, strict=True)
    ]
    client = connect(settings.milvus_uri)
    assert ArticleWriter.open(client, settings, embedder.dimension).upsert(rows) == len(rows)
    client.close()
    ensure_topics(settings)
    publisher = Publisher(settings)
    articles = [
        news_article(url, t, t, "delete.example") for url, t in zip(URLS, titles, strict=True)
    ]
    assert publisher.publish(articles, timeout_s=30) == {a.id for a in articles}
    publisher.close()
    yield settings


def test_the_tombstone_lands_in_the_partition_of_the_article_with_its_reason(
    stored: Settings, embedder: Any
) -> None:
    target = article_id(link=URLS[1])
    with TestClient(create_app(stored, embedder)) as api:
        answer = api.delete(f"/articles/{target}", headers={"X-API-Key": ADMIN})
    assert answer.status_code == 202, answer.text
    assert answer.json()["stored"] is True
    messages = [m for m in read_topic(stored, stored.kafka_topic) if m.key() == target.encode()]
    article, tombstone = messages  # the article, then its delete, in one partition's order
    assert article.value() is not None and tombstone.value() is None
    assert tombstone.partition() == article.partition()
    assert tombstone.offset() > article.offset()
    assert dict(tombstone.headers() or [])[DELETE_REASON_HEADER] == b"deleted"


def test_the_audit_lists_deletes_newest_first_with_the_key_fingerprint(
    stored: Settings, embedder: Any
) -> None:
    admin = {"X-API-Key": ADMIN}
    first, second = (article_id(link=url) for url in URLS[:2])
    with TestClient(create_app(stored, embedder)) as api:
        deleted = api.delete(f"/articles/{first}", params={"reason": "duplicate"}, headers=admin)
        assert deleted.status_code == 202
        assert api.delete(f"/articles/{second}", headers=admin).status_code == 202
        assert api.get("/audit", headers={"X-API-Key": READ}).status_code == 403
        page = api.get("/audit", params={"action": "article.delete"}, headers=admin)
        one = api.get("/audit", params={"limit": 1}, headers=admin).json()
        older = api.get("/audit", params={"before": one["next_before"]}, headers=admin).json()
        splits = api.get("/audit", params={"action": "story.split"}, headers=admin).json()
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    assert [e["target"] for e in entries] == [second, first]
    assert {e["by"] for e in entries} == {key_fingerprint(ADMIN)}
    assert ADMIN not in page.text
    assert entries[1]["reason"] == "duplicate" and entries[1]["action"] == "article.delete"
    assert entries[0]["at"] >= entries[1]["at"]
    # A bounded page and the rest after it.
    assert [e["target"] for e in one["entries"]] == [second]
    assert [e["target"] for e in older["entries"]] == [first] and older["next_before"] is None
    assert splits["entries"] == []


def test_the_cli_deletes_by_url_and_the_audit_shows_it(stored: Settings, embedder: Any) -> None:
    target = article_id(link=URLS[2])
    env = {"NEWSSTREAM_API_KEY": ADMIN, "NEWSSTREAM_DATA_DIR": str(stored.data_dir)}
    runner = CliRunner()
    with serving(stored, embedder) as base:
        deleted = runner.invoke(
            cli, ["delete", URLS[2] + "?utm_source=rss", "--yes", "--api", base], env=env
        )
        audit = runner.invoke(cli, ["audit", "--json", "--api", base], env=env)
        refused = runner.invoke(
            cli, ["delete", target, "--yes", "--api", base], env={**env, "NEWSSTREAM_API_KEY": READ}
        )
    assert deleted.exit_code == 0, deleted.output
    assert target in deleted.output
    assert audit.exit_code == 0, audit.output
    assert target in audit.output and key_fingerprint(ADMIN) in audit.output
    assert refused.exit_code == 1 and "403" in refused.output


#: (url, title, summary) of articles the worker indexes in the end-to-end test.
STORIES = [
    (
        "https://harbour.example/2026/lighthouse-keepers-return",
        "Lighthouse keepers return to the northern harbour after forty years",
        "The harbour authority hired three lighthouse keepers again after automated lamps failed "
        "repeatedly during winter storms, and fishing crews welcomed the return of a staffed "
        "light on the northern breakwater.",
    ),
    (
        "https://orchard.example/2026/apple-harvest-record",
        "Valley orchards report a record apple harvest after a mild spring",
        "Growers across the valley picked more apples than in any year on record, crediting a "
        "frost-free spring and a wet summer, and cider makers expect prices to fall this autumn.",
    ),
]


def test_a_deleted_article_leaves_the_index_and_search_and_the_audit_shows_it(
    make_settings: Any, embedder: Any, unique_name: str
) -> None:
    settings = make_settings(
        api_search_events=False,
        kafka_story_edits_topic=f"{unique_name}.story-edits",
        kafka_audit_topic=f"{unique_name}.audit",
    )
    ensure_topics(settings)
    articles = [news_article(url, title, text, url.split("/")[2]) for url, title, text in STORIES]
    gone, kept = articles
    runner = CliRunner()
    env = {"NEWSSTREAM_DATA_DIR": str(settings.data_dir)}
    with running_worker(settings, embedder), serving(settings, embedder) as base:
        publisher = Publisher(settings)
        assert publisher.publish(articles, timeout_s=30) == {a.id for a in articles}
        publisher.close()

        def status(article: Any) -> int:
            return httpx.get(f"{base}/articles/{article.id}", timeout=10).status_code

        wait_until(lambda: status(gone) == status(kept) == 200, 120, "both articles indexed")
        deleted = runner.invoke(
            cli, ["delete", gone.url, "--yes", "--reason", "test", "--api", base], env=env
        )
        assert deleted.exit_code == 0, deleted.output
        wait_until(lambda: status(gone) == 404, 60, "the deleted article to answer 404")
        for query in (gone.title, "lighthouse keepers harbour"):
            for mode in ("semantic", "hybrid"):
                found = httpx.get(
                    f"{base}/search", params={"q": query, "k": 10, "mode": mode}, timeout=30
                ).json()["results"]
                assert gone.id not in {r["id"] for r in found}, (query, mode, found)
        assert status(kept) == 200
        audit = runner.invoke(
            cli, ["audit", "--action", "article.delete", "--json", "--api", base], env=env
        )
    assert audit.exit_code == 0, audit.output
    [entry] = json.loads(audit.output)["entries"]
    assert entry["target"] == gone.id and entry["reason"] == "test" and entry["by"] == "loopback"
