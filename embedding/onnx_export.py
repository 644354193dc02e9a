"""Offline export of a sentence-transformers model to ONNX, and the on-disk model cache.

What goes in: a local sentence-transformers model directory (a BERT-like transformer followed
by mean pooling and normalisation, such as the packaged all-MiniLM-L6-v2). What comes out:
artifact directories under ``<models dir>/<model-name>-<hash>/`` (the setting
``embedding_cache_dir``, by default ``<data dir>/models``):

- ``onnx-fp32/model.onnx``: the transformer (token ids -> last hidden state), exported with
  ``torch.onnx.export`` (dynamo) and checked against torch before it is kept;
- ``onnx-int8/model.onnx``: the same graph with onnxruntime's dynamic quantization (QInt8
  weights, per channel, MatMul only; per-tensor weights lost too much quality here). Its
  activation scales are computed per run over the whole input tensor, so it is run one text
  at a time (see :func:`quantize_int8`).

Pooling and normalisation run in numpy after the graph (see :mod:`embedding.onnx_backend`).

Guarantees: an artifact directory is either complete and verified or absent. Each is built in
a temporary sibling directory, sealed with a ``manifest.json`` (size and SHA-256 of every file)
written last, and renamed into place atomically. Builders serialise on an ``fcntl`` lock, so
the API and a worker that start together export once and never see each other's half-written
files. A directory whose manifest is missing or does not match its files (a crash, a full disk,
a hand edit) is moved aside and rebuilt. The hash in the directory name covers the model's files
and :data:`RECIPE_VERSION`, so a changed model or export recipe gets a new directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from core.errors import ConfigurationError

log = logging.getLogger(__name__)

#: Bumped whenever the export or quantization recipe changes; part of the cache key, so an
#: artifact built by an older recipe is never reused (2: OpenVINO calibrates on
#: :mod:`embedding.calibration`, one unpadded text per sample).
RECIPE_VERSION = "2"
MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
#: Inputs of the exported graph, in this order; ``token_type_ids`` is all zeros for one segment.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
#: Minimum cosine between torch and the exported fp32 graph on the probe batch; an export
#: below it is a broken trace (for example a specialised-away attention mask), never kept.
EXPORT_MIN_COSINE = 0.9999

Builder = Callable[[Path], None]


def model_cache_root(models_dir: Path, model_name: str, model_dir: Path) -> Path:
    """The cache directory of one model: ``<models_dir>/<safe name>-<content hash>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model_name).name or model_name).strip("-.")
    return models_dir / f"{safe or 'model'}-{model_fingerprint(model_dir)}"


def model_fingerprint(model_dir: Path) -> str:
    """A 16-hex-digit hash of every file of ``model_dir`` (names and bytes) and the recipe."""
    digest = hashlib.sha256(f"recipe={RECIPE_VERSION}\n".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        if rel.startswith(".") or rel.lower() == "readme.md":
            continue
        digest.update(f"{rel}\n".encode())
        digest.update(_file_sha256(path).encode())
    return digest.hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    """Seal ``directory``: record size and SHA-256 of each file in ``manifest.json``."""
    files = {
        p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": _file_sha256(p)}
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    if not files:
        raise RuntimeError(f"refusing to seal an empty artifact directory {directory}")
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"recipe": RECIPE_VERSION, "files": files}, indent=1))
    tmp.replace(directory / MANIFEST)


def is_complete(directory: Path) -> bool:
    """True when ``directory`` has a manifest and every listed file matches it exactly."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files: dict[str, dict[str, object]] = manifest["files"]
        if manifest.get("recipe") != RECIPE_VERSION or not files:
            return False
        for rel, meta in files.items():
            path = directory / rel
            if path.stat().st_size != meta["size"] or _file_sha256(path) != meta["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_artifact(target: Path, build: Builder) -> Path:
    """Return ``target`` complete and verified, building it with ``build(tmp_dir)`` if needed.

    ``build`` fills an empty temporary directory; it is sealed and renamed to ``target``. The
    check-then-build runs under an exclusive lock on ``<target>.lock`` so concurrent processes
    build at most once; a process that waited finds the finished directory and returns it.
    An incomplete ``target`` is moved aside (and deleted) before the rebuild.
    """
    if is_complete(target):
        return target
    with _exclusive_lock(target.with_name(f".{target.name}.lock")):
        if is_complete(target):
            return target
        _remove_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            write_manifest(tmp)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _remove_stale(target: Path) -> None:
    # Leftover temp dirs of this artifact belong to a dead builder: we hold the lock.
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if target.exists() or target.is_symlink():
        log.warning("embedding model cache %s is incomplete or corrupt; rebuilding it", target)
        aside = target.with_name(f".{target.name}.broken-{uuid.uuid4().hex[:8]}")
        target.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter's warnings and progress prints (a service log is not a console)."""
    sink = io.StringIO()
    # torch's exporter logs notes such as "torchvision is not installed" through its own loggers.
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._export", "nncf")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _probe_inputs(vocab_size: int) -> dict[str, np.ndarray]:
    # Padded rows are essential: traced with an all-ones mask the exporter drops the masking.
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, min(vocab_size, 20_000), size=(3, 19), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 4:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def export_fp32(model_dir: Path, out_dir: Path) -> None:
    """Export the transformer of ``model_dir`` to ``out_dir/model.onnx`` and verify it.

    The graph takes int64 ``input_ids``, ``attention_mask`` and ``token_type_ids`` of shape
    (batch, seq), both dynamic, and returns ``last_hidden_state`` (batch, seq, hidden). Raises
    :class:`RuntimeError` when onnxruntime's output differs from torch's on padded probe input.
    """
    import torch
    from transformers import AutoModel

    with quiet():
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="sdpa").eval()

    class _LastHidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            hidden: torch.Tensor = out.last_hidden_state
            return hidden

    probe = _probe_inputs(int(model.config.vocab_size))
    args = tuple(torch.from_numpy(probe[name]) for name in INPUT_NAMES)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=int(model.config.max_position_embeddings))
    wrapper = _LastHidden(model)
    with quiet(), torch.no_grad():
        torch.onnx.export(
            wrapper,
            args,
            str(out_dir / ONNX_FILE),
            input_names=list(INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_shapes={name: {0: batch, 1: seq} for name in INPUT_NAMES},
            dynamo=True,
            opset_version=18,
            external_data=False,
            verbose=False,
        )
        expected = wrapper(*args).numpy()
    got = run_onnx(out_dir / ONNX_FILE, probe)
    cosine = _masked_cosine(expected, got, probe["attention_mask"])
    if cosine < EXPORT_MIN_COSINE:
        raise RuntimeError(
            f"ONNX export of {model_dir} disagrees with torch (token cosine {cosine:.5f} < "
            f"{EXPORT_MIN_COSINE}); refusing to cache it"
        )


def quantize_int8(fp32_dir: Path, out_dir: Path) -> None:
    """Write ``out_dir/model.onnx``: the fp32 graph with dynamic int8 MatMul weights.

    Dynamic quantization (``DynamicQuantizeLinear``) picks one activation scale per input
    tensor at run time: in a batch, each row is scaled by the largest activation of every row,
    padding included (measured: cosine 0.977 between a headline alone and beside a long
    article). Callers run it one text per run. Static quantization with ONNX Runtime was
    measured as the alternative: row-independent, but its fixed per-tensor scales lost too
    much (mean cosine 0.928 to fp32 on the shared news texts, MinMax calibration).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(
            str(fp32_dir / ONNX_FILE),
            str(out_dir / ONNX_FILE),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )


def run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Run an exported graph once with onnxruntime (used to verify an export)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    result = session.run(None, {k: v for k, v in inputs.items() if k in wanted})[0]
    return np.asarray(result, dtype=np.float32)


def _masked_cosine(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    keep = mask.astype(bool)
    x, y = a[keep], b[keep]
    num = np.sum(x * y, axis=1)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-12
    return float(np.min(num / den))


def ensure_onnx_fp32(cache_root: Path, model_dir: Path) -> Path:
    """The verified fp32 ONNX artifact directory of ``model_dir`` (exported on first use)."""
    return ensure_artifact(cache_root / "onnx-fp32", lambda tmp: export_fp32(model_dir, tmp))


def ensure_onnx_int8(cache_root: Path, model_dir: Path) -> Path:
    """The verified int8 ONNX artifact directory (quantized from the fp32 one on first use)."""
    target = cache_root / "onnx-int8"
    if is_complete(target):  # the common start: skip verifying the fp32 export it came from
        return target
    fp32 = ensure_onnx_fp32(cache_root, model_dir)
    return ensure_artifact(target, lambda tmp: quantize_int8(fp32, tmp))


def require_module(module: str, package: str, backend: str) -> None:
    """Raise :class:`ConfigurationError` when ``module`` (needed by ``backend``) is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(
            f"embedding backend {backend!r} needs the package {package!r}, which is not "
            f"installed; install it or set NEWSSTREAM_EMBEDDING_BACKEND=torch"
        )
