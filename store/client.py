"""Milvus connections: the client factory every process uses, and pymilvus' log quirks.

What goes in: a URI and token (or the settings). What comes out: a ``MilvusClient`` with
:data:`GRPC_OPTIONS`. Guaranteed: a Milvus that does not answer raises
:class:`core.errors.TransientError`, a missing URI :class:`core.errors.ConfigurationError`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymilvus import MilvusClient, MilvusException

from core.errors import ConfigurationError, TransientError
from core.settings import Settings

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


def row_pages(
    client: MilvusClient,
    collection: str,
    fields: list[str],
    *,
    expression: str = "",
    batch: int = 1000,
) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``collection`` that match ``expression`` (all when empty), with ``fields``,
    one page of at most ``batch`` rows at a time: a query iterator at Strong consistency, by
    primary key, so only one page is held. Raises what pymilvus raises."""
    with quiet_mvcc_fallback():  # the iterator asks for the MVCC timestamp as it starts
        iterator = client.query_iterator(
            collection,
            batch_size=batch,
            filter=expression,
            output_fields=fields,
            consistency_level="Strong",
        )
    try:
        while rows := iterator.next():
            yield rows
    finally:
        iterator.close()
