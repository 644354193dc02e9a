"""Embedding with an exported transformer graph: tokenizer, batching and pooling in numpy.

What goes in: a local sentence-transformers model directory whose modules are a transformer,
mean pooling and (optionally) normalisation, plus a function that runs the exported graph
(onnxruntime here, OpenVINO in :mod:`embedding.openvino_backend`). What comes out: float32
L2-normalised vectors, one row per input text, in input order.

Guarantees: texts are tokenized with the model's own fast tokenizer (``tokenizer.json``) and
truncated at the model's ``max_seq_length``, never rejected; within a call they are sorted by
length before they are grouped into graph runs of at most ``rows_per_run`` texts (less
padding) and put back in input order; ``embed`` is thread-safe (one call runs the graph at a
time, which is also what a 2-core box can afford).

A text's vector depends on the other texts of its run only as much as the graph lets it: the
padding is masked out of attention and pooling, so a graph whose every operation works row by
row (fp32, or int8 with activation scales fixed at export) gives the same vector alone or in
any batch. A graph that picks its activation scales from the whole input tensor (dynamic int8
quantization) does not: it must be run with ``rows_per_run=1``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigurationError
from embedding.onnx_export import INPUT_NAMES, ONNX_FILE

#: Runs the graph on one padded batch; returns the last hidden state (batch, seq, hidden).
GraphRunner = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    """What the numpy side needs to know about a sentence-transformers model directory."""

    model_dir: Path
    dimension: int
    max_seq_length: int
    pad_token: str


def read_model_spec(model_dir: Path) -> ModelSpec:
    """Read and check ``model_dir``; raises :class:`ConfigurationError` if it cannot be served.

    Only transformer -> mean pooling [-> normalize] pipelines are supported outside torch:
    other poolings or dense layers would be silently wrong here.
    """
    try:
        config = json.loads((model_dir / "config.json").read_text())
        modules = _read_json(model_dir / "modules.json", default=[])
        st_config = _read_json(model_dir / "sentence_bert_config.json", default={})
        tok_config = _read_json(model_dir / "tokenizer_config.json", default={})
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"expected a sentence-transformers model directory at {model_dir} ({exc})"
        ) from exc
    if not (model_dir / "tokenizer.json").is_file():
        raise ConfigurationError(f"expected a fast tokenizer file {model_dir / 'tokenizer.json'}")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if any(kind not in ("Transformer", "Pooling", "Normalize") for kind in kinds):
        raise ConfigurationError(
            f"the ONNX/OpenVINO backends support transformer + mean pooling models; "
            f"{model_dir} has modules {kinds}: use embedding_backend=torch"
        )
    for module in modules:
        if str(module.get("type", "")).endswith("Pooling"):
            pooling = _read_json(model_dir / str(module.get("path", "")) / "config.json", {})
            if not pooling.get("pooling_mode_mean_tokens", False):
                raise ConfigurationError(
                    f"the ONNX/OpenVINO backends need mean pooling; {model_dir} uses {pooling}: "
                    f"use embedding_backend=torch"
                )
    limit = int(config.get("max_position_embeddings", 512))
    max_len = int(st_config.get("max_seq_length") or tok_config.get("model_max_length") or limit)
    pad = tok_config.get("pad_token", "[PAD]")
    return ModelSpec(
        model_dir=model_dir,
        dimension=int(config["hidden_size"]),
        max_seq_length=min(max_len, limit),
        pad_token=pad if isinstance(pad, str) else "[PAD]",
    )


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


class GraphEmbedder:
    """Tokenize, group into runs (sorted by length), run a graph, mean-pool and normalise.

    ``rows_per_run`` is the most texts one graph run holds (see the module docstring for when
    it must be 1).
    """

    def __init__(self, spec: ModelSpec, run: GraphRunner, rows_per_run: int) -> None:
        from tokenizers import Tokenizer

        if rows_per_run < 1:
            raise ValueError(f"rows_per_run must be at least 1; found {rows_per_run}")
        self.dimension = spec.dimension
        self.max_seq_length = spec.max_seq_length
        self._run = run
        self._rows_per_run = rows_per_run
        tokenizer = Tokenizer.from_file(str(spec.model_dir / "tokenizer.json"))
        pad_id = tokenizer.token_to_id(spec.pad_token)
        tokenizer.enable_truncation(max_length=spec.max_seq_length)
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=spec.pad_token)
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 ``(len(texts), dimension)``, rows in input order."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        with self._lock:
            for start in range(0, len(order), self._rows_per_run):
                idx = order[start : start + self._rows_per_run]
                out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(batch)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._run(
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        return mean_pool_normalise(hidden, mask)


def mean_pool_normalise(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the unmasked token vectors, L2-normalised (sentence-transformers' pooling)."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden.astype(np.float32) * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    result: np.ndarray = pooled / np.clip(norms, 1e-12, None)
    return result


def onnxruntime_runner(artifact_dir: Path, threads: int) -> GraphRunner:
    """An onnxruntime CPU session for ``artifact_dir/model.onnx`` as a :data:`GraphRunner`.

    ``threads`` intra-op threads, one inter-op thread (the graph is a chain: parallel branches
    would only fight over the same 2 cores), and no spin-waiting between calls, because the
    worker's other stages and Milvus share those cores while the embedder is idle.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(artifact_dir / ONNX_FILE), options, providers=["CPUExecutionProvider"]
    )
    wanted = [i.name for i in session.get_inputs()]
    unknown = set(wanted) - set(INPUT_NAMES)
    if unknown:
        raise ConfigurationError(f"exported graph {artifact_dir} has unexpected inputs {unknown}")

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        result = session.run(None, {name: inputs[name] for name in wanted})[0]
        return np.asarray(result)

    return run
