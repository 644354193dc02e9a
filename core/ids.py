"""Article identity: canonical URLs and article ids, as fixed by the design.

- Canonical URL: lower-case scheme and host, no default port, no fragment, no tracking
  parameters (``utm_*``, ``fbclid``, ``gclid``, ...), query sorted; relative links are resolved
  against a base first.
- Article id: ``sha256(canonical_url)[:32]`` in hex. Without a link, the entry's GUID is hashed
  (prefixed so that it never collides with a URL); without either, the feed URL, the normalised
  title and the published date are hashed.

All functions are pure and total: any string gives an id, nothing raises on odd input.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import SplitResult, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

ID_LENGTH = 32
_ID_RE = re.compile(r"^[0-9a-f]{32}$")

#: Query parameters that only track the reader and never change the article.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "ocid",
        "cmpid",
        "_ga",
        "_gl",
        "ref_src",
        "cmp",
        "s_cid",
        "icid",
        "mkt_tok",
        "oly_enc_id",
        "oly_anon_id",
        "vero_id",
        "__twitter_impression",
        "rss",
        "feedtype",
    }
)
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(_TRACKING_PREFIXES)


def canonical_url(url: str, base: str | None = None) -> str:
    """Return the canonical form of ``url`` (resolved against ``base`` when relative).

    Returns "" for text that cannot be parsed as a URL at all.

    >>> canonical_url("HTTPS://Example.COM:443/a?utm_source=x&b=2&a=1#frag")
    'https://example.com/a?a=1&b=2'
    """
    try:
        raw = url.strip()
        if base:
            raw = urljoin(base.strip(), raw)
        parts = urlsplit(raw)
    except ValueError:  # e.g. an unclosed IPv6 bracket: not a usable link
        return ""
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = _port(parts)
    # Credentials never identify an article: they are dropped (ids must not carry secrets).
    netloc = host
    if port is not None and _DEFAULT_PORTS.get(scheme) != port:
        netloc = f"{host}:{port}"
    path = parts.path or ("/" if netloc else "")
    query_pairs = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)
    ]
    query_pairs.sort()
    query = urlencode(query_pairs, doseq=True)
    return urlunsplit((scheme, netloc, path, query, ""))


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:  # a port outside 0..65535 is ignored rather than fatal
        return None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:ID_LENGTH]


def normalise_title(title: str) -> str:
    """Case-fold, NFKC-normalise and collapse white space: the title as used in fallback ids."""
    return " ".join(unicodedata.normalize("NFKC", title).casefold().split())


def article_id(
    *,
    link: str | None,
    guid: str | None = None,
    feed_url: str = "",
    title: str = "",
    published: str | int | None = None,
    base: str | None = None,
) -> str:
    """The article id of a feed entry, following the design's rules in order.

    1. a link (made absolute against ``base``): ``sha256(canonical_url(link))[:32]``;
    2. a GUID: ``sha256("guid:" + guid)[:32]``;
    3. neither: ``sha256("fallback:" + feed_url + "\\n" + normalised title + "\\n" + date)``.
    """
    if link and link.strip():
        resolved = canonical_url(link, base)
        if urlsplit(resolved).scheme in ("http", "https"):
            return _digest(resolved)
    if guid and guid.strip():
        return _digest("guid:" + guid.strip())
    date = "" if published is None else str(published)
    return _digest(f"fallback:{feed_url.strip()}\n{normalise_title(title)}\n{date}")


def is_article_id(value: str) -> bool:
    """True when ``value`` has the shape of an article id (32 lower-case hex characters)."""
    return bool(_ID_RE.match(value))


def content_hash(text: str) -> str:
    """The one content hash: sha256 of ``text`` case-folded with its white space collapsed, as
    32 hex characters. It is given one of two inputs, each answering its own question:

    - an article's cleaned text in its dedup-normalised form (``dedup.index.text_hash``): the
      exact-duplicate key, stored in each row's ``content_hash``;
    - a feed entry's fields as published (:func:`entry_fingerprint`): has the producer
      delivered this version of the entry already?
    """
    return hashlib.sha256(" ".join(text.casefold().split()).encode("utf-8")).hexdigest()[:32]


def entry_fingerprint(title: str, summary: str, content: str) -> str:
    """What the producer keeps of a delivered version of a feed entry: :func:`content_hash` of
    its title, summary and content as published (HTML included).

    Why not the article's content hash: a re-published entry must be sent again whatever
    changed in it (an "UPDATE 2:" marker, a dateline, a credit, the headline alone), and the
    dedup normalisation erases exactly those; the producer also has no cleaned text.
    """
    return content_hash(f"{title}\n{summary}\n{content}")
