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


def openvino_runner(artifact_dir: Path, threads: int) -> GraphRunner:
    """A compiled OpenVINO CPU model as a :data:`GraphRunner` (one stream, ``threads`` threads)."""
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
        with lock:
            result = request.infer(inputs)[output]
        return np.asarray(result)

    return run
