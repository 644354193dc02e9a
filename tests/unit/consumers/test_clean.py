"""The clean step: an article's HTML becomes plain text; a final item passes untouched."""

from __future__ import annotations

from consumer_fakes import article

from consumers.clean import Clean
from consumers.item import Item


def test_clean_turns_html_into_text_and_leaves_final_items_alone() -> None:
    a = article(4, text="<p>The <b>storm</b> reached the coast &amp; cut power.</p>")
    item = Clean()(Item(produced_at_ms=None, article=a))
    assert item.clean is not None and item.article is None
    assert item.clean.body == "The storm reached the coast & cut power."
    poison = Item(produced_at_ms=None, poison="{}")
    assert Clean()(poison) is poison
