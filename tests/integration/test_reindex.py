"""Reindex under load against the local broker and Milvus, with a real worker process: while
search traffic runs through the API and new articles and deletes flow through the worker, the
collection is rebuilt from its stored rows and the alias swapped (on a collection made before
aliases, so the first swap also renames it); no search fails, none returns an empty page, no
article is lost, no deleted one comes back, and both collections hold the same rows. Then a
rollback serves the previous collection again, still current; a retry after the old build is
dropped embeds nothing (the stored vectors of the same model are reused)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from core.kafka import ensure_topics
from core.settings import Settings
from newsstream.cli.app import app as cli
from producers.publisher import Publisher
from store.aliases import resolve
from store.client import connect
from store.embed_cache import EmbeddingCache
from store.reindex import Reindexer, drop_old, embedding_cache_path, status
from store.writer import ArticleWriter

from conftest import require_shared_data
from probes import milvus_ids, read_topic, wait_for_lag_zero, wait_until
from running import serving
from worker_procs import bbc_articles, publish_tombstones, settings_env, start_worker

pytestmark = pytest.mark.integration

SEEDED = 30
DURING = 16
DELETED = 4


class SearchLoad:
    """Searches through the API on a thread until stopped, counting failures and empty pages."""

    def __init__(self, base: str, queries: list[str]) -> None:
        self.base = base
        self.queries = queries
        self.done = 0
        self.failures: list[str] = []
        self.empty: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="search-load", daemon=True)

    def __enter__(self) -> SearchLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as http:
            n = 0
            while not self._stop.is_set():
                query = self.queries[n % len(self.queries)]
                mode = ("semantic", "hybrid")[n % 2]
                n += 1
                try:
                    answer = http.get("/search", params={"q": query, "k": 5, "mode": mode})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{query!r} {mode}: {exc}")
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{query!r} {mode}: {answer.status_code} {answer.text}")
                elif not answer.json()["results"]:
                    self.empty.append(f"{query!r} {mode}")
                self.done += 1


def _ids_of(settings: Settings, collection: str) -> set[str]:
    return milvus_ids(settings.model_copy(update={"milvus_collection": collection}))


@pytest.fixture
def worker(make_settings: Any, unique_name: str, tmp_path: Path) -> Iterator[Settings]:
    settings = make_settings(api_search_events=False, kafka_audit_topic=f"{unique_name}.audit")
    ensure_topics(settings)
    process = start_worker(settings, tmp_path / "worker.log")
    try:
        yield settings
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_reindex_under_load_then_rollback_and_a_warm_retry(worker: Settings, embedder: Any) -> None:
    settings = worker
    bbc = require_shared_data("eval", "bbc-news")
    articles = list(bbc_articles(bbc, SEEDED + DURING))
    seeded, during = articles[:SEEDED], articles[SEEDED:]
    deleted = [a.id for a in seeded[:DELETED]]
    client = connect(settings.milvus_uri or "")
    ArticleWriter.open(client, settings, embedder.dimension)  # before the worker's first poll
    publisher = Publisher(settings)
    assert publisher.publish(seeded, timeout_s=30) == {a.id for a in seeded}
    wait_until(lambda: len(milvus_ids(settings)) == SEEDED, 180, "the seeded articles indexed")
    cache = EmbeddingCache(embedding_cache_path(settings))
    queries = [a.title for a in seeded[DELETED : DELETED + 6]]

    def traffic() -> None:
        # New articles and deletes reach the worker while the reindex copies and swaps.
        for n, article in enumerate(during):
            publisher.publish([article], timeout_s=30)
            if n < len(deleted):
                publish_tombstones(settings, [deleted[n]])
            time.sleep(0.4)

    with serving(settings, embedder) as base, SearchLoad(base, queries) as load:
        writer_thread = threading.Thread(target=traffic, name="traffic")
        writer_thread.start()
        result = Reindexer(settings, client, embedder, cache).run()
        writer_thread.join(60)
        wait_for_lag_zero(settings)
        wait_until(lambda: load.done > 20, 60, "searches after the swap")
    publisher.close()

    expected = {a.id for a in articles} - set(deleted)
    name = settings.milvus_collection
    assert result.phase == "done" and result.target == f"{name}_v2"
    assert result.source == f"{name}_v1"  # the real collection, renamed by the first swap
    assert load.failures == [] and load.empty == [], (load.failures, load.empty)
    serving_now = resolve(client, name)
    assert serving_now.is_alias and serving_now.collection == f"{name}_v2"
    assert serving_now.mirror == f"{name}_v1"
    assert milvus_ids(settings) == expected  # through the alias: nothing lost, no delete undone
    assert _ids_of(settings, f"{name}_v1") == expected  # the previous one stayed current
    # The worker's model made the stored vectors: reused, not embedded again.
    assert result.reused >= SEEDED - DELETED and result.embedded == 0
    shown = status(client, name)
    assert shown["serving"] == f"{name}_v2" and shown["mirror_role"] == "previous"

    # Rollback from the command line: the previous collection serves again, the abandoned one
    # stays current, and the audit records it.
    env = {k: v for k, v in settings_env(settings).items() if k.startswith("NEWSSTREAM_")}
    rolled = CliRunner().invoke(cli, ["reindex", "--rollback", "--reason", "test"], env=env)
    assert rolled.exit_code == 0, rolled.output
    shown_cli = CliRunner().invoke(cli, ["reindex", "--status", "--json"], env=env)
    assert json.loads(shown_cli.output)["serving"] == f"{name}_v1"
    audit = [json.loads(m.value()) for m in read_topic(settings, settings.kafka_audit_topic)]
    assert [(a["action"], a["details"]["step"], a["reason"]) for a in audit] == [
        ("reindex", "rollback", "test")
    ]
    assert resolve(client, name).collection == f"{name}_v1"
    late = list(bbc_articles(bbc, 2, offset=SEEDED + DURING))
    late_publisher = Publisher(settings)
    assert late_publisher.publish(late, timeout_s=30) == {a.id for a in late}
    late_publisher.close()
    expected |= {a.id for a in late}
    wait_until(lambda: milvus_ids(settings) == expected, 120, "the late articles indexed")
    wait_until(
        lambda: _ids_of(settings, f"{name}_v2") == expected, 30, "the late articles mirrored"
    )

    # The abandoned build is dropped only when asked; a retry then embeds nothing it embedded.
    assert drop_old(client, settings, settle_s=4.0) == f"{name}_v2"
    assert not client.has_collection(f"{name}_v2")
    retry = Reindexer(settings, client, embedder, cache).run()
    assert retry.target == f"{name}_v2"  # the name of the dropped build is free again
    assert retry.embedded == 0 and retry.reused == retry.total == len(expected)
    assert milvus_ids(settings) == expected
    cache.close()
    client.close()
