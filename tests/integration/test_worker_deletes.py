"""Deletes through the worker, against the real local broker and Milvus (Milvus Lite, and the
PyPI 2.3 server with the keyword index beside it): a tombstone takes its article out of search,
out of the keyword index, out of the dedup index (the same text published again is indexed, not
a duplicate) and out of the "also reported by" list of the article it was a copy of."""

from __future__ import annotations

from typing import Any

import pytest

from core.kafka import ensure_topics
from core.metrics import SearchMode
from producers.publisher import Publisher
from search_api.filters import SearchFilters
from search_api.searcher import Searcher
from store.client import connect
from store.keyword_index import KeywordIndex, keyword_index_path
from store.row import ArticleRow
from store.schema import VECTOR_FIELD

from news_texts import CHESS, FLOODS, RATES
from probes import milvus_ids, wait_for_lag_zero
from running import running_worker
from worker_procs import news_article, publish_tombstones

pytestmark = pytest.mark.integration

NO_FILTERS = SearchFilters()


@pytest.fixture(params=["lite", "server"])
def store_uri(request: pytest.FixtureRequest, milvus_uri: str) -> str:
    """Milvus Lite (BM25 inside), or the 2.3 server (no BM25: the keyword index beside it)."""
    if request.param == "lite":
        return milvus_uri
    uri: str = request.getfixturevalue("milvus_server_uri")
    return uri


def _stored(client: Any, collection: str, article_id: str) -> ArticleRow:
    rows = client.get(
        collection, ids=[article_id], output_fields=["*", VECTOR_FIELD], consistency_level="Strong"
    )
    assert rows, f"{article_id} is not stored"
    return ArticleRow.from_milvus(rows[0])


def test_a_tombstone_takes_the_article_out_of_every_store(
    make_settings: Any, embedder: Any, store_uri: str
) -> None:
    # One partition: the copy is checked after the article it copies, so which one is kept
    # is known.
    settings = make_settings(milvus_uri=store_uri, kafka_partitions=1, worker_batch_time_s=0.5)
    ensure_topics(settings)
    floods, copy, rates, chess, rates_again = (
        news_article(url, title, text, url.split("/")[2])
        for url, title, text in [
            ("https://wire.example/floods", "Floods force thousands", FLOODS),
            ("https://daily.example/floods", "Floods force thousands", FLOODS),
            ("https://money.example/rates", "Central bank holds rates", RATES),
            ("https://sport.example/chess", "Teenager takes chess title", CHESS),
            ("https://other.example/rates", "Rates on hold", RATES),
        ]
    )
    publisher = Publisher(settings, client_id="test-deletes")
    client = connect(store_uri)
    collection = settings.milvus_collection
    try:
        with running_worker(settings, embedder) as worker:
            publisher.publish([floods])
            wait_for_lag_zero(settings, 120)
            publisher.publish([copy, rates, chess])
            wait_for_lag_zero(settings, 120)
            assert milvus_ids(settings) == {floods.id, rates.id, chess.id}
            listed = _stored(client, collection, floods.id).also_reported_by
            assert [(s.url, s.id) for s in listed] == [(copy.url, copy.id)]

            publish_tombstones(settings, [copy.id])
            publish_tombstones(settings, [rates.id], reason="expired")
            wait_for_lag_zero(settings, 120)
            assert milvus_ids(settings) == {floods.id, chess.id}
            assert _stored(client, collection, floods.id).also_reported_by == ()
            searcher = Searcher(settings, client, embedder)
            for mode in (SearchMode.SEMANTIC, searcher.default_mode()):
                found = searcher.search(
                    "central bank interest rate inflation", k=10, mode=mode, filters=NO_FILTERS
                )
                assert found and rates.id not in {hit.id for hit in found}, mode
            if searcher.keyword_index() is not None:  # the 2.3 server
                keywords = KeywordIndex(keyword_index_path(settings))
                assert keywords.count() == 2
                assert keywords.search("central bank interest rate", limit=5) == []
                keywords.close()

            # The deleted text is in the dedup index no more: another outlet's copy of it is
            # indexed, not a duplicate of an article that is gone.
            publisher.publish([rates_again])
            wait_for_lag_zero(settings, 120)
            assert milvus_ids(settings) == {floods.id, chess.id, rates_again.id}
            snapshot = worker.tally.snapshot()
            assert (snapshot["deleted"], snapshot["expired"]) == (1, 1)
            assert (snapshot["indexed"], snapshot["duplicate"]) == (4, 1)
            assert snapshot["consumed"] == 7
    finally:
        publisher.close()
        client.close()
