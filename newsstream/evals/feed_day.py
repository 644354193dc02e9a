"""A day of real feeds as the worker would store it: the items of ``../shared/data``'s captured
news feeds, parsed, cleaned and quality-checked the way the producer and the worker do it.

What goes in: a feeds directory with its ``index.tsv``. What comes out: one :class:`FeedItem`
per kept article id (quality rejects and repeated ids are left out, as the worker stores an id
once), in the order the feeds list them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FeedItem:
    """One quality-kept item of the feed day, as the worker would store it."""

    id: str
    source: str
    title: str
    text: str
    published_at: int | None


def load_feed_day(feeds_dir: Path) -> list[FeedItem]:
    """Parse and clean every item of ``feeds_dir/index.tsv``'s feeds; quality rejects and
    repeated ids are skipped (the worker stores an id once)."""

    from consumers.clean import clean_article
    from consumers.quality import check_quality
    from producers.parser import parse_feed

    with (feeds_dir / "index.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    items: dict[str, FeedItem] = {}
    for row in rows:
        body = (feeds_dir / f"{row['file']}.xml").read_bytes()
        parsed = parse_feed(body, feed_url=row["channel_link"], feed_id=row["file"])
        for article in parsed.articles:
            clean = clean_article(article)
            if check_quality(clean) is not None or article.id in items:
                continue
            items[article.id] = FeedItem(
                article.id, article.source, clean.title, clean.text, article.published_at
            )
    return list(items.values())
