"""The stream of articles as the worker sees it, simulated without Milvus or Kafka.

What goes in: story features (:class:`consumers.story_rule.StoryFeatures`) in arrival order, and
a :class:`consumers.story_rule.StoryRule`. What comes out: the story id of each article, and
summaries of the stories. :func:`simulate_stream` makes the worker's decision
(:class:`consumers.stories.StoryAssigner`) on the same candidates the worker would search for;
:func:`simulate_old` is the rule before it, kept to measure the change.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from consumers.stories import CANDIDATES
from consumers.story_rule import StoryFeatures, StoryRule, best_story

#: Nearest earlier articles whose stories are candidates (the worker's number).
STREAM_NEIGHBOURS = CANDIDATES
#: The old rule: the single nearest earlier article's story at this cosine or more.
OLD_COSINE = 0.5
SIZE_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("1", 1, 1),
    ("2", 2, 2),
    ("3", 3, 3),
    ("4-5", 4, 5),
    ("6-10", 6, 10),
    (">10", 11, math.inf),
)


def _nearest(
    scores: npt.NDArray[np.floating[Any]], allowed: npt.NDArray[np.bool_], k: int
) -> list[int]:
    """Indices of the ``k`` highest ``scores`` where ``allowed``."""
    index = np.flatnonzero(allowed)
    if len(index) > k:
        index = index[np.argpartition(-scores[index], k - 1)[:k]]
    return [int(i) for i in index]


def simulate_stream(
    items: Sequence[StoryFeatures], rule: StoryRule, *, neighbours: int = STREAM_NEIGHBOURS
) -> list[str]:
    """The story of each item, fed in the given order as the worker decides.

    Each item is compared with the seeds of the stories of its ``neighbours`` nearest earlier
    items within the event window (never with any other member); it joins the seed
    :func:`best_story` picks, or starts its own story. This is the worker's steady state, where
    the Milvus search sees every earlier row (a worker also compares with all the seeds it
    created in the last 30 s, which a Bounded read may not see yet)."""
    vectors = np.stack([item.vector for item in items]) if items else np.zeros((0, 0))
    times = np.array([item.event_time for item in items])
    stories: list[str] = []
    seeds: dict[str, StoryFeatures] = {}
    for n, item in enumerate(items):
        earlier = np.abs(times[:n] - item.event_time) <= rule.window_s
        nearest = _nearest(vectors[:n] @ item.vector, earlier, neighbours)
        candidates = [seeds[s] for s in dict.fromkeys(stories[j] for j in nearest)]
        match = best_story(rule, item, candidates)
        if match is None:
            seeds[item.id] = item
            stories.append(item.id)
        else:
            stories.append(match.story_id)
    return stories


def simulate_old(
    ids: Sequence[str], vectors: npt.NDArray[np.float32], threshold: float = OLD_COSINE
) -> list[str]:
    """The old rule in the given order: an item adopts the story of its single nearest earlier
    item (any member) when their cosine is ``threshold`` or more; this chains."""
    stories: list[str] = []
    for n in range(len(ids)):
        if n:
            scores = vectors[:n] @ vectors[n]
            best = int(np.argmax(scores))
            if float(scores[best]) >= threshold:
                stories.append(stories[best])
                continue
        stories.append(ids[n])
    return stories


def story_sizes(stories: Sequence[str]) -> dict[str, Any]:
    """Story count, the share of items in multi-item stories, the largest sizes and the count
    of stories per size bucket."""
    sizes = Counter(stories)
    multi = sum(size for size in sizes.values() if size > 1)
    return {
        "items": len(stories),
        "stories": len(sizes),
        "share_in_multi": round(multi / len(stories), 4) if stories else 0.0,
        "largest": sorted(sizes.values(), reverse=True)[:5],
        "by_size": {
            name: sum(low <= size <= high for size in sizes.values())
            for name, low, high in SIZE_BUCKETS
        },
    }
