"""``newsstream explain URL|ID``: is this article searchable, and if not, why.

What goes in: an article id (a URL becomes its id by :func:`core.ids.article_id` in the command
line). What comes out: a :class:`core.ledger.Explanation`: the id's latest ledger record
(:func:`core.ledger.read_record`, one partition read), whether Milvus holds its row now (a
Strong read, so an acknowledged upsert or delete is seen), for a duplicate whether the article
it duplicates is held, whether the keyword index holds it (only where search uses one: a
collection without Milvus BM25 and ``keyword_index`` on), and one plain sentence
(:func:`core.ledger.explain_sentence`).

``searchable`` is what Milvus says now, not what the ledger says: the ledger tells why. Raises
:class:`core.errors.TransientError` when the broker or Milvus does not answer.
"""

from __future__ import annotations

from pymilvus import MilvusClient, MilvusException

from core.errors import TransientError
from core.ledger import Explanation, explanation, read_record
from core.settings import Settings
from store.aliases import keyword_path, resolve
from store.client import milvus_client
from store.keyword_index import KeywordIndex
from store.schema import collection_has_bm25


def held_in_milvus(client: MilvusClient, collection: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` the collection holds now (Strong: every acknowledged write is seen)."""
    if not ids or not client.has_collection(collection):
        return set()
    rows = client.get(collection, ids=ids, output_fields=["id"], consistency_level="Strong")
    return {str(row["id"]) for row in rows}


def explain(settings: Settings, article_id: str) -> Explanation:
    """Look ``article_id`` up in the ledger, Milvus and the keyword index (module docstring)."""
    record = read_record(settings, article_id)
    ids = [article_id]
    if record is not None and record.duplicate_of:
        ids.append(record.duplicate_of)
    client = milvus_client(settings)
    try:
        held = held_in_milvus(client, settings.milvus_collection, ids)
        bm25 = client.has_collection(settings.milvus_collection) and collection_has_bm25(
            client, settings.milvus_collection
        )
        # The keyword index is the serving collection's: after a reindex the configured name
        # is an alias, and each real collection keeps a keyword file of its own.
        serving = resolve(client, settings.milvus_collection)
    except MilvusException as exc:
        raise TransientError(f"Milvus unavailable: {exc}") from exc
    finally:
        client.close()
    in_keywords: bool | None = None
    path = keyword_path(settings.data_dir, serving.collection, serving.properties)
    if settings.keyword_index and not bm25 and path.exists():
        keywords = KeywordIndex(path)
        try:
            in_keywords = keywords.contains(article_id)
        finally:
            keywords.close()
    return explanation(article_id, record, held, in_keywords)
