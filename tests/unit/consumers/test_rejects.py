"""The bounded sample of rejected items behind ``newsstream rejects``."""

from __future__ import annotations

from pathlib import Path

from consumers.rejects import HEAD_CHARS, RejectSample


def test_items_come_back_newest_first_with_their_fields(tmp_path: Path) -> None:
    sample = RejectSample(tmp_path / "state" / "rejects.sqlite3")
    sample.add(
        reason="spam", article_id="a" * 32, title="Win", url="https://x/1", text="t" * 900, now=10.0
    )
    sample.add(
        reason="too_short", article_id="b" * 32, title="Hi", url="https://x/2", text="hi", now=20.0
    )
    items = sample.items()
    assert [i.article_id for i in items] == ["b" * 32, "a" * 32]
    assert items[1].reason == "spam" and items[1].url == "https://x/1"
    assert len(items[1].head) == HEAD_CHARS
    assert [i.reason for i in sample.items(reason="spam")] == ["spam"]


def test_the_sample_is_bounded_per_reason_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "rejects.sqlite3"
    sample = RejectSample(path, per_reason=3)
    for n in range(10):
        sample.add(
            reason="spam", article_id=f"{n:032x}", title=f"t{n}", url="", text="", now=float(n)
        )
    sample.add(reason="empty", article_id="e" * 32, title="", url="", text="", now=5.0)
    reopened = RejectSample(path, per_reason=3)
    assert reopened.counts() == {"spam": 3, "empty": 1}
    assert [i.title for i in reopened.items(reason="spam")] == ["t9", "t8", "t7"]


def test_the_same_article_rejected_again_replaces_its_row(tmp_path: Path) -> None:
    sample = RejectSample(tmp_path / "r.sqlite3")
    sample.add(reason="spam", article_id="a" * 32, title="old", url="", text="", now=1.0)
    sample.add(reason="spam", article_id="a" * 32, title="new", url="", text="", now=2.0)
    assert [i.title for i in sample.items()] == ["new"]
