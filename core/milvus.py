"""Milvus client factory and the ``news_articles`` collection schema.

The collection is created idempotently and loaded (a reopened collection must be loaded before
search). Where the server supports BM25 functions (Milvus >= 2.5, Milvus Lite 3.x) the ``text``
field feeds a ``sparse`` BM25 field for keyword and hybrid search; where it does not (for example
the PyPI ``milvus`` 2.3.5 server) the collection is created without them and
:func:`collection_has_bm25` says so, so search can degrade to semantic.
"""

from __future__ import annotations

import logging
from typing import Any

from pymilvus import DataType, Function, FunctionType, MilvusClient, MilvusException

from core.errors import ConfigurationError, TransientError
from core.settings import Settings

log = logging.getLogger(__name__)

#: Field sizes (VARCHAR lengths); producers and workers truncate to these before upserting.
TITLE_MAX = 1_000
TEXT_MAX = 16_000
URL_MAX = 2_048
SOURCE_MAX = 255
MODEL_MAX = 255

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
VECTOR_FIELD = "embedding"


#: gRPC keepalive for every Milvus channel. pymilvus pings every 10 s, even with no call in
#: flight; a gRPC server with default settings (Milvus Lite's is one) tolerates a ping only every
#: 5 minutes without data and answers repeated early pings with GOAWAY "too many pings", which
#: fails the calls then in flight with UNAVAILABLE. Pinging every 6 minutes, and only while a call
#: is active, satisfies both Milvus Lite and Milvus servers (which allow pings every 5 s); a dead
#: server is still detected by each call's own timeout.
GRPC_OPTIONS: dict[str, Any] = {
    "grpc.keepalive_time_ms": 360_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.keepalive_permit_without_calls": False,
}


def connect(uri: str, token: str = "", timeout: float | None = 60) -> MilvusClient:
    """A :class:`MilvusClient` for ``uri`` with :data:`GRPC_OPTIONS`; raises what pymilvus raises.

    pymilvus shares one channel per address and token inside a process, so every client of the
    process must come from here for the options to hold.
    """
    return MilvusClient(uri=uri, token=token, timeout=timeout, grpc_options=GRPC_OPTIONS)


def milvus_client(settings: Settings) -> MilvusClient:
    """Connect to the configured Milvus; raises :class:`TransientError` if it does not answer."""
    if not settings.milvus_uri:
        raise ConfigurationError(
            "NEWSSTREAM_MILVUS_URI is not set: expected a Milvus URI such as "
            "http://127.0.0.1:19530 (`newsstream up` sets it when it starts Milvus Lite)"
        )
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else ""
    try:
        return connect(settings.milvus_uri, token=token, timeout=settings.milvus_timeout_s)
    except MilvusException as exc:
        raise TransientError(f"Milvus at {settings.milvus_uri} unreachable: {exc}") from exc


def _schema(client: MilvusClient, dim: int, with_bm25: bool) -> Any:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("title", DataType.VARCHAR, max_length=TITLE_MAX * 4)
    if with_bm25:
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX * 4, enable_analyzer=True)
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=[SPARSE_FIELD],
            )
        )
    else:
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX * 4)
    schema.add_field("url", DataType.VARCHAR, max_length=URL_MAX * 4)
    schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_MAX * 4)
    schema.add_field("feed_id", DataType.VARCHAR, max_length=64)
    schema.add_field("language", DataType.VARCHAR, max_length=16)
    schema.add_field("published_at", DataType.INT64)
    schema.add_field("ingested_at", DataType.INT64)
    schema.add_field("story_id", DataType.VARCHAR, max_length=64)
    schema.add_field("model", DataType.VARCHAR, max_length=MODEL_MAX * 4)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
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
        params.add_index(SPARSE_FIELD, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return params


def ensure_collection(client: MilvusClient, settings: Settings, dim: int) -> bool:
    """Create the articles collection if missing, check its dimension, and load it.

    Returns whether the collection has the BM25 sparse field. Raises
    :class:`ConfigurationError` when an existing collection was made for another dimension
    (another embedding model): mixing models in one collection would make scores meaningless.
    """
    name = settings.milvus_collection
    try:
        if not client.has_collection(name):
            try:
                client.create_collection(
                    name,
                    schema=_schema(client, dim, with_bm25=True),
                    index_params=_index_params(client, settings, with_bm25=True),
                    consistency_level="Bounded",
                )
            except MilvusException as exc:
                if client.has_collection(name):  # created concurrently by another process
                    pass
                else:
                    log.warning("Milvus refused BM25 fields (%s); creating without them", exc)
                    client.create_collection(
                        name,
                        schema=_schema(client, dim, with_bm25=False),
                        index_params=_index_params(client, settings, with_bm25=False),
                        consistency_level="Bounded",
                    )
        existing_dim = collection_dimension(client, name)
        if existing_dim != dim:
            raise ConfigurationError(
                f"collection {name!r} holds {existing_dim}-d vectors but the embedding model "
                f"makes {dim}-d ones: set NEWSSTREAM_MILVUS_COLLECTION to a new name or use "
                "the model the collection was built with"
            )
        client.load_collection(name)
        return collection_has_bm25(client, name)
    except MilvusException as exc:
        raise TransientError(f"Milvus error while preparing {name!r}: {exc}") from exc


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


def quote_literal(value: str) -> str:
    """A Milvus string literal that matches exactly ``value`` (backslash and quote escaped).

    Callers validate what may reach an expression (see ``search_api.filters``); this only
    escapes.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def truncate_utf8(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters (VARCHAR lengths are per character)."""
    return text if len(text) <= max_chars else text[:max_chars]
