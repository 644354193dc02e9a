"""Stage 3, the quality gate: keep articles worth indexing, reject the rest with a reason.

What goes in: a :class:`consumers.clean.CleanArticle`. What comes out: ``None`` (keep) or a
:class:`core.metrics.RejectReason` from the closed set. Long texts are never rejected (the
embedder truncates them to the model's limit).
"""

from __future__ import annotations

from consumers.clean import CleanArticle
from core.metrics import RejectReason


def check_quality(clean: CleanArticle, *, min_chars: int = 40) -> RejectReason | None:
    """The reason to reject ``clean``, or ``None`` to keep it."""
    text = clean.text
    if not text.strip():
        return RejectReason.EMPTY
    if len(text) < min_chars:
        return RejectReason.TOO_SHORT
    letters = sum(ch.isalpha() for ch in text)
    if letters < len(text) * 0.4:
        return RejectReason.NOT_TEXT
    return None
