"""Story clusters: articles on the same story from different outlets share a story id.

What goes in: the rows of a batch about to be upserted (with their embeddings). What comes out:
the same rows with ``story_id`` set to the story of their nearest neighbour when that neighbour
is at cosine similarity >= ``threshold`` and was ingested within the window; otherwise the
article starts its own story (its id). Neighbours are looked up in Milvus (one batched search
per batch) and among the earlier rows of the same batch.

Each article adopts its single nearest neighbour's story: never a chain of links, which at the
evaluated threshold would join unrelated stories (see ``newsstream eval dedup``: cosine 0.5
gives recall 0.98 / precision 0.97 on full texts and 0.85 / 0.97 on title + 40 words).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from core.milvus import VECTOR_FIELD, quote_literal


class StoryAssigner:
    """Sets ``story_id`` on rows from their nearest recent neighbour (see the module docstring)."""

    def __init__(
        self, client: MilvusClient, collection: str, *, threshold: float, window_s: float
    ) -> None:
        self._client = client
        self._collection = collection
        self._threshold = threshold
        self._window_s = window_s

    def assign(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        ids = [row["id"] for row in rows]
        vectors = np.asarray([row[VECTOR_FIELD] for row in rows], dtype=np.float32)
        since = int(time.time() - self._window_s)
        expr = (
            f"ingested_at >= {since} and id not in ["
            + ", ".join(quote_literal(i) for i in ids)
            + "]"
        )
        found = self._client.search(
            self._collection,
            data=vectors.tolist(),
            anns_field=VECTOR_FIELD,
            limit=1,
            filter=expr,
            output_fields=["story_id"],
            search_params={"metric_type": "COSINE", "params": {"ef": 32}},
            # Stories written by the previous batch a moment ago must be found.
            consistency_level="Strong",
        )
        for n, row in enumerate(rows):
            best_score, best_story = self._threshold, ""
            for hit in found[n] if n < len(found) else []:
                score = float(hit["distance"])
                if score >= best_score:
                    best_score = score
                    best_story = hit["entity"].get("story_id") or hit["id"]
            if n:
                earlier = vectors[:n] @ vectors[n]
                k = int(np.argmax(earlier))
                if float(earlier[k]) >= best_score and float(earlier[k]) >= self._threshold:
                    best_story = rows[k]["story_id"]
            if best_story:
                row["story_id"] = best_story
