"""The parser on hostile and broken feeds: a clear outcome, bounded work, no leaked content."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import FeedError
from producers.parser import parse_feed, safe_html

URL = "https://example.com/feed.xml"


def _parse(body: bytes, **headers: str) -> list[dict[str, object]]:
    parsed = parse_feed(body, feed_url=URL, feed_id="f", headers=headers, fetched_at=1_771_400_000)
    return [a.model_dump() for a in parsed.articles]


def _rss(items: str, prolog: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{prolog}<rss version="2.0"><channel>'
        f"<title>T</title><link>https://example.com/</link>{items}</channel></rss>"
    ).encode()


def test_billion_laughs_is_not_expanded() -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    body = _rss(
        "<item><title>&lol9;</title><link>https://e.com/1</link></item>",
        f"<!DOCTYPE rss [{entities}]>",
    )
    articles = _parse(body)  # expanded, the title would be 10**9 "lol"s: no bound is needed
    assert all(len(str(a["title"])) < 1000 for a in articles)


def test_quadratic_entity_blowup_is_not_expanded() -> None:
    big = "A" * 50_000
    body = _rss(
        "<item><title>q</title><link>https://e.com/1</link><description>"
        + "&a;" * 20_000
        + "</description></item>",
        f'<!DOCTYPE rss [<!ENTITY a "{big}">]>',
    )
    articles = _parse(body)
    assert all(big not in str(a["summary"]) for a in articles)


def test_xxe_does_not_read_local_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-7f3a")
    body = _rss(
        "<item><title>&xxe;</title><link>https://e.com/1</link>"
        "<description>&xxe;</description></item>",
        f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>',
    )
    try:
        articles = _parse(body)
    except FeedError:
        return
    assert "TOPSECRET" not in repr(articles)


def test_invalid_utf8_still_yields_entries() -> None:
    body = _rss("<item><title>caf\xe9 ok</title><link>https://e.com/1</link></item>")
    body = body.replace("caf\xe9".encode(), b"caf\xff\xfe")
    articles = _parse(body)
    assert len(articles) == 1 and "ok" in str(articles[0]["title"])


def test_wrong_declared_charset_is_decoded_without_crashing() -> None:
    body = _rss("<item><title>Zürich café</title><link>https://e.com/1</link></item>")
    # Declared Latin-1 by HTTP while the bytes are UTF-8: some text, never an exception.
    articles = _parse(body, **{"content-type": "application/rss+xml; charset=iso-8859-1"})
    assert len(articles) == 1 and "Z" in str(articles[0]["title"])
    koi = "<item><title>Привет</title><link>https://e.com/2</link></item>"
    latin_declared = _rss(koi).replace(b'encoding="utf-8"', b'encoding="koi8-r"')
    assert len(_parse(latin_declared)) == 1


def test_html_page_instead_of_a_feed_is_not_a_feed() -> None:
    page = b"<!doctype html><html><head><title>Home</title></head><body><p>hi</p></body></html>"
    with pytest.raises(FeedError) as info:
        _parse(page)
    assert info.value.kind == "not_a_feed"


@pytest.mark.parametrize("body", [b"", b"   \n", b"\xef\xbb\xbf"])
def test_empty_body_is_not_a_feed(body: bytes) -> None:
    with pytest.raises(FeedError) as info:
        _parse(body)
    assert info.value.kind == "not_a_feed"


def test_far_future_and_garbage_dates_are_dropped_not_fatal() -> None:
    items = (
        "<item><title>a</title><link>https://e.com/a</link><pubDate>Tue, 17 Feb 2026 10:00:00 GMT</pubDate></item>"
        "<item><title>b</title><link>https://e.com/b</link><pubDate>Fri, 01 Jan 2999 00:00:00 GMT</pubDate></item>"
        "<item><title>c</title><link>https://e.com/c</link><pubDate>Fri, 01 Jan 99999 00:00:00 GMT</pubDate></item>"
        "<item><title>d</title><link>https://e.com/d</link><pubDate>not a date &amp; never</pubDate></item>"
        "<item><title>e</title><guid isPermaLink='false'>g</guid><pubDate>-1</pubDate></item>"
    )
    articles = {a["title"]: a for a in _parse(_rss(items))}
    assert articles["a"]["published_at"] == 1_771_322_400
    for title in "bcde":
        assert articles[title]["published_at"] is None, title


def test_active_markup_never_survives() -> None:
    items = (
        "<item><title>&lt;script&gt;alert(1)&lt;/script&gt;Hi</title><link>https://e.com/1</link>"
        '<description>&lt;p onclick="x()"&gt;a&lt;/p&gt;&lt;iframe src=x&gt;&lt;/iframe&gt;'
        '&lt;a href="javascript:alert(1)"&gt;l&lt;/a&gt;&lt;!-- &lt;script&gt; --&gt;</description></item>'
    )
    (article,) = _parse(_rss(items))
    for field in ("title", "summary", "content"):
        text = str(article[field]).lower()
        assert "<script" not in text and "<iframe" not in text and "javascript:" not in text
        assert "onclick" not in text


def test_safe_html_reduces_surviving_active_markup_to_text() -> None:
    assert safe_html("<p>ok</p><!-- <script>x</script> -->") == "<p>ok</p>"
    assert "<" not in safe_html('<img src=x onerror="alert(1)">caption')
    assert safe_html("<b>bold</b>") == "<b>bold</b>"
