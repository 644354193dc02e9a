"""The real worker keeps what its quality gate rejects, and `newsstream rejects` shows it.

Articles of several reject reasons (and a few good ones) go through the local broker into a
worker with Milvus; then the CLI, in a process of its own, lists the sample by reason. Several
processes writing one sample at once: ``test_reject_sample_processes.py``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from consumers.rejects import RejectSample, rejects_path
from core.article import Article
from core.ids import article_id
from core.kafka import ensure_topics
from core.settings import Settings
from producers.publisher import Publisher

from conftest import require_shared_data
from probes import wait_for_lag_zero
from running import running_worker
from worker_procs import ROOT, bbc_articles, settings_env

pytestmark = pytest.mark.integration

PER_REASON = 3


def _article(name: str, title: str, body: str, published_at: int | None = 1_760_000_000) -> Article:
    url = f"https://rejects.example/{name}"
    return Article(
        id=article_id(link=url),
        url=url,
        title=title,
        summary=body,
        source="rejects.example",
        feed_id="rejects",
        published_at=published_at,
        fetched_at=1_760_000_100,
    )


def _rejected() -> dict[str, list[Article]]:
    """Articles the gate rejects, by the reason it gives."""
    spam = [
        _article(
            f"spam-{n}",
            f"Offer {n}",
            f"Click here now for casino bonus number {n}, payday loans and a crypto giveaway "
            "that will change your life today, friends.",
        )
        for n in range(PER_REASON + 2)  # more than the sample keeps
    ]
    boilerplate = [
        _article(
            f"cookies-{n}",
            "Notice",
            f"We use cookies to improve your experience on page {n}. Accept all cookies "
            "to continue reading.",
        )
        for n in range(2)
    ]
    short = [_article(f"short-{n}", f"Rates up {n}", "") for n in range(2)]
    bad_date = [
        _article(
            "epoch",
            "Council approves the new budget for schools",
            "The city council approved the new budget for schools after a long debate about "
            "teachers' pay and the cost of repairing old buildings.",
            published_at=0,
        )
    ]
    return {"spam": spam, "boilerplate": boilerplate, "too_short": short, "bad_date": bad_date}


def _rejects_cli(settings: Settings, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "newsstream", "rejects", *args],
        env=settings_env(settings, COLUMNS="400"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_worker_keeps_rejected_articles_and_the_cli_lists_them_by_reason(
    make_settings: Any, embedder: Any
) -> None:
    settings = make_settings(rejects_per_reason=PER_REASON)
    rejected = _rejected()
    good = list(bbc_articles(require_shared_data("eval", "bbc-news"), 3, offset=1700))
    ensure_topics(settings)
    publisher = Publisher(settings)
    everything = [a for group in rejected.values() for a in group] + good
    assert publisher.publish(everything, 30) == {a.id for a in everything}
    publisher.close()
    with running_worker(settings, embedder) as worker:
        wait_for_lag_zero(settings, 120)
    counted = worker.tally.snapshot()["rejected_by_reason"]
    assert counted == {reason: len(items) for reason, items in rejected.items()}

    listed = _rejects_cli(settings)
    for reason, items in rejected.items():
        shown = [a for a in items if a.id in listed]
        assert len(shown) == min(len(items), PER_REASON), f"{reason}: {len(shown)} shown"
    assert not any(a.id in listed for a in good), "an indexed article is in the reject sample"

    spam_only = _rejects_cli(settings, "--reason", "spam")
    assert sum(a.id in spam_only for a in rejected["spam"]) == PER_REASON
    assert not any(a.id in spam_only for a in rejected["boilerplate"] + rejected["too_short"])
    assert "spam" in spam_only and "boilerplate" not in spam_only
    with RejectSample(rejects_path(settings.data_dir)) as sample:
        assert sample.counts() == {
            reason: min(len(items), PER_REASON) for reason, items in rejected.items()
        }
