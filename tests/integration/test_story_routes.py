"""Story routes against a real Milvus 2.3.5 server and the local broker: the timeline, the story
link of search results, and the admin split (its Kafka record, its rules, its keys, its repeat,
and a broker that does not answer)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from core.ids import article_id
from core.settings import Settings
from newsstream.cli.app import app as cli
from newsstream.stack.launchers import free_port
from search_api.app import create_app
from search_api.security import key_fingerprint
from store.client import connect
from store.row import encode_sources
from store.writer import ArticleWriter

from probes import read_topic
from running import serving
from worker_procs import stored_row

pytestmark = pytest.mark.integration

T0 = 1_760_000_000

#: (slug, title, published_at, ingested_at, story slug, also reported by)
ROWS = [
    ("seed", "Dam bursts after week of rain", T0, T0 + 10, "seed", []),
    ("early", "Rain warning issued for valley towns", T0 - 600, T0 + 20, "seed", []),
    ("undated", "Rescuers reach villages cut off by dam flood", 0, T0 + 300, "seed", []),
    (
        "later",
        "Dam flood: death toll rises",
        T0 + 3600,
        T0 + 3700,
        "seed",
        [{"source": "echo.example", "url": "https://echo.example/dam"}],
    ),
    ("other", "Chess club crowns a teenage champion", T0 + 50, T0 + 60, "other", []),
]


def url_of(slug: str) -> str:
    return f"https://{slug}.example/news/{slug}"


def id_of(slug: str) -> str:
    return article_id(link=url_of(slug))


@pytest.fixture
def story(
    make_settings: Any, embedder: Any, milvus_server_uri: str, unique_name: str
) -> Iterator[Settings]:
    """Settings whose collection holds the two stories of :data:`ROWS` (on the 2.3.5 server)."""
    settings = make_settings(
        milvus_uri=milvus_server_uri,
        api_search_events=False,
        kafka_story_edits_topic=f"{unique_name}.story-edits",
        kafka_audit_topic=f"{unique_name}.audit",
    )
    vectors = embedder.embed([title for _, title, *_ in ROWS])
    rows = [
        stored_row(
            url_of(slug),
            title,
            f"{title}. More on this as it develops.",
            vector,
            embedder.model_name,
            published_at=published,
            ingested_at=ingested,
            story_id=id_of(story_slug),
            also_reported_by=encode_sources(also),
        )
        for (slug, title, published, ingested, story_slug, also), vector in zip(
            ROWS, vectors, strict=True
        )
    ]
    client = connect(milvus_server_uri)
    assert ArticleWriter.open(client, settings, embedder.dimension).upsert(rows) == len(rows)
    client.close()
    yield settings


def test_timeline_lists_the_story_in_time_order_with_its_summary(
    story: Settings, embedder: Any
) -> None:
    with TestClient(create_app(story, embedder)) as api:
        response = api.get(f"/stories/{id_of('seed')}")
    assert response.status_code == 200, response.text
    body = response.json()
    # The undated article sorts by the time it was ingested; "other" is another story.
    assert [a["id"] for a in body["articles"]] == [
        id_of(s) for s in ("early", "seed", "undated", "later")
    ]
    assert body["story_id"] == id_of("seed")
    assert body["title"] == "Dam bursts after week of rain"  # the seed's, not the earliest's
    assert body["count"] == 4 and body["truncated"] is False
    assert body["first_seen"] == T0 - 600 and body["last_seen"] == T0 + 3600
    outlets = ["early", "seed", "undated", "later", "echo"]
    assert body["sources"] == [f"{name}.example" for name in outlets]
    undated, later = body["articles"][2], body["articles"][3]
    assert undated["published_at"] is None and undated["ingested_at"] == T0 + 300
    assert later == {
        "id": id_of("later"),
        "title": "Dam flood: death toll rises",
        "url": url_of("later"),
        "source": "later.example",
        "published_at": T0 + 3600,
        "ingested_at": T0 + 3700,
        "also_reported_by": [{"source": "echo.example", "url": "https://echo.example/dam"}],
        "url_api": f"/articles/{id_of('later')}",
    }


@pytest.mark.parametrize(
    "story_id", ["not-an-id", "0" * 32, "A" * 32, '" or story_id != "', "f" * 31 + "\\"]
)
def test_malformed_and_unknown_stories_are_404(
    story: Settings, embedder: Any, story_id: str
) -> None:
    with TestClient(create_app(story, embedder)) as api:
        response = api.get(f"/stories/{story_id}")
        assert response.status_code == 404
        assert response.json() == {
            "error": {"code": "not_found", "message": "no story with this id"}
        }
        split = api.post(f"/stories/{story_id}/split", json={"article_ids": [id_of("later")]})
        assert split.status_code == 404
        wrong = api.delete(f"/stories/{story_id}/split")
        assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"


def test_a_long_story_lists_its_earliest_500_and_says_truncated(
    make_settings: Any, embedder: Any, milvus_server_uri: str
) -> None:
    settings = make_settings(milvus_uri=milvus_server_uri, api_search_events=False)
    rng = np.random.default_rng(7)
    seed = id_of("long-0")
    # Published in reverse order of their ids' creation, so Milvus's own order is not time's.
    rows = [
        stored_row(
            url_of(f"long-{n}"),
            f"Update {n}",
            f"Update {n} on the long story.",
            rng.standard_normal(embedder.dimension).astype("float32"),
            embedder.model_name,
            published_at=T0 + 1000 - n,
            story_id=seed,
        )
        for n in range(505)
    ]
    client = connect(milvus_server_uri)
    assert ArticleWriter.open(client, settings, embedder.dimension).upsert(rows) == len(rows)
    client.close()
    with TestClient(create_app(settings, embedder)) as api:
        body = api.get(f"/stories/{seed}").json()
    assert body["truncated"] is True and body["count"] == 505
    assert len(body["articles"]) == 500
    times = [a["published_at"] for a in body["articles"]]
    assert times == sorted(times) and times[0] == T0 + 1000 - 504
    assert seed not in {a["id"] for a in body["articles"]}  # the seed is the latest here
    assert body["title"] == "Update 0"  # ... and still names the story
    assert body["first_seen"] == T0 + 1000 - 504 and body["last_seen"] == T0 + 1000


def test_search_and_similar_results_link_their_story(story: Settings, embedder: Any) -> None:
    with TestClient(create_app(story, embedder)) as api:
        results = api.get("/search", params={"q": "dam flood", "collapse": "false"}).json()
        by_id = {r["id"]: r for r in results["results"]}
        assert by_id[id_of("later")]["story_url"] == f"/stories/{id_of('seed')}"
        assert by_id[id_of("other")]["story_url"] == f"/stories/{id_of('other')}"
        timeline = api.get(by_id[id_of("later")]["story_url"])
        assert timeline.status_code == 200 and timeline.json()["count"] == 4
        similar = api.get(f"/articles/{id_of('seed')}/similar", params={"k": 4}).json()
        assert {r["story_url"] for r in similar["results"]} == {
            f"/stories/{id_of('seed')}",
            f"/stories/{id_of('other')}",
        }


def _edits(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    return [
        (m.key().decode(), json.loads(m.value()))
        for m in read_topic(settings, settings.kafka_story_edits_topic)
    ]


def test_split_moves_the_articles_records_them_and_repeats_to_the_same_result(
    story: Settings, embedder: Any
) -> None:
    seed, moved = id_of("seed"), [id_of("later"), id_of("undated")]
    before = time.time()
    with TestClient(create_app(story, embedder)) as api:
        response = api.post(
            f"/stories/{seed}/split",
            json={"article_ids": moved, "reason": "the rescue is its own story"},
        )
        assert response.status_code == 200, response.text
        # The new story's id is its earliest article's: "undated" (ingested T0+300).
        expected = {"story_id": seed, "new_story_id": id_of("undated"), "moved": 2, "remaining": 2}
        assert response.json() == expected
        old = api.get(f"/stories/{seed}").json()
        new = api.get(f"/stories/{id_of('undated')}").json()
        assert [a["id"] for a in old["articles"]] == [id_of("early"), seed]
        assert [a["id"] for a in new["articles"]] == [id_of("undated"), id_of("later")]
        assert new["title"] == "Rescuers reach villages cut off by dam flood"
        assert api.get(f"/articles/{id_of('later')}").json()["story_id"] == id_of("undated")
        # The moved rows keep everything else, their vectors included.
        similar = api.get(f"/articles/{id_of('later')}/similar", params={"k": 1}).json()
        assert similar["results"]

        edits = _edits(story)
        assert sorted(key for key, _ in edits) == sorted(moved)
        for key, value in edits:
            assert value == {
                "article_id": key,
                "story_id": id_of("undated"),
                "previous_story_id": seed,
                "at": value["at"],
                "by": "loopback",
                "reason": "the rescue is its own story",
            }
            assert before - 1 <= value["at"] <= time.time() + 1

        again = api.post(
            f"/stories/{seed}/split",
            json={"article_ids": list(reversed(moved)), "reason": "the rescue is its own story"},
        )
        assert again.status_code == 200 and again.json() == expected
        assert api.get(f"/stories/{seed}").json() == old
        assert api.get(f"/stories/{id_of('undated')}").json() == new
        # Both runs are in the audit too, newest first.
        audit = api.get("/audit", params={"action": "story.split"}).json()["entries"]
        assert [(e["target"], e["by"]) for e in audit] == [(seed, "loopback")] * 2
        assert audit[1]["details"] == {"new_story_id": id_of("undated"), "article_ids": moved}
        assert audit[1]["reason"] == "the rescue is its own story"


@pytest.mark.parametrize(
    ("article_ids", "fragment"),
    [
        (["seed", "later"], "list the story's other articles instead"),
        (["other"], "is not in story"),
        (["nowhere"], "is not stored"),
        ([], "article_ids"),
        (["later", "not-an-id"], "not an article id"),
    ],
)
def test_a_split_the_rules_refuse_is_422_and_changes_nothing(
    story: Settings, embedder: Any, article_ids: list[str], fragment: str
) -> None:
    ids = [s if s == "not-an-id" else id_of(s) for s in article_ids]
    with TestClient(create_app(story, embedder)) as api:
        before = api.get(f"/stories/{id_of('seed')}").json()
        response = api.post(f"/stories/{id_of('seed')}/split", json={"article_ids": ids})
        assert response.status_code == 422, response.text
        assert fragment in response.json()["error"]["message"]
        assert api.get(f"/stories/{id_of('seed')}").json() == before
        assert api.get(f"/stories/{id_of('other')}").json()["count"] == 1


def test_splitting_needs_an_admin_key_when_keys_are_configured(
    story: Settings, embedder: Any
) -> None:
    locked = story.model_copy(
        update={
            "api_read_keys": [SecretStr("reader-key")],
            "api_admin_keys": [SecretStr("s3cret-admin-key")],
        }
    )
    body = {"article_ids": [id_of("later")]}
    path = f"/stories/{id_of('seed')}/split"
    with TestClient(create_app(locked, embedder)) as api:
        assert api.post(path, json=body).status_code == 401
        refused = api.post(path, json=body, headers={"X-API-Key": "reader-key"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        reader = {"X-API-Key": "reader-key"}
        assert api.get(f"/stories/{id_of('seed')}", headers=reader).json()["count"] == 4
        done = api.post(path, json=body, headers={"X-API-Key": "s3cret-admin-key"})
        assert done.status_code == 200, done.text
        assert done.json()["new_story_id"] == id_of("later")
    [(key, value)] = _edits(story)
    assert key == id_of("later") and value["reason"] is None
    assert value["by"] == key_fingerprint("s3cret-admin-key")
    assert "s3cret" not in json.dumps(value)


def test_a_broker_that_does_not_answer_is_a_503_and_moves_nothing(
    story: Settings, embedder: Any
) -> None:
    offline = story.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    with TestClient(create_app(offline, embedder)) as api:
        response = api.post(
            f"/stories/{id_of('seed')}/split", json={"article_ids": [id_of("later")]}
        )
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
        assert response.headers["Retry-After"]
        assert api.get(f"/stories/{id_of('seed')}").json()["count"] == 4
        assert api.get(f"/articles/{id_of('later')}").json()["story_id"] == id_of("seed")


def test_the_stories_commands_show_and_split_through_the_api(
    story: Settings, embedder: Any
) -> None:
    locked = story.model_copy(
        update={"api_read_keys": [SecretStr("reader")], "api_admin_keys": [SecretStr("admin")]}
    )
    runner = CliRunner()
    seed = id_of("seed")
    with serving(locked, embedder) as base:
        shown = runner.invoke(
            cli,
            ["stories", "show", seed, "--api", base, "--json"],
            env={"NEWSSTREAM_API_KEY": "reader"},
        )
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["count"] == 4
        split = ["stories", "split", seed, id_of("later"), "--reason", "own story", "--api", base]
        refused = runner.invoke(cli, [*split, "--api-key", "reader"])
        assert refused.exit_code == 1
        assert "403" in refused.stderr and "needs an admin key" in refused.stderr
        done = runner.invoke(cli, [*split, "--api-key", "admin"])
        assert done.exit_code == 0, done.output
        assert f"moved 1 article(s) from story {seed} (3 left)" in done.stdout
    [(_, value)] = _edits(story)
    assert value["reason"] == "own story"
