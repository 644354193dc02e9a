"""The parser adapter: feed bytes to Article messages, through feedparser (only ever on bytes).

What goes in: the body bytes, the HTTP headers (for the charset and base URL) and the feed.
What comes out: a :class:`ParsedFeed` with at most ``max_entries`` articles, every field capped
to the contract's sizes, ids following the design's rules (relative links resolved against
``xml:base``, the channel link or the feed URL). A body that is not a feed raises
``FeedError(not_a_feed)``; a feed that is ill-formed but readable still yields its entries
(feedparser's ``bozo`` flag is reported, not fatal).

feedparser sanitises HTML in entries (no script, iframe or event handlers); on top of that,
HTML comments are removed and any value in which a script, iframe, event-handler attribute or
``javascript:`` URL still shows up is reduced to escaped plain text, so ``summary`` and
``content`` never carry active markup. Titles are plain text. The worker turns the rest into
plain text.

Run it through :class:`producers.sandbox.ParserPool` on untrusted bodies: parsing there is
bounded in CPU time and memory.
"""

from __future__ import annotations

import calendar
import html
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from core.article import (
    MAX_CONTENT_CHARS,
    MAX_SUMMARY_CHARS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    Article,
)
from core.errors import FeedError
from core.ids import article_id, canonical_url
from core.metrics import FetchResult
from core.text import html_to_text

# feedparser must never fetch anything itself (XXE, remote DTDs): we hand it bytes only and
# turn off the features that could reach out or expand entities.
feedparser.RESOLVE_RELATIVE_URIS = True
feedparser.SANITIZE_HTML = True

_YEAR_3000 = 32_503_680_000
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_ACTIVE_MARKUP = re.compile(
    r"<\s*/?\s*(?:script|iframe|frame|object|embed)\b"
    r"|<[^>]*?[\s/\"']on[a-z]+\s*="
    r"|<[^>]*?(?:java|vb)script\s*:",
    re.I,
)


def safe_html(value: str) -> str:
    """``value`` without comments; escaped plain text when active markup survived anyway."""
    if "<" not in value:
        return value
    value = _COMMENT.sub("", value)
    if _ACTIVE_MARKUP.search(value):
        return html.escape(html_to_text(value), quote=False)
    return value


@dataclass(frozen=True)
class ParsedFeed:
    """What one feed document held."""

    title: str
    link: str
    articles: list[Article]
    entries_seen: int
    bozo: str | None
    ttl_minutes: int | None


def _first(entry: Any, *names: str) -> str:
    for name in names:
        value = entry.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _epoch(entry: Any) -> int | None:
    for name in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: FeedParserDict maps a missing updated_* to published_* with a warning.
        value = dict.get(entry, name)
        if value:
            try:
                stamp = calendar.timegm(value)
            except (TypeError, ValueError, OverflowError):
                continue
            if 0 < stamp < _YEAR_3000:  # beyond that the feed's date is garbage, not a time
                return int(stamp)
    return None


def publisher_domain(url: str) -> str:
    """The publisher's domain of a URL: lower-case host without a leading ``www.``."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def _content(entry: Any) -> str:
    parts = entry.get("content") or []
    best = ""
    for part in parts:
        value = part.get("value", "") if isinstance(part, dict) else ""
        if isinstance(value, str) and len(value) > len(best):
            best = value
    return best


def parse_feed(
    body: bytes,
    *,
    feed_url: str,
    feed_id: str,
    headers: dict[str, str] | None = None,
    max_entries: int = 500,
    fetched_at: int | None = None,
) -> ParsedFeed:
    """Parse ``body`` into Article messages (see the module docstring for the guarantees)."""
    if not body.strip():
        raise FeedError(FetchResult.NOT_A_FEED, "empty body")
    response_headers = dict(headers or {})
    response_headers.setdefault("content-location", feed_url)
    parsed = feedparser.parse(body, response_headers=response_headers, sanitize_html=True)
    channel = parsed.get("feed", {})
    entries = parsed.get("entries", [])
    version = parsed.get("version", "")
    bozo = parsed.get("bozo_exception")
    if not entries and not version:
        reason = f" ({type(bozo).__name__}: {str(bozo)[:200]})" if bozo else ""
        raise FeedError(FetchResult.NOT_A_FEED, f"no feed found in the body{reason}")
    link = _first(channel, "link")
    base = urljoin(feed_url, link) if link else feed_url
    now = int(time.time()) if fetched_at is None else fetched_at
    articles: list[Article] = []
    for entry in entries[:max_entries]:
        article = _article(entry, feed_url=feed_url, feed_id=feed_id, base=base, now=now)
        if article is not None:
            articles.append(article)
    ttl = channel.get("ttl")
    return ParsedFeed(
        title=html_to_text(_first(channel, "title"))[:MAX_TITLE_CHARS],
        link=link[:MAX_URL_CHARS],
        articles=articles,
        entries_seen=len(entries),
        bozo=f"{type(bozo).__name__}: {bozo}"[:300] if bozo else None,
        ttl_minutes=int(ttl) if isinstance(ttl, str) and ttl.strip().isdigit() else None,
    )


def _article(entry: Any, *, feed_url: str, feed_id: str, base: str, now: int) -> Article | None:
    raw_link = _first(entry, "link")
    link = canonical_url(raw_link, base) if raw_link else ""
    if link and urlsplit(link).scheme not in ("http", "https"):
        link = ""
    guid = _first(entry, "id", "guid")
    title = html_to_text(_first(entry, "title"))[:MAX_TITLE_CHARS]
    summary = safe_html(_first(entry, "summary", "description"))[:MAX_SUMMARY_CHARS]
    content = safe_html(_content(entry))[:MAX_CONTENT_CHARS]
    if not (title or summary or content):
        return None
    published = _epoch(entry)
    ident = article_id(
        link=link or None,
        guid=guid or None,
        feed_url=feed_url,
        title=title,
        published=published
        if published is not None
        else (dict.get(entry, "published") or dict.get(entry, "updated") or ""),
    )
    language = _first(entry, "language") or ""
    return Article(
        id=ident,
        url=link[:MAX_URL_CHARS] if len(link) <= MAX_URL_CHARS else "",
        guid=guid[:MAX_URL_CHARS],
        title=title,
        summary=summary,
        content=content,
        feed_id=feed_id,
        feed_url=feed_url[:MAX_URL_CHARS],
        source=publisher_domain(link or base)[:255],
        language=language[:16],
        # A date further ahead than a day is garbage; the id above still uses it (stable).
        published_at=published if published is None or published <= now + 86_400 else None,
        fetched_at=now,
    )
