"""Stage 2, clean: an Article's HTML fields become plain, normalised text.

What goes in: a decoded :class:`core.article.Article`. What comes out: a
:class:`CleanArticle` with the title and body as plain text (no markup survives) and the text
that will be embedded and indexed. The body is the longest of the feed's content and summary.
:class:`Clean` is the worker's step: it cleans a decoded item and leaves final ones alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from core.article import Article
from core.metrics import STAGE_SECONDS, Stage
from core.text import html_to_text
from store.schema import TEXT_MAX, TITLE_MAX

if TYPE_CHECKING:  # the item module imports this one (an item carries a CleanArticle)
    from consumers.item import Item


@dataclass(frozen=True)
class CleanArticle:
    """An article reduced to plain text, ready for the quality gate."""

    article: Article
    title: str
    body: str

    @property
    def text(self) -> str:
        """Title and body as one text: what is embedded, deduplicated and stored."""
        if not self.body:
            return self.title
        if not self.title or self.body.startswith(self.title):
            return self.body
        return f"{self.title}. {self.body}"


def clean_article(article: Article) -> CleanArticle:
    """Turn the article's HTML into text (see the module docstring)."""
    title = html_to_text(article.title)[:TITLE_MAX]
    content = html_to_text(article.content) if article.content else ""
    summary = html_to_text(article.summary) if article.summary else ""
    body = content if len(content) >= len(summary) else summary
    return CleanArticle(article=article, title=title, body=body[:TEXT_MAX])


class Clean:
    """The clean step: in, a decoded item; out, the item with its :class:`CleanArticle`."""

    def __call__(self, item: Item) -> Item:
        if item.final or item.article is None:
            return item
        started = time.perf_counter()
        clean = clean_article(item.article)
        STAGE_SECONDS.labels(Stage.CLEAN).observe(time.perf_counter() - started)
        return replace(item, article=None, clean=clean)
