"""Every Prometheus metric of newsstream, each with its one-line meaning.

Labels only take values from the closed sets below (no feed URLs, queries or article ids).
Each process exposes the metrics of the service it runs at ``/metrics``; metrics of services a
process does not run stay at zero there.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram


class FetchResult(StrEnum):
    """How one feed fetch ended."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    HTTP_ERROR = "http_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    BLOCKED = "blocked"
    NETWORK_ERROR = "network_error"
    PARSE_ERROR = "parse_error"
    NOT_A_FEED = "not_a_feed"


class Outcome(StrEnum):
    """The one outcome every consumed message ends in."""

    INDEXED = "indexed"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    DLQ = "dlq"
    DELETED = "deleted"  # a tombstone: an operator's delete
    EXPIRED = "expired"  # a tombstone sent by retention


class RejectReason(StrEnum):
    """Why the quality gate rejected an article (``none`` for outcomes other than rejected)."""

    NONE = "none"
    EMPTY = "empty"
    TOO_SHORT = "too_short"
    NOT_TEXT = "not_text"
    BOILERPLATE = "boilerplate"
    NOT_ARTICLE = "not_article"
    LANGUAGE = "language"
    BAD_DATE = "bad_date"
    SPAM = "spam"


class Stage(StrEnum):
    """The worker's stages, in order."""

    DECODE = "decode"
    CLEAN = "clean"
    QUALITY = "quality"
    DELETE = "delete"
    DEDUP = "dedup"
    EMBED = "embed"
    UPSERT = "upsert"
    RECORD = "record"
    LEDGER = "ledger"
    COMMIT = "commit"


class SearchMode(StrEnum):
    """How a search ranked its results."""

    SEMANTIC = "semantic"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_TTS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)

# --- producer ----------------------------------------------------------------------------------
FEED_FETCHES = Counter(
    "newsstream_feed_fetches_total", "Feed fetches, by how they ended.", ["result"]
)
FEED_FETCH_SECONDS = Histogram(
    "newsstream_feed_fetch_seconds",
    "Time of one feed fetch (connect to last byte).",
    buckets=_LATENCY_BUCKETS,
)
ENTRIES_PUBLISHED = Counter(
    "newsstream_entries_published_total", "Feed entries acknowledged by Kafka."
)
ENTRIES_SKIPPED_SEEN = Counter(
    "newsstream_entries_skipped_seen_total", "Feed entries not republished: already delivered."
)
ENTRIES_SKIPPED_EXPIRED = Counter(
    "newsstream_entries_skipped_expired_total",
    "Feed entries not published: older than their feed's retention window.",
)
FEEDS_BROKEN = Gauge("newsstream_feeds_broken", "Feeds whose last fetch failed (error streak > 0).")
FEEDS_POLLED = Counter("newsstream_feeds_polled_total", "Completed feed polls (any result).")

# --- worker ------------------------------------------------------------------------------------
MESSAGES_CONSUMED = Counter(
    "newsstream_messages_consumed_total",
    "Messages of the articles topic processed to an outcome (counted with their outcome).",
)
OUTCOMES = Counter(
    "newsstream_outcomes_total",
    "Final outcome of each consumed message; sums to messages consumed.",
    ["outcome", "reason"],
)
BATCH_SIZE = Histogram(
    "newsstream_batch_size",
    "Messages per worker batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
STAGE_SECONDS = Histogram(
    "newsstream_stage_seconds",
    "Time spent in one worker stage per batch.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
TIME_TO_SEARCHABLE = Histogram(
    "newsstream_time_to_searchable_seconds",
    "From the produced_at header to the Milvus upsert acknowledged.",
    buckets=_TTS_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "newsstream_consumer_lag",
    "Messages behind the high watermark, per partition.",
    ["partition"],
)
RETRIES = Counter(
    "newsstream_dependency_retries_total", "Retries after a transient outage.", ["dependency"]
)
DEDUP_INDEX_SIZE = Gauge("newsstream_dedup_index_size", "Entries in the dedup index window.")

# --- search API --------------------------------------------------------------------------------
SEARCH_SECONDS = Histogram(
    "newsstream_search_seconds",
    "Search latency including query embedding, by mode.",
    ["mode"],
    buckets=_LATENCY_BUCKETS,
)
SEARCH_REQUESTS = Counter(
    "newsstream_search_requests_total",
    "Search requests by mode and status class.",
    ["mode", "status"],
)

API_RATE_LIMIT_FALLBACKS = Counter(
    "newsstream_api_rate_limit_fallbacks_total",
    "Rate-limit checks one API replica answered on its own because the shared Redis failed.",
)

#: Partition labels are numbers; cap them so a huge topic cannot explode the series count.
MAX_PARTITION_LABELS = 1024


def partition_label(partition: int) -> str:
    """The label value of a partition number (bounded: partitions past the cap share one)."""
    return str(partition) if 0 <= partition < MAX_PARTITION_LABELS else "other"
