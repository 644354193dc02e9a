"""HTML to plain text, and Unicode normalisation: how feed markup becomes indexable text.

``html_to_text`` parses with selectolax (lenient, fast, never executes anything), drops elements
that carry no article text (script, style, iframe, nav, forms, media), and returns the visible
text with white space collapsed and Unicode NFKC-normalised. The output never contains markup,
so no script, iframe or event-handler can survive into the index or the API.
"""

from __future__ import annotations

import html
import re
import unicodedata

from selectolax.lexbor import LexborHTMLParser as HTMLParser

_DROP_TAGS = (
    "script",
    "style",
    "noscript",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "form",
    "button",
    "nav",
    "template",
    "head",
    "video",
    "audio",
    "canvas",
)
_BLOCK_TAGS = ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "blockquote")
_WS = re.compile(r"\s+")
_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]"
)
_LOOKS_LIKE_HTML = re.compile(r"<[a-zA-Z!/][^>]*>|&[#a-zA-Z0-9]+;")


def normalise_text(text: str) -> str:
    """NFKC-normalise, drop control and invisible formatting characters, collapse white space."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", text)
    return _WS.sub(" ", text).strip()


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment (or of plain text with entities), normalised."""
    if not markup:
        return ""
    if not _LOOKS_LIKE_HTML.search(markup):
        return normalise_text(markup)
    tree = HTMLParser(markup)
    tree.strip_tags(list(_DROP_TAGS))
    root = tree.body or tree.root
    if root is None:
        return normalise_text(html.unescape(markup))
    for tag in _BLOCK_TAGS:
        for node in root.css(tag):
            node.insert_after(" ")
    text = root.text(separator=" ", deep=True)
    # Entities double-escaped by feeds (&amp;lt;) would otherwise show up as markup-like text.
    text = html.unescape(text) if "&" in text else text
    text = text.replace("<", "\u2039").replace(">", "\u203a") if "<" in text else text
    return normalise_text(text)
