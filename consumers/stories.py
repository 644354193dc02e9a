"""Story clusters: articles on the same story from different outlets share a story id.

What goes in: the rows of a batch about to be upserted (with their embeddings). What comes out:
the same rows with ``story_id`` set to the story of their nearest neighbour when that neighbour
is at cosine similarity >= ``threshold`` and was ingested within the window; otherwise the
article starts its own story (its id). Neighbours are looked up in three places: Milvus (one
batched search per batch), the rows this worker assigned in the last ``recent_s`` seconds (kept
in memory), and the earlier rows of the same batch.

The Milvus search reads at the configured consistency (Bounded by default), not Strong: a Strong
read waits for the server's next time tick (200 ms on the 2.3 server) on every batch, which
bounded the worker's ingest rate. What a Bounded read may not see yet (rows written within the
staleness bound, 0.5 s on the embedded server and 5 s by default elsewhere) is, for this
worker's own rows, in the in-memory list; rows another worker wrote within that bound may be
missed, as rows another worker is writing at the same moment always could be.

Each article adopts its single nearest neighbour's story: never a chain of links, which at the
evaluated threshold would join unrelated stories (see ``newsstream eval dedup``: cosine 0.5
gives recall 0.98 / precision 0.97 on full texts and 0.85 / 0.97 on title + 40 words).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
from pymilvus import MilvusClient

from core.milvus import VECTOR_FIELD, quote_literal

#: Seconds this worker remembers the stories it assigned (longer than any Bounded staleness).
RECENT_S = 30.0
#: At most this many remembered rows (the oldest go first): bounds memory and the per-batch
#: comparison (32 rows x 20,000 x 384 dimensions is about 250 M multiply-adds) at backfill rates.
RECENT_MAX = 20_000


class StoryAssigner:
    """Sets ``story_id`` on rows from their nearest recent neighbour (see the module docstring)."""

    def __init__(
        self,
        client: MilvusClient,
        collection: str,
        *,
        threshold: float,
        window_s: float,
        consistency: str = "Bounded",
        recent_s: float = RECENT_S,
    ) -> None:
        self._client = client
        self._collection = collection
        self._threshold = threshold
        self._window_s = window_s
        self._consistency = consistency
        self._recent_s = recent_s
        # (assigned at, id, story id, vector) of the rows this worker assigned, oldest first.
        self._recent: deque[tuple[float, str, str, np.ndarray]] = deque(maxlen=RECENT_MAX)
        self._lock = threading.Lock()

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
            consistency_level=self._consistency,
        )
        with self._lock:
            recent_ids, recent_stories, recent_scores = self._recent_scores(set(ids), vectors)
            for n, row in enumerate(rows):
                best_score, best_story = self._threshold, ""
                for hit in found[n] if n < len(found) else []:
                    score = float(hit["distance"])
                    if score >= best_score:
                        best_score = score
                        best_story = hit["entity"].get("story_id") or hit["id"]
                if recent_ids:
                    k = int(np.argmax(recent_scores[n]))
                    if float(recent_scores[n][k]) >= best_score:
                        best_score, best_story = float(recent_scores[n][k]), recent_stories[k]
                if n:
                    earlier = vectors[:n] @ vectors[n]
                    k = int(np.argmax(earlier))
                    if float(earlier[k]) >= best_score:
                        best_story = rows[k]["story_id"]
                if best_story:
                    row["story_id"] = best_story
            self._remember(rows, vectors)

    def _recent_scores(
        self, batch_ids: set[str], vectors: np.ndarray
    ) -> tuple[list[str], list[str], np.ndarray]:
        """Ids and stories of the remembered rows outside this batch, and the cosine of each
        batch row to each of them (rows x remembered)."""
        cutoff = time.monotonic() - self._recent_s
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()
        kept = [entry for entry in self._recent if entry[1] not in batch_ids]
        if not kept:
            return [], [], np.empty((len(vectors), 0), dtype=np.float32)
        matrix = np.stack([entry[3] for entry in kept])
        return [e[1] for e in kept], [e[2] for e in kept], vectors @ matrix.T

    def _remember(self, rows: list[dict[str, Any]], vectors: np.ndarray) -> None:
        now = time.monotonic()
        for row, vector in zip(rows, vectors, strict=True):
            self._recent.append((now, row["id"], row.get("story_id") or row["id"], vector))
