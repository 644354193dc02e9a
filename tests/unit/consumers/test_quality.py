"""The quality gate: each reason of the closed set, what must be kept, and the step that rejects
with a reason and keeps a sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from consumer_fakes import article

from consumers.clean import Clean, CleanArticle, clean_article
from consumers.item import Item
from consumers.quality import QualityGate, check_quality, detect_language
from consumers.rejects import RejectSample
from core.article import Article
from core.metrics import RejectReason

NOW = 1_771_400_000  # 2026-02-18
ARTICLE = (
    "The central bank raised interest rates by a quarter point on Tuesday, saying inflation "
    "had stayed above its target for longer than expected and wages were still rising fast."
)


def _clean(
    body: str = ARTICLE,
    *,
    title: str = "Central bank raises rates",
    url: str = "https://news.example/business/rates",
    published_at: int | None = NOW - 3600,
) -> CleanArticle:
    article = Article(id="0" * 32, title=title, summary=body, url=url, published_at=published_at)
    return clean_article(article)


def test_a_normal_article_is_kept() -> None:
    assert check_quality(_clean(), now=NOW) is None


def test_a_short_feed_item_of_one_sentence_is_kept() -> None:
    item = _clean("Rates rise by a quarter point as inflation stays high.", title="Rates rise")
    assert check_quality(item, now=NOW) is None


def test_a_very_long_text_is_never_rejected() -> None:
    assert check_quality(_clean(ARTICLE * 100), now=NOW) is None


@pytest.mark.parametrize(
    ("clean", "reason"),
    [
        (_clean("", title=""), RejectReason.EMPTY),
        (_clean("   ", title=" "), RejectReason.EMPTY),
        (_clean("", title="Rates up"), RejectReason.TOO_SHORT),
        (
            _clean("1,234.5 | 2,345.6 | 3,456.7 | 4,567.8 | 5,678.9 | 6,789.0", title="Q3"),
            RejectReason.NOT_TEXT,
        ),
        (
            _clean(
                "We use cookies to improve your experience. Accept all cookies to continue.",
                title="Notice",
            ),
            RejectReason.BOILERPLATE,
        ),
        (
            _clean(
                "Please enable JavaScript to view this page and its content properly.",
                title="Loading",
            ),
            RejectReason.BOILERPLATE,
        ),
        (
            _clean(
                "Watch the highlights from last night's match.", title="Video: Cup final highlights"
            ),
            RejectReason.NOT_ARTICLE,
        ),
        (
            _clean(
                "Episode 212 of our weekly show, with guests.",
                title="The weekly politics show",
                url="https://news.example/podcasts/weekly-212",
            ),
            RejectReason.NOT_ARTICLE,
        ),
        (
            _clean("BUY NOW THE BEST OFFER EVER ON ALL WATCHES AND BAGS TODAY ONLY"),
            RejectReason.SPAM,
        ),
        (
            _clean("Best casino bonus, click here, 100% free spins for new players every day."),
            RejectReason.SPAM,
        ),
        (
            _clean(" ".join(["win"] * 30) + " a prize"),
            RejectReason.SPAM,
        ),
        (
            _clean(
                "Deals at http://a.example http://b.example http://c.example http://d.example http://e.example"
            ),
            RejectReason.SPAM,
        ),
        (_clean(published_at=NOW + 3 * 86_400), RejectReason.BAD_DATE),
        (_clean(published_at=0), RejectReason.BAD_DATE),
    ],
)
def test_each_reason(clean: CleanArticle, reason: RejectReason) -> None:
    assert check_quality(clean, now=NOW) is reason


def test_clock_skew_of_an_hour_is_not_a_future_date() -> None:
    assert check_quality(_clean(published_at=NOW + 3600), now=NOW) is None


def test_a_long_video_story_is_an_article() -> None:
    clean = _clean(ARTICLE, title="Video: the central bank explains its decision")
    assert check_quality(clean, now=NOW) is None


def test_a_long_article_mentioning_cookies_is_not_boilerplate() -> None:
    text = (ARTICLE + " ") * 4 + "Regulators said the site uses cookies and we use cookies too."
    assert check_quality(_clean(text), now=NOW) is None


def test_language_filter_rejects_only_confident_other_languages() -> None:
    spanish = _clean(
        "El banco central subió los tipos de interés un cuarto de punto el martes porque la "
        "inflación sigue por encima de su objetivo.",
        title="El banco central sube los tipos",
    )
    english_only = frozenset({"en"})
    assert check_quality(spanish, now=NOW, allowed_languages=english_only) is RejectReason.LANGUAGE
    assert check_quality(spanish, now=NOW, allowed_languages=frozenset({"en", "es"})) is None
    assert check_quality(spanish, now=NOW) is None  # None means every language
    assert check_quality(_clean(), now=NOW, allowed_languages=english_only) is None


def test_detect_language_returns_iso_639_1_codes() -> None:
    assert detect_language(ARTICLE) == "en"
    assert (
        detect_language("Le gouvernement a annoncé de nouvelles mesures pour l'économie.") == "fr"
    )
    assert detect_language("1234 5678") == ""


def test_quality_rejects_with_a_reason_and_keeps_a_sample(tmp_path: Path) -> None:
    with RejectSample(tmp_path / "rejects.sqlite3") as sample:
        gate = QualityGate(min_chars=40, rejects=sample)
        short = Clean()(Item(produced_at_ms=None, article=article(5, text="Too short.", title="")))
        rejected = gate(short)
        assert rejected.final and rejected.clean is None
        assert rejected.reject is RejectReason.TOO_SHORT
        assert [i.article_id for i in sample.items()] == [article(5, text="x").id]
        good = Clean()(Item(produced_at_ms=None, article=article(6)))
        assert gate(good) is good
        assert sample.counts() == {"too_short": 1}
