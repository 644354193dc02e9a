"""Result shaping after retrieval: recency boost and collapsing copies of one story.

What goes in: hits ranked by the engine (best first). What comes out: the same hits re-ranked
and/or collapsed. Both are pure functions over :class:`search_api.results.SearchResult`.

- Recency: ``score * (1 - weight + weight * 0.5 ** (age / half_life))``; an article published
  ``half_life`` ago keeps ``1 - weight/2`` of its score, a fresh one all of it, an undated one
  ``1 - weight``. The boost only re-orders candidates the engine found; it never adds any.
- Collapse: hits sharing a ``story_id`` keep only the best one; the others become its
  ``also_reported_by`` entries (source and URL), merged with what dedup recorded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from search_api.results import SearchResult, SourceRef

RECENCY_WEIGHT = 0.5


def apply_recency(
    hits: Sequence[SearchResult],
    half_life_s: float,
    now: float | None = None,
    weight: float = RECENCY_WEIGHT,
) -> list[SearchResult]:
    """Hits re-ranked by their score times the recency factor (stable for equal scores)."""
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    current = time.time() if now is None else now

    def factor(hit: SearchResult) -> float:
        if not hit.published_at:
            return 1.0 - weight
        age = max(0.0, current - hit.published_at)
        return float(1.0 - weight + weight * 0.5 ** (age / half_life_s))

    boosted = [hit.model_copy(update={"score": hit.score * factor(hit)}) for hit in hits]
    return sorted(boosted, key=lambda h: h.score, reverse=True)


def collapse_stories(hits: Sequence[SearchResult]) -> list[SearchResult]:
    """One hit per story (the best ranked), with the others listed as also reported by."""
    kept: dict[str, SearchResult] = {}
    order: list[str] = []
    for hit in hits:
        story = hit.story_id or hit.id
        if story not in kept:
            kept[story] = hit
            order.append(story)
            continue
        best = kept[story]
        also = list(best.also_reported_by)
        urls = {entry.get("url") for entry in also} | {best.url}
        extra = [SourceRef(source=hit.source, url=hit.url), *hit.also_reported_by]
        for entry in extra:
            if entry.get("url") and entry["url"] not in urls:
                also.append(entry)
                urls.add(entry["url"])
        kept[story] = best.model_copy(update={"also_reported_by": also})
    return [kept[story] for story in order]
