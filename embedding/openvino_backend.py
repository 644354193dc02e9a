"""The OpenVINO int8 backend: post-training static quantization with NNCF, run by OpenVINO.

What goes in: the verified fp32 ONNX artifact of :mod:`embedding.onnx_export`. What comes out: an
artifact directory ``openvino-int8/`` (``model.xml`` + ``model.bin``) in the same model cache,
and a :data:`embedding.onnx_backend.GraphRunner` over it.

Static quantization needs activation ranges, so NNCF calibrates on
:func:`embedding.calibration.calibration_texts` (a few hundred shipped texts, from
headlines to passages past the token limit), one unpadded text per sample: padding positions
are never seen by a real token, so their activations must not widen the ranges. The ranges are
constants of the saved model, so a text's vector does not depend on the other texts of its
batch. The artifact is built, sealed and renamed like every cache entry (see
:mod:`embedding.onnx_export`).

The runner hands the graph a bounded set of input shapes (a few padded lengths, power-of-two
row counts): the CPU plugin keeps compiled kernels per shape, and a long-running worker must
not collect one set per text length it ever met (see :func:`openvino_runner`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from embedding.calibration import calibration_texts
from embedding.onnx_backend import GraphRunner, ModelSpec
from embedding.onnx_export import (
    ONNX_FILE,
    ensure_artifact,
    ensure_onnx_fp32,
    is_complete,
    quiet,
    require_module,
)

XML_FILE = "model.xml"


def build_openvino_int8(fp32_dir: Path, spec: ModelSpec, out_dir: Path) -> None:
    """Quantize ``fp32_dir/model.onnx`` with NNCF and save ``out_dir/model.xml`` and ``.bin``."""
    require_module("nncf", "nncf", "openvino-int8")
    import nncf
    import openvino as ov
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(spec.model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=spec.max_seq_length)
    samples: list[dict[str, np.ndarray]] = []
    for text in calibration_texts():
        ids = np.asarray([tokenizer.encode(text).ids], dtype=np.int64)
        samples.append(
            {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids),
            }
        )
    with quiet():
        model = ov.Core().read_model(str(fp32_dir / ONNX_FILE))
        quantized = nncf.quantize(
            model,
            nncf.Dataset(samples),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(samples),
        )
        ov.save_model(quantized, str(out_dir / XML_FILE))


def ensure_openvino_int8(cache_root: Path, spec: ModelSpec) -> Path:
    """The verified OpenVINO int8 artifact directory (built from the fp32 ONNX on first use)."""
    target = cache_root / "openvino-int8"
    if is_complete(target):
        return target
    fp32 = ensure_onnx_fp32(cache_root, spec.model_dir)
    return ensure_artifact(target, lambda tmp: build_openvino_int8(fp32, spec, tmp))


#: Sequence lengths a graph run is padded up to: every 16 tokens up to 128 (feed items), then
#: every 32 (the model's own limit always ends the ladder). See :func:`openvino_runner` for why.
LENGTH_STEPS = ((128, 16), (None, 32))


def bucket_length(length: int, max_length: int) -> int:
    """The padded length of a run whose longest text has ``length`` tokens.

    The next multiple of 16 up to 128 tokens, of 32 above, never more than ``max_length`` (the
    model's limit) and never less than ``length``: at most ``len(length_buckets(max_length))``
    distinct values whatever the texts.
    """
    for upto, step in LENGTH_STEPS:
        if upto is None or length <= upto:
            return max(length, min(-(-length // step) * step, max_length))
    raise AssertionError("LENGTH_STEPS ends with an open step")  # pragma: no cover


def length_buckets(max_length: int) -> list[int]:
    """Every length :func:`bucket_length` can return for texts cut at ``max_length`` tokens."""
    return sorted({bucket_length(n, max_length) for n in range(1, max_length + 1)})


def row_chunks(rows: int) -> list[int]:
    """``rows`` split into powers of two, largest first (30 -> 16, 8, 4, 2).

    A run's rows never depend on each other (static int8 scales, masked padding), so splitting
    changes no vector; it bounds the batch sizes the graph sees to ``log2(rows) + 1`` values
    without the wasted work of padding 17 rows to 32.
    """
    return [1 << bit for bit in range(rows.bit_length() - 1, -1, -1) if rows >> bit & 1]


def openvino_runner(artifact_dir: Path, threads: int, max_length: int) -> GraphRunner:
    """A compiled OpenVINO CPU model as a :data:`GraphRunner` (one stream, ``threads`` threads).

    ``max_length`` is the most tokens a text can have (the model's limit): runs are padded up
    to :func:`bucket_length` and cut into :func:`row_chunks`, and the padding is sliced off the
    result, so the caller sees the shape it passed.

    Why: the CPU plugin keeps compiled kernels and executors for every input shape it has run
    (its runtime cache holds 5,000 entries by default, and oneDNN's primitive cache 1,024),
    about 5 MB per (rows, tokens) shape for this model. Runs of unpadded texts bring a new shape
    with almost every call, so a worker's memory grew for weeks. With the buckets the graph sees
    at most ``len(length_buckets(max_length)) * (log2(rows) + 1)`` shapes (60 for 32-text
    batches cut at 192 tokens), every one compiled once, and the caches stop growing. Padding
    is masked out of attention and pooling, so vectors do not move.
    """
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(artifact_dir / XML_FILE)),
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()
    output = compiled.output(0)
    lock = threading.Lock()  # an infer request is not reentrant

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        rows, length = inputs["input_ids"].shape
        pad = bucket_length(length, max_length) - length
        # Pad id 0 with mask 0: the padded columns are never attended to, and are cut below.
        padded = {name: np.pad(array, ((0, 0), (0, pad))) for name, array in inputs.items()}
        parts: list[np.ndarray] = []
        start = 0
        with lock:
            for size in row_chunks(rows):
                chunk = {name: array[start : start + size] for name, array in padded.items()}
                parts.append(np.asarray(request.infer(chunk)[output]))
                start += size
        result = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return result[:, :length]

    return run
