"""The embedded default store: the PyPI ``milvus`` 2.3 server (no BM25, no group_by).

Against a real server of that kind (started here through ``newsstream.stack.milvus_server``): the
collection is created without the BM25 fields (replacing the half-made leftover the server
leaves when it refuses them), the worker writes every acknowledged row to the FTS5 keyword
index as well, keyword and hybrid search answer through it, copies still list the other outlets
(``also_reported_by`` as a JSON object), and a lost keyword index is rebuilt from Milvus when a
worker starts.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from core.kafka import ensure_topics
from newsstream.stack.launchers import local_milvus_command
from newsstream.stack.milvus_server import GRACEFUL_STOP_S, GRACEFUL_TIME_MS, SESSION_TTL_S
from producers.publisher import Publisher
from search_api.app import create_app
from store.client import connect
from store.keyword_index import KeywordIndex, keyword_index_path
from store.schema import collection_has_bm25, ensure_collection

from news_texts import CHESS, FLOODS, RATES
from probes import milvus_count, wait_for_lag_zero, wait_until
from running import running_worker
from worker_procs import news_article

pytestmark = pytest.mark.integration


def test_keyword_and_hybrid_search_work_without_bm25_in_milvus(
    make_settings: Any, embedder: Any, milvus_server_uri: str
) -> None:
    settings = make_settings(milvus_uri=milvus_server_uri, worker_batch_time_s=1.0)
    ensure_topics(settings)
    floods = news_article(
        "https://wire.example/floods", "Floods force thousands from homes", FLOODS, "wire.example"
    )
    copy = news_article(
        "https://daily.example/a/1", "Floods force thousands from homes", FLOODS, "daily.example"
    )
    rates = news_article(
        "https://money.example/rates", "Central bank holds rates", RATES, "money.example"
    )
    chess = news_article(
        "https://sport.example/chess", "Teenager takes chess title", CHESS, "sport.example"
    )
    publisher = Publisher(settings)
    assert publisher.publish([floods, copy, rates, chess]) == {
        floods.id,
        copy.id,
        rates.id,
        chess.id,
    }
    with running_worker(settings, embedder):
        wait_for_lag_zero(settings, 180)
        wait_until(lambda: milvus_count(settings) == 3, 60, "three distinct articles indexed")
    publisher.close()

    client = connect(milvus_server_uri)
    assert not collection_has_bm25(client, settings.milvus_collection)
    keywords = KeywordIndex(keyword_index_path(settings))
    assert keywords.count() == 3
    with TestClient(create_app(settings, embedder)) as api:
        for mode in ("keyword", "hybrid"):
            body = api.get("/search", params={"q": "grandmaster endgame", "mode": mode}).json()
            assert body["mode"] == mode
            assert body["results"][0]["id"] == chess.id, mode
        default = api.get("/search", params={"q": "floods force thousands from homes"}).json()
        assert default["mode"] == "hybrid"
        # The two copies land on different partitions: either may be the one kept.
        top = default["results"][0]
        kept, other = (floods, copy) if top["id"] == floods.id else (copy, floods)
        assert top["id"] == kept.id
        assert top["also_reported_by"] == [{"source": other.source, "url": other.url}]
        filtered = api.get(
            "/search", params={"q": "interest rate", "mode": "keyword", "source": "sport.example"}
        ).json()
        assert filtered["results"] == []
        assert api.get(f"/articles/{kept.id}").json()["also_reported_by"] == [
            {"source": other.source, "url": other.url}
        ]

    # A lost keyword index is rebuilt from Milvus when a worker starts.
    keywords.close()
    keyword_index_path(settings).unlink()
    for suffix in ("-wal", "-shm"):
        keyword_index_path(settings).with_name(keyword_index_path(settings).name + suffix).unlink(
            missing_ok=True
        )
    with running_worker(settings, embedder):
        rebuilt = KeywordIndex(keyword_index_path(settings))
        wait_until(lambda: rebuilt.count() == 3, 60, "the keyword index rebuilt from Milvus")
        assert [i for i, _ in rebuilt.search("chess", limit=3)] == [chess.id]


def test_a_refused_bm25_schema_leaves_a_usable_collection(
    make_settings: Any, embedder: Any, milvus_server_uri: str
) -> None:
    settings = make_settings(milvus_uri=milvus_server_uri)
    client = connect(milvus_server_uri)
    assert ensure_collection(client, settings, embedder.dimension) is False
    # A second call (another process starting) keeps the collection and its rows.
    client.insert(
        settings.milvus_collection,
        [
            {
                "id": "0" * 32,
                "embedding": [0.1] * embedder.dimension,
                "title": "t",
                "text": "t",
                "url": "https://x.example/",
                "source": "x.example",
                "feed_id": "x",
                "language": "en",
                "published_at": 0,
                "ingested_at": 0,
                "story_id": "0" * 32,
                "model": "m",
                "content_hash": "",
                "also_reported_by": {"sources": []},
            }
        ],
    )
    assert ensure_collection(client, settings, embedder.dimension) is False
    wait_until(lambda: milvus_count(settings) == 1, 30, "the row to stay")


def test_the_launcher_writes_short_sessions_and_graceful_times_into_the_server_config(
    milvus_server_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What `newsstream.stack.milvus_server` sets is what the running server read (a restart waits
    for the old etcd sessions to lapse: 56 s at Milvus's default lease, 25 s at ours)."""
    configs = sorted(tmp_path_factory.getbasetemp().glob("milvus-server*/milvus-server/configs"))
    assert configs, "no config of the module's server found"
    config = yaml.safe_load((configs[-1] / "milvus.yaml").read_text())
    assert config["common"]["session"]["ttl"] == SESSION_TTL_S
    assert config["common"]["gracefulTime"] == GRACEFUL_TIME_MS
    assert config["common"]["gracefulStopTimeout"] == GRACEFUL_STOP_S


def test_the_launcher_refuses_a_port_it_cannot_have_instead_of_moving(tmp_path: Path) -> None:
    """The ``milvus`` wrapper moves a taken port upwards; clients would look in vain at the one
    they were given. The launcher exits with a message naming the port instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        argv = local_milvus_command("server", tmp_path, port)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
