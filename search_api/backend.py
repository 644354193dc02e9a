"""The API's connection to the index: one lazily connected searcher, shared by every router.

What goes in: the settings (and optionally an embedder to share, e.g. in tests). What comes
out: :class:`search_api.searcher.Searcher` and :class:`search_api.stories.StoryStore` on one
Milvus connection. Guarantees: the connection is made on first use, never at import, and made
again on the next request after a failed attempt, so the API comes back by itself when Milvus
does; while Milvus is away every call raises :class:`core.errors.TransientError` (a 503).
"""

from __future__ import annotations

import threading

from pymilvus import MilvusClient

from core.settings import Settings
from embedding.embedder import Embedder
from search_api.searcher import Searcher
from search_api.stories import StoryStore
from store.client import milvus_client
from store.schema import ensure_collection


class Backend:
    """The API's lazily connected searcher; reconnects after Milvus comes back."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._searcher: Searcher | None = None
        self._client: MilvusClient | None = None
        self._lock = threading.Lock()

    def load_model(self) -> None:
        if self._embedder is None:
            self._embedder = Embedder(self.settings)

    def embedder(self) -> Embedder:
        """The API's embedding model (loaded on first use)."""
        self.load_model()
        assert self._embedder is not None
        return self._embedder

    def searcher(self) -> Searcher:
        """The connected searcher; raises :class:`TransientError` while Milvus is away."""
        with self._lock:
            if self._searcher is None:
                self.load_model()
                assert self._embedder is not None
                client = milvus_client(self.settings)
                ensure_collection(
                    client, self.settings, self._embedder.dimension, self._embedder.fingerprint
                )
                self._searcher = Searcher(self.settings, client, self._embedder)
                self._client = client
            return self._searcher

    def stories(self) -> StoryStore:
        """Story reads and edits on the same connection; raises :class:`TransientError` while
        Milvus is away."""
        searcher = self.searcher()
        assert self._client is not None
        return StoryStore(self._client, self.settings, has_bm25=searcher.milvus_bm25())
