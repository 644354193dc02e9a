"""The example feeds of the offline walk-through hold what their README says they hold.

Pure: parses the shipped files with the producer's parser (in this process, no sandbox) and
runs the worker's clean and quality steps on them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from consumers.clean import clean_article
from consumers.quality import check_quality
from core.metrics import RejectReason
from newsstream.stack.feed_snapshot import snapshot_file_name
from newsstream.stack.replay import FEED_SUFFIXES
from producers.feeds import FeedSpec, feed_id
from producers.parser import parse_feed

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "feeds"


def _articles() -> list:
    found = []
    for path in sorted(EXAMPLES.iterdir()):
        if path.suffix in FEED_SUFFIXES:
            url = f"http://127.0.0.1/{path.name}"
            parsed = parse_feed(path.read_bytes(), feed_url=url, feed_id=feed_id(url))
            found.extend(parsed.articles)
    return found


def test_the_example_feeds_hold_26_items_in_three_formats() -> None:
    files = [p for p in EXAMPLES.iterdir() if p.suffix in FEED_SUFFIXES]
    assert {p.suffix for p in files} == {".xml", ".atom"}
    articles = _articles()
    assert len(articles) == 26
    assert len({a.id for a in articles}) == 26


def test_two_example_items_are_rejected_and_one_is_a_word_for_word_copy() -> None:
    articles = _articles()
    reasons = Counter(check_quality(clean_article(a)) for a in articles)
    assert reasons[None] == 24
    assert reasons[RejectReason.TOO_SHORT] + reasons[RejectReason.NOT_ARTICLE] == 2
    texts = Counter((a.title, a.summary) for a in articles)
    assert sorted(texts.values(), reverse=True)[:2] == [2, 1]


def test_snapshot_file_names_are_replayable_readable_and_unique() -> None:
    a = FeedSpec(url="https://news.example/rss", name="World News: Top/Stories")
    b = FeedSpec(url="https://news.example/rss2", name="World News: Top/Stories")
    c = FeedSpec(url="https://other.example/feed.atom")
    names = [snapshot_file_name(s) for s in (a, b, c)]
    assert names[0] == f"world-news-top-stories-{a.id}.xml"
    assert names[0] != names[1]
    assert names[2] == f"other-example-{c.id}.xml"
    assert all(Path(n).suffix in FEED_SUFFIXES for n in names)
    assert snapshot_file_name(FeedSpec(url="https://x.example/", name="!!!")).startswith("feed-")
