"""Workers as real processes for fault tests, articles for their ledgers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.article import Article
from core.ids import article_id
from core.settings import Settings
from store.row import encode_sources

ROOT = Path(__file__).resolve().parent.parent


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process load exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSSTREAM_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        env[f"NEWSSTREAM_{name.upper()}"] = text
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start_worker(settings: Settings, log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
    """`newsstream consume` in a subprocess with ``settings`` (and extra variables)."""
    handle = open(log, "ab")  # noqa: SIM115 - closed by the OS when the child exits
    return subprocess.Popen(
        [sys.executable, "-m", "newsstream", "consume"],
        env=settings_env(settings, **extra_env),
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def publish_tombstones(settings: Settings, ids: list[str], reason: str | None = None) -> None:
    """Deletes of ``ids`` as the contract says: key = id, null value, the reason header when
    given, through the project's producer factory (same partitioner), every delivery awaited."""
    from confluent_kafka import Producer

    from core.article import DELETE_REASON_HEADER
    from core.kafka import producer_config

    producer = Producer(producer_config(settings, client_id="test-tombstones"))
    failures: list[Any] = []
    headers = [] if reason is None else [(DELETE_REASON_HEADER, reason.encode())]
    for ident in ids:
        producer.produce(
            settings.kafka_topic,
            key=ident.encode(),
            value=None,
            headers=headers,
            on_delivery=lambda err, _msg: failures.append(err) if err else None,
        )
    assert producer.flush(30) == 0 and not failures, failures


def news_article(url: str, title: str, summary: str, source: str) -> Article:
    """An article of ``source`` at ``url`` (fixed publish and fetch times)."""
    return Article(
        id=article_id(link=url),
        url=url,
        title=title,
        summary=summary,
        source=source,
        feed_id=source,
        published_at=1_760_000_000,
        fetched_at=1_760_000_100,
    )


def stored_row(
    url: str, title: str, text: str, vector: Any, model: str, **fields: Any
) -> dict[str, Any]:
    """A Milvus row as the worker writes it (its own story, no other outlets), for tests that
    write through ``ArticleWriter`` directly; ``fields`` override any column."""
    now = int(time.time())
    row = {
        "id": article_id(link=url),
        "embedding": vector.tolist(),
        "title": title,
        "text": text,
        "url": url,
        "source": url.split("/")[2],
        "feed_id": "feed0",
        "language": "en",
        "published_at": now,
        "ingested_at": now,
        "story_id": article_id(link=url),
        "model": model,
        "content_hash": "h0",
        "also_reported_by": encode_sources([]),
    }
    row.update(fields)
    return row


def bbc_articles(bbc_dir: Path, limit: int, offset: int = 0) -> Iterator[Article]:
    """Distinct BBC News articles as Article messages (title + first sentences as summary).

    Articles in the silver near-duplicate pairs are left out, so every one of them is a
    distinct story for dedup.
    """
    skip: set[str] = set()
    with open(bbc_dir / "near_duplicate_pairs_computed.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            skip.update((row["doc_a"], row["doc_b"]))
    now = int(time.time())
    with open(bbc_dir / "manifest.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["doc_id"] not in skip]
    for row in rows[offset : offset + limit]:
        text = (bbc_dir / row["path"]).read_bytes().decode("utf-8", "replace")
        paragraphs = [p.strip() for p in text.split("\n") if p.strip()]
        body = " ".join(paragraphs[1:4])[:600]
        url = f"https://news.bbc.example/{row['doc_id']}"
        yield Article(
            id=article_id(link=url),
            url=url,
            title=row["title"],
            summary=body,
            feed_id="bbc",
            feed_url="https://news.bbc.example/rss",
            source="bbc.example",
            published_at=now - 3600,
            fetched_at=now,
        )


def poison_values(count: int) -> list[bytes]:
    """Messages that break the Article contract in different ways."""
    kinds: list[Any] = [
        b"{not json",
        json.dumps({"schema_version": 99, "id": "0" * 32}).encode(),
        json.dumps({"schema_version": 1}).encode(),
        json.dumps({"schema_version": 1, "id": "not-an-id", "title": "x"}).encode(),
        json.dumps([1, 2, 3]).encode(),
        b"\xff\xfe\x00garbage",
    ]
    return [kinds[i % len(kinds)] for i in range(count)]
