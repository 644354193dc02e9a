"""Milvus client factory and the ``news_articles`` collection schema.

The collection is created idempotently and loaded (a reopened collection must be loaded before
search). Where the server supports BM25 functions (Milvus >= 2.5, Milvus Lite 3.x) the ``text``
field feeds a ``sparse`` BM25 field for keyword and hybrid search, and the ``title`` field a
``title_sparse`` one that hybrid search uses to favour the best headline match (collections made
before it existed lack it and still work: :func:`collection_has_title_bm25`); where the server
has no BM25 (for example the PyPI ``milvus`` 2.3.5 server) the collection is created without
them and :func:`collection_has_bm25` says so, so search can degrade to semantic.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
#: BM25 sparse field over the title alone (collections made before it existed lack it; search
#: then fuses without it, see :func:`collection_has_title_bm25`).
TITLE_SPARSE_FIELD = "title_sparse"
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


#: What pymilvus logs (to stderr, through its own handler) each time a query iterator starts on
#: a server that hands out no MVCC timestamp (Milvus Lite, the 2.3 server). It then reads at a
#: client-side timestamp, which is what the rebuild wants: rows written before the worker
#: started. The dedup rebuild opens one iterator per hour slice: 72 warnings at every start.
MVCC_FALLBACK_WARNING = "failed to get mvccTs from milvus server, use client-side ts instead"
#: The loggers that emit it (the module of pymilvus' QueryIterator, old and new layouts).
QUERY_ITERATOR_LOGGERS = ("pymilvus.client.iterator.query_iterator", "pymilvus.orm.iterator")


class _DropExactly(logging.Filter):
    """Drops records whose message is exactly ``message``; lets everything else through."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self._message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self._message


@contextmanager
def quiet_mvcc_fallback() -> Iterator[None]:
    """While the body opens a query iterator, drop exactly :data:`MVCC_FALLBACK_WARNING`.

    Why not a query path that does not warn: the dedup rebuild and the keyword-index rebuild
    read many rows in pages; only the query iterator pages a filter reliably (by primary key at
    one timestamp), and it always asks for the MVCC timestamp first. A filter on the emitting
    loggers is the narrowest fix: any other message, and this one outside the iterator's start,
    still shows.
    """
    drop = _DropExactly(MVCC_FALLBACK_WARNING)
    loggers = [logging.getLogger(name) for name in QUERY_ITERATOR_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


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
        for sparse in (SPARSE_FIELD, TITLE_SPARSE_FIELD):
            params.add_index(sparse, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return params


def ensure_collection(client: MilvusClient, settings: Settings, dim: int) -> bool:
    """Create the articles collection if missing, check its dimension, and load it.

    Returns whether the collection has the BM25 sparse field. Raises
    :class:`ConfigurationError` when an existing collection was made for another dimension
    (another embedding model): mixing models in one collection would make scores meaningless.
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


def quote_literal(value: str) -> str:
    """A Milvus string literal that matches exactly ``value`` (backslash and quote escaped).

    Callers validate what may reach an expression (see ``search_api.filters``); this only
    escapes.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def truncate_utf8(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters (VARCHAR lengths are per character)."""
    return text if len(text) <= max_chars else text[:max_chars]


#: Key of the list in the ``also_reported_by`` JSON value.
SOURCES_KEY = "sources"


def encode_sources(sources: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """The ``also_reported_by`` value for ``sources``: a JSON object, not a bare list.

    Milvus 2.3 accepts only objects at the top of a JSON field ("cannot unmarshal array"); an
    object holding the list works on every server.
    """
    return {SOURCES_KEY: sources}


def decode_sources(value: Any) -> list[dict[str, str]]:
    """The sources of an ``also_reported_by`` value: the object form, or a bare list written by
    earlier versions; anything else reads as no sources."""
    if isinstance(value, dict):
        value = value.get(SOURCES_KEY)
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict)]


def index_done(info: dict[str, Any], rows: int) -> bool:
    """Whether ``describe_index`` output says the index covers the data: ``rows`` indexed, or
    nothing pending (FLAT in Milvus Lite 2.5 reports 0 of 0), or no progress figures at all."""
    if "indexed_rows" not in info:
        return True
    indexed = int(info["indexed_rows"])
    pending = int(info.get("pending_index_rows", 0))
    return indexed >= rows or (pending == 0 and indexed >= int(info.get("total_rows", 0)))


def wait_for_index(client: MilvusClient, name: str, rows: int, timeout_s: float) -> bool:
    """True once the vector index covers the rows, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if index_done(client.describe_index(name, VECTOR_FIELD) or {}, rows):
            return True
        time.sleep(2)
    return False


def serving_segments(
    loaded: Sequence[tuple[int, bool]], persistent: Sequence[int]
) -> frozenset[int] | None:
    """The ids of the sealed segments a collection is served from, when that set is final: every
    flushed segment (``persistent``) is loaded and indexed and no other is loaded (``loaded``
    holds (segment id, has an index) pairs). None while a merged segment waits to be loaded, an
    old one is still served, or a loaded one has no index yet."""
    ids = frozenset(segment for segment, _ in loaded)
    if ids != frozenset(persistent) or not all(indexed for _, indexed in loaded):
        return None
    return ids


def _serving_segments(client: MilvusClient, name: str) -> frozenset[int] | None:
    loaded = client.list_loaded_segments(name)
    persistent = client.list_persistent_segments(name)
    return serving_segments(
        [(segment.segment_id, segment.index_id != 0) for segment in loaded],
        [segment.segment_id for segment in persistent],
    )


def compact_and_wait(
    client: MilvusClient, name: str, rows: int, timeout_s: float, quiet_s: float = 75.0
) -> bool:
    """After a bulk load: wait for the vector index, merge the collection's small segments (a
    manual compaction), then wait until the segments served are final; True when all of it
    finished within ``timeout_s``.

    Final means :func:`serving_segments` gave the same set for ``quiet_s`` seconds: the server
    also merges small segments on its own (its trigger runs about once a minute, so the manual
    compaction may find them already taken and return at once), and it serves the old segments
    until the merged one is indexed and loaded. Measuring before that measures the server's
    merge and index rebuild, which use both cores. A store that cannot compact or list its
    segments (Milvus Lite) only waits for the index."""
    deadline = time.monotonic() + timeout_s
    if not wait_for_index(client, name, rows, timeout_s):
        return False
    try:
        job = client.compact(name)
    except MilvusException:
        return True
    while client.get_compaction_state(job) != "Completed":
        if time.monotonic() >= deadline:
            return False
        time.sleep(1)
    settled: frozenset[int] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            current = _serving_segments(client, name)
        except MilvusException:
            return wait_for_index(client, name, rows, deadline - time.monotonic())
        if current is None or current != settled:
            settled, since = current, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return True
        time.sleep(2)
    return False
