"""Dedup inside the real worker: copies are not indexed again, the kept article names the
other outlets that carried it, and the outcome counters add up to the messages consumed."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from consumers.dedup_stage import REBUILD_SLICE_S, _recent_rows, build_index
from core.kafka import ensure_topics
from producers.publisher import Publisher
from search_api.app import create_app
from store.client import connect
from store.row import encode_sources
from store.schema import VECTOR_FIELD
from store.writer import ArticleWriter

from probes import milvus_count, wait_for_lag_zero, wait_until
from running import running_worker
from worker_procs import news_article

pytestmark = pytest.mark.integration

STORY = (
    "Floodwaters swept through three villages in the northern province on Tuesday after days "
    "of torrential rain, forcing thousands of residents to leave their homes, local officials "
    "said, as rescue teams used boats to reach families stranded on rooftops near the river."
)
OTHER = (
    "The central bank kept its main interest rate unchanged on Thursday, saying inflation was "
    "easing more slowly than expected and that borrowing costs would stay high for some time, "
    "while markets had priced in a small cut before the announcement in the capital."
)


def test_copies_are_duplicates_and_the_kept_article_lists_the_other_outlets(
    make_settings: Any, embedder: Any
) -> None:
    settings = make_settings(worker_batch_time_s=1.0)
    ensure_topics(settings)
    kept = news_article(
        "https://wire.example/floods", "Floods force thousands from homes", STORY, "wire.example"
    )
    exact = news_article(
        "https://daily.example/a/1", "Floods force thousands from homes", STORY, "daily.example"
    )
    near = news_article(
        "https://gazette.example/floods-update",
        "Update 1: Floods force thousands from homes",
        STORY + " (AFP)",
        "gazette.example",
    )
    different = news_article(
        "https://money.example/rates", "Central bank holds rates", OTHER, "money.example"
    )
    publisher = Publisher(settings)
    assert publisher.publish([kept]) == {kept.id}
    with running_worker(settings, embedder) as worker:
        wait_until(lambda: milvus_count(settings) == 1, 120, "the first article indexed")
        assert publisher.publish([exact, near, different]) == {exact.id, near.id, different.id}
        wait_for_lag_zero(settings, 120)
        wait_until(lambda: milvus_count(settings) == 2, 60, "the distinct article indexed")
        tally = worker.tally.snapshot()
        assert tally["consumed"] == 4
        assert tally["indexed"] == 2 and tally["duplicate"] == 2
        assert (
            tally["consumed"]
            == tally["indexed"] + tally["duplicate"] + tally["rejected"] + tally["dlq"]
        )

        with TestClient(create_app(settings, embedder)) as api:
            body = api.get(
                "/search", params={"q": "floods force thousands from homes", "k": 5}
            ).json()
            first = body["results"][0]
            assert first["id"] == kept.id
            also = {entry["source"]: entry["url"] for entry in first["also_reported_by"]}
            assert also == {"daily.example": exact.url, "gazette.example": near.url}
            assert api.get(f"/articles/{exact.id}").status_code == 404
    publisher.close()


def test_same_story_in_other_words_shares_a_story_id_and_collapses(
    make_settings: Any, embedder: Any
) -> None:
    settings = make_settings(worker_batch_time_s=1.0)
    ensure_topics(settings)
    first = news_article(
        "https://wire.example/quake",
        "Strong earthquake hits southern Japan",
        "A magnitude 7.1 earthquake struck off the southern coast of Japan on Monday, shaking "
        "buildings in several cities and prompting a brief tsunami warning, officials said.",
        "wire.example",
    )
    retold = news_article(
        "https://herald.example/japan-quake",
        "Japan shaken by powerful offshore quake",
        "Buildings swayed across southern Japan after a magnitude 7.1 offshore earthquake on "
        "Monday; authorities briefly warned of a tsunami, and no major damage was reported.",
        "herald.example",
    )
    unrelated = news_article(
        "https://money.example/rates", "Central bank holds rates", OTHER, "money.example"
    )
    # Same topic, same words, another event: it must start a story of its own.
    other_quake = news_article(
        "https://herald.example/chile-quake",
        "Strong earthquake hits northern Chile",
        "A magnitude 6.2 earthquake struck off the northern coast of Chile on Tuesday, shaking "
        "buildings in Antofagasta and prompting a brief tsunami alert, officials said.",
        "herald.example",
    )
    publisher = Publisher(settings)
    assert publisher.publish([first, unrelated]) == {first.id, unrelated.id}
    with running_worker(settings, embedder):
        wait_until(lambda: milvus_count(settings) == 2, 120, "the first articles indexed")
        assert publisher.publish([retold, other_quake]) == {retold.id, other_quake.id}
        wait_until(lambda: milvus_count(settings) == 4, 120, "the retold story indexed")
        with TestClient(create_app(settings, embedder)) as api:
            stored = {
                a: api.get(f"/articles/{a}").json() for a in (first.id, retold.id, unrelated.id)
            }
            assert stored[retold.id]["story_id"] == stored[first.id]["story_id"] == first.id
            assert stored[unrelated.id]["story_id"] == unrelated.id
            other = api.get(f"/articles/{other_quake.id}").json()
            assert other["story_id"] == other_quake.id, "another quake is another event"
            body = api.get("/search", params={"q": "earthquake in Japan", "k": 5}).json()
            ids = [r["id"] for r in body["results"]]
            assert len({first.id, retold.id} & set(ids)) == 1, "one result per story"
            top = body["results"][0]
            assert top["story_id"] == first.id
            assert {e["source"] for e in top["also_reported_by"]} == (
                {"herald.example", "wire.example"} - {top["source"]}
            )
            loose = api.get("/search", params={"q": "earthquake in Japan", "collapse": "false"})
            assert {first.id, retold.id} <= {r["id"] for r in loose.json()["results"]}

            # An admin's split sticks when the article is published again (here: updated).
            split = api.post(f"/stories/{first.id}/split", json={"article_ids": [retold.id]})
            assert split.status_code == 200, split.text
            updated = news_article(
                retold.url, retold.title, (retold.summary or "") + " Updated.", "herald.example"
            )
            assert updated.id == retold.id
            assert publisher.publish([updated]) == {retold.id}
            wait_until(
                lambda: api.get(f"/articles/{retold.id}").json()["text"].endswith("Updated."),
                120,
                "the updated article indexed",
            )
            assert api.get(f"/articles/{retold.id}").json()["story_id"] == retold.id
    publisher.close()


def test_a_restarted_worker_rebuilds_its_dedup_window_from_milvus_slice_by_slice(
    make_settings: Any, embedder: Any
) -> None:
    """Rows older than the window are left out; rows from several hour slices, the newest
    beyond the last slice's start, are all recorded, and a copy of one of them is caught."""
    settings = make_settings(dedup_window_hours=10.0)
    client = connect(settings.milvus_uri)
    writer = ArticleWriter.open(client, settings, embedder.dimension)
    now = int(time.time())
    ages = {"old": 11 * 3600, "a": 5 * 3600 + 7, "b": REBUILD_SLICE_S // 2, "c": 0, "d": -30}
    texts = {name: " ".join(f"{name}word{j}" for j in range(40)) for name in ages}  # distinct
    vectors = embedder.embed(list(texts.values()))
    rows = [
        {
            "id": f"{i:032x}",
            VECTOR_FIELD: np.asarray(vectors[i]).tolist(),
            "title": name,
            "text": texts[name],
            "url": f"https://rebuild.example/{name}",
            "source": "rebuild.example",
            "feed_id": "rebuild",
            "language": "en",
            "published_at": now - ages[name],
            "ingested_at": now - ages[name],
            "story_id": f"{i:032x}",
            "model": "test",
            "content_hash": "",
            "also_reported_by": encode_sources([]),
        }
        for i, name in enumerate(ages)
    ]
    assert writer.upsert(rows) == len(rows)
    # The 2.3.5 server shows fresh rows to a query iterator a few seconds after a Strong query
    # sees them (pymilvus falls back to a client-side MVCC timestamp with that server); a worker
    # restarting reads rows written well before, so wait for what the rebuild would see.
    wait_until(
        lambda: sum(1 for _ in _recent_rows(client, settings, now - 10 * 3600)) == 4,
        60,
        "the window's rows visible to a query iterator",
    )
    index = build_index(settings, client)
    assert index.size() == 4  # every row but "old"
    copy = index.check("f" * 32, rows[2]["text"], float(now))
    assert copy.duplicate_of == rows[2]["id"]
    # A copy of the row older than the window is new again.
    assert index.check("e" * 32, rows[0]["text"], float(now)).duplicate_of is None
