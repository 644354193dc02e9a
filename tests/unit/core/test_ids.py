"""Canonical URL and article id rules of the design."""

from __future__ import annotations

import pytest

from core.ids import article_id, canonical_url, content_hash, is_article_id, normalise_title


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTPS://Example.COM/Path?b=2&a=1", "https://example.com/Path?a=1&b=2"),
        ("https://example.com/a#section-2", "https://example.com/a"),
        ("https://example.com/a?utm_source=rss&utm_medium=feed&id=7", "https://example.com/a?id=7"),
        ("https://example.com/a?fbclid=XYZ&gclid=1&ref=home", "https://example.com/a?ref=home"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://user:secret@example.com/a", "https://example.com/a"),
        ("https://example.com", "https://example.com/"),
        ("https://EXAMPLE.com./a", "https://example.com/a"),
    ],
)
def test_canonical_url(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


def test_relative_links_resolve_against_the_base() -> None:
    assert canonical_url("/world/story-1?utm_campaign=x", "https://News.example.org/feed.xml") == (
        "https://news.example.org/world/story-1"
    )
    assert canonical_url("story-2", "https://example.org/section/") == (
        "https://example.org/section/story-2"
    )


def test_id_is_sha256_prefix_of_the_canonical_url() -> None:
    import hashlib

    expected = hashlib.sha256(b"https://example.com/a?x=1").hexdigest()[:32]
    assert article_id(link="HTTPS://EXAMPLE.com/a?x=1&utm_source=z#top") == expected
    assert is_article_id(expected)


def test_tracking_variants_share_one_id() -> None:
    a = article_id(link="https://example.com/story?id=5&utm_source=twitter")
    b = article_id(link="https://Example.com/story?utm_medium=email&id=5#comments")
    assert a == b
    assert a != article_id(link="https://example.com/story?id=6")


def test_guid_when_there_is_no_link() -> None:
    by_guid = article_id(link=None, guid="urn:uuid:1234")
    assert by_guid == article_id(link="", guid="  urn:uuid:1234 ")
    assert by_guid != article_id(link=None, guid="urn:uuid:1235")
    # A GUID never collides with a URL that happens to read the same.
    assert article_id(link=None, guid="https://example.com/a") != article_id(
        link="https://example.com/a"
    )


def test_fallback_id_is_stable_and_depends_on_feed_title_and_date() -> None:
    base = {"link": None, "guid": None, "feed_url": "https://f.example/rss"}
    one = article_id(**base, title="Storm hits  COAST", published=1700000000)
    assert one == article_id(**base, title="storm hits coast", published=1700000000)
    assert one != article_id(**base, title="Storm hits coast", published=1700000001)
    assert one != article_id(
        link=None,
        guid=None,
        feed_url="https://g.example/rss",
        title="storm hits coast",
        published=1700000000,
    )


def test_non_http_links_fall_back_to_the_guid() -> None:
    assert article_id(link="javascript:alert(1)", guid="g-1") == article_id(link=None, guid="g-1")


def test_odd_input_never_raises() -> None:
    for raw in [
        "",
        "::::",
        "http://[::1",
        "https://example.com:99999/x",
        "\x00",
        "https://ex ample.com/",
    ]:
        article_id(link=raw, guid=None, feed_url="f", title="t")


def test_title_normalisation_and_content_hash() -> None:
    assert normalise_title("  Ｆｕｌｌ  Width\tTitle ") == "full width title"
    assert content_hash("Hello   World") == content_hash("hello world")
    assert content_hash("hello world") != content_hash("hello world!")
