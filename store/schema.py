"""The ``news_articles`` collection: its field names, field sizes, schema and index.

The collection is created idempotently and loaded (a reopened collection must be loaded before
search). Where the server supports BM25 functions (Milvus >= 2.5, Milvus Lite 3.x) the ``text``
field feeds a ``sparse`` BM25 field for keyword and hybrid search, and the ``title`` field a
``title_sparse`` one that hybrid search uses to favour the best headline match (collections made
before it existed lack it and still work: :func:`collection_has_title_bm25`); where the server
has no BM25 (for example the PyPI ``milvus`` 2.3.5 server) the collection is created without
them and :func:`collection_has_bm25` says so, so search can degrade to semantic.
:class:`store.row.ArticleRow` is the typed row this schema stores.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

from core.errors import ConfigurationError, TransientError
from core.settings import Settings
from store.fingerprint import ModelStamp, check_fingerprint

log = logging.getLogger(__name__)

#: Field sizes in characters (VARCHAR lengths); producers and workers truncate to these before
#: upserting. Free-text fields get 4 bytes per character in the schema (servers count VARCHAR
#: bytes); ids, hashes, feed ids and language codes are ASCII.
ID_MAX = 64
TITLE_MAX = 1_000
TEXT_MAX = 16_000
URL_MAX = 2_048
SOURCE_MAX = 255
FEED_ID_MAX = 64
LANGUAGE_MAX = 16
MODEL_MAX = 255
HASH_MAX = 64

#: Scalar fields returned with search results and article look-ups.
OUTPUT_FIELDS = [
    "id",
    "title",
    "text",
    "url",
    "source",
    "feed_id",
    "language",
    "published_at",
    "ingested_at",
    "story_id",
    "model",
    "content_hash",
    "also_reported_by",
]
SPARSE_FIELD = "sparse"
#: BM25 sparse field over the title alone (collections made before it existed lack it; search
#: then fuses without it, see :func:`collection_has_title_bm25`).
TITLE_SPARSE_FIELD = "title_sparse"
VECTOR_FIELD = "embedding"
#: Fields Milvus computes from others (BM25 outputs): read back with ``"*"``, never written.
COMPUTED_FIELDS = (SPARSE_FIELD, TITLE_SPARSE_FIELD)


def _schema(client: MilvusClient, dim: int, with_bm25: bool) -> Any:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    if with_bm25:
        schema.add_field("title", DataType.VARCHAR, max_length=TITLE_MAX * 4, enable_analyzer=True)
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX * 4, enable_analyzer=True)
        for source, sparse in (("text", SPARSE_FIELD), ("title", TITLE_SPARSE_FIELD)):
            schema.add_field(sparse, DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name=f"{source}_bm25",
                    function_type=FunctionType.BM25,
                    input_field_names=[source],
                    output_field_names=[sparse],
                )
            )
    else:
        schema.add_field("title", DataType.VARCHAR, max_length=TITLE_MAX * 4)
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX * 4)
    schema.add_field("url", DataType.VARCHAR, max_length=URL_MAX * 4)
    schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_MAX * 4)
    schema.add_field("feed_id", DataType.VARCHAR, max_length=FEED_ID_MAX)
    schema.add_field("language", DataType.VARCHAR, max_length=LANGUAGE_MAX)
    schema.add_field("published_at", DataType.INT64)
    schema.add_field("ingested_at", DataType.INT64)
    schema.add_field("story_id", DataType.VARCHAR, max_length=ID_MAX)
    schema.add_field("model", DataType.VARCHAR, max_length=MODEL_MAX * 4)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=HASH_MAX)
    schema.add_field("also_reported_by", DataType.JSON)
    return schema


def _index_params(client: MilvusClient, settings: Settings, with_bm25: bool) -> Any:
    params = client.prepare_index_params()
    if settings.milvus_index_type == "HNSW":
        vector_params: dict[str, Any] = {
            "M": settings.milvus_hnsw_m,
            "efConstruction": settings.milvus_hnsw_ef_construction,
        }
    elif settings.milvus_index_type == "IVF_FLAT":
        vector_params = {"nlist": 1024}
    else:
        vector_params = {}
    params.add_index(
        VECTOR_FIELD,
        index_type=settings.milvus_index_type,
        metric_type="COSINE",
        params=vector_params,
    )
    if with_bm25:
        for sparse in (SPARSE_FIELD, TITLE_SPARSE_FIELD):
            params.add_index(sparse, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return params


def ensure_collection(
    client: MilvusClient, settings: Settings, dim: int, fingerprint: ModelStamp | None = None
) -> bool:
    """Create the articles collection if missing, check its dimension, load it, and check or
    record the model ``fingerprint`` (see :mod:`store.fingerprint`; None, for synthetic
    vectors in benchmarks and tests, checks the dimension only).

    Returns whether the collection has the BM25 sparse field. Raises
    :class:`ConfigurationError` when an existing collection was made for another dimension or
    another model: mixing models in one collection would make scores meaningless.
    """
    name = settings.milvus_collection
    try:
        if client.has_collection(name) and _bm25_leftover(client, name):
            log.warning("dropping %r: an empty leftover of a refused BM25 schema", name)
            client.drop_collection(name)
        if not client.has_collection(name) and server_predates_bm25(client):
            _create_without_bm25(client, settings, dim)
        if not client.has_collection(name):
            try:
                _create(client, settings, dim, with_bm25=True)
            except MilvusException as exc:
                # Either created concurrently by another process (kept), or refused BM25.
                if not client.has_collection(name) or _bm25_leftover(client, name):
                    log.warning("Milvus refused BM25 fields (%s); creating without them", exc)
                    _create_without_bm25(client, settings, dim)
        existing_dim = collection_dimension(client, name)
        if existing_dim != dim:
            raise ConfigurationError(
                f"collection {name!r} holds {existing_dim}-d vectors but the embedding model "
                f"makes {dim}-d ones: set NEWSSTREAM_MILVUS_COLLECTION to a new name or use "
                "the model the collection was built with"
            )
        client.load_collection(name)
        if fingerprint is not None:
            check_fingerprint(client, name, fingerprint)
        return collection_has_bm25(client, name)
    except MilvusException as exc:
        raise TransientError(f"Milvus error while preparing {name!r}: {exc}") from exc


def server_predates_bm25(client: MilvusClient) -> bool:
    """True when the server says it is a Milvus older than 2.5 (no BM25 functions), so the
    BM25 schema need not be tried; False when it is newer or does not say (then the schema is
    tried and a refusal handled)."""
    try:
        version = str(client.get_server_version())
    except MilvusException:
        return False
    return milvus_version_before(version, (2, 5))


def milvus_version_before(version: str, bound: tuple[int, int]) -> bool:
    """Whether a Milvus server version string (``v2.3.5-lite``, ``2.5.4``) is below ``bound``;
    False for strings that are not Milvus versions (``milvus_lite-3.2.2`` included)."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?", version.strip())
    if match is None:
        return False
    return (int(match.group(1)), int(match.group(2))) < bound


def _bm25_leftover(client: MilvusClient, name: str) -> bool:
    """True for an empty collection that a server without BM25 made half-way from our schema.

    Milvus before 2.5 (the PyPI ``milvus`` 2.3.5 server) accepts the BM25 schema, silently
    dropping the function but keeping the ``SPARSE_FLOAT_VECTOR`` field, then refuses the sparse
    index; loading such a collection aborts its query node (SIGABRT in
    ``segments.NewCollection``). The signature is a sparse field with no BM25 function and no
    index on it, beside an indexed vector field, and no rows. A collection another process is
    still creating on a server with BM25 reports its function; Milvus Lite 2.5 (which reports
    no functions) indexes the sparse field, or refused the vector index first (HNSW there).
    """
    description = client.describe_collection(name)
    if not any(f["name"] == SPARSE_FIELD for f in description["fields"]):
        return False
    if description.get("functions") or client.list_indexes(name, field_name=SPARSE_FIELD):
        return False
    if not client.list_indexes(name, field_name=VECTOR_FIELD):
        return False
    return int(client.get_collection_stats(name).get("row_count", 0)) == 0


def _create_without_bm25(client: MilvusClient, settings: Settings, dim: int) -> None:
    """Create the collection without the BM25 fields, replacing an empty BM25 leftover."""
    name = settings.milvus_collection
    if client.has_collection(name) and _bm25_leftover(client, name):
        client.drop_collection(name)
    try:
        _create(client, settings, dim, with_bm25=False)
    except MilvusException:
        if not client.has_collection(name):  # else created concurrently by another process
            raise


def _create(client: MilvusClient, settings: Settings, dim: int, *, with_bm25: bool) -> None:
    client.create_collection(
        settings.milvus_collection,
        schema=_schema(client, dim, with_bm25=with_bm25),
        index_params=_index_params(client, settings, with_bm25=with_bm25),
        consistency_level="Bounded",
    )


def collection_dimension(client: MilvusClient, name: str) -> int:
    """The dimension of the collection's vector field."""
    for field in client.describe_collection(name)["fields"]:
        if field["name"] == VECTOR_FIELD:
            return int(field["params"]["dim"])
    raise ConfigurationError(f"collection {name!r} has no {VECTOR_FIELD!r} field")


def collection_has_bm25(client: MilvusClient, name: str) -> bool:
    """True when the collection carries the BM25 sparse field (keyword and hybrid search)."""
    fields = client.describe_collection(name)["fields"]
    return any(f["name"] == SPARSE_FIELD for f in fields)


def collection_has_title_bm25(client: MilvusClient, name: str) -> bool:
    """True when the collection also carries the title's BM25 field (hybrid search adds the best
    headline match to its fusion); collections created before that field existed lack it."""
    fields = client.describe_collection(name)["fields"]
    return any(f["name"] == TITLE_SPARSE_FIELD for f in fields)
