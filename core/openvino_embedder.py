"""The OpenVINO int8 backend: post-training static quantization with NNCF, run by OpenVINO.

What goes in: the verified fp32 ONNX artifact of :mod:`core.onnx_export`. What comes out: an
artifact directory ``openvino-int8/`` (``model.xml`` + ``model.bin``) in the same model cache,
and a :data:`core.onnx_embedder.GraphRunner` over it.

Static quantization needs activation ranges, so NNCF calibrates on :data:`CALIBRATION_TEXTS`
(news-like sentences of mixed length, shipped here so that the build needs no data set). The
artifact is built, sealed and renamed like every cache entry (see :mod:`core.onnx_export`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from core.onnx_embedder import GraphRunner, ModelSpec
from core.onnx_export import (
    ONNX_FILE,
    ensure_artifact,
    ensure_onnx_fp32,
    is_complete,
    quiet,
    require_module,
)

XML_FILE = "model.xml"

#: Calibration input for the activation ranges (varied topics, lengths and punctuation).
CALIBRATION_TEXTS: tuple[str, ...] = (
    "Central bank holds interest rates steady as inflation cools for a third month.",
    "Floods displace thousands in the river delta after days of monsoon rain.",
    "The striker scored twice in the second half to send his club into the final.",
    "Parliament passed the budget bill late on Tuesday after a marathon debate over "
    "defence spending, pensions and a contested tax on imported fuel.",
    "Researchers say a new battery chemistry could halve the cost of grid storage.",
    "Shares in the chipmaker fell 8% after it warned that demand from data centres is slowing.",
    "Election officials began counting ballots on Sunday night; turnout was about 61 percent.",
    "A ceasefire brokered by regional mediators appeared to hold along the border.",
    "The film festival opened with a documentary about migrant workers in the Gulf.",
    "Health ministry confirms 12 new cases of measles, urges parents to vaccinate children.",
    "Tech giant unveils AI assistant for spreadsheets; critics raise privacy concerns.",
    "Oil prices rose above $90 a barrel after producers agreed to extend output cuts.",
    "Police arrested two men suspected of smuggling antiquities across the desert.",
    "The opposition leader called for early elections, saying the coalition had lost its "
    "mandate after the resignation of three ministers over a procurement scandal.",
    "Drought has cut the wheat harvest by a quarter, pushing bread prices to a record.",
    "Scientists detect water vapour in the atmosphere of a distant exoplanet.",
    "The union said talks with the airline broke down and strikes will go ahead on Friday.",
    "Wildfires forced the evacuation of several villages as winds gusted over 80 km/h.",
    "Court rules the surveillance programme unlawful and orders data to be deleted.",
    "Startup raises $40m to build cheaper satellite internet for rural schools.",
    "Tennis champion withdraws from the tournament with a wrist injury.",
    "The government announced a plan to build 500,000 homes over the next decade, with a "
    "third reserved for social housing and new rules for developers.",
    "Stock markets in Asia opened lower after weak factory data from China.",
    "Earthquake of magnitude 6.2 strikes off the coast; no tsunami warning issued.",
    "Museum returns looted bronze sculptures to their country of origin.",
    "Ministers meet in Brussels to discuss sanctions, energy security and migration.",
    "Hospital waiting lists reach their longest since records began, figures show.",
    "A cyber attack disrupted payments at hundreds of supermarkets over the weekend.",
    "The president pardoned dozens of protesters detained during last year's unrest.",
    "Rare snowfall blankets the capital, closing schools and grounding flights.",
    "Car maker recalls 200,000 vehicles over a faulty brake sensor.",
    "Peace talks resume in Geneva with both delegations present for the first time.",
)


def build_openvino_int8(fp32_dir: Path, spec: ModelSpec, out_dir: Path) -> None:
    """Quantize ``fp32_dir/model.onnx`` with NNCF and save ``out_dir/model.xml`` and ``.bin``."""
    require_module("nncf", "nncf", "openvino-int8")
    import nncf
    import openvino as ov
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(spec.model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=spec.max_seq_length)
    pad_id = tokenizer.token_to_id(spec.pad_token)
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=spec.pad_token)
    samples: list[dict[str, np.ndarray]] = []
    texts = list(CALIBRATION_TEXTS)
    for start in range(0, len(texts), 4):
        encodings = tokenizer.encode_batch(texts[start : start + 4])
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        samples.append(
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
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
