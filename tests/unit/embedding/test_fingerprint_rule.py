"""The model fingerprint: the weights hash, its JSON form and the compatibility rule."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.settings import PACKAGED_MODEL
from embedding import fingerprint
from embedding.fingerprint import (
    ModelFingerprint,
    compatibility,
    passing_backends,
    weight_files,
    weights_sha256,
)

#: The weights hash of :func:`_model_dir`'s files, computed once: a constant, so any dependence
#: on the process (hash seeds, set order, the cache) would show as a different value.
FAKE_MODEL_SHA256 = "248f4dc5b17d6db356ef49fea279914811f7fcc25deceb26e31c6c9076231a59"

FP = ModelFingerprint(
    model=PACKAGED_MODEL,
    weights_sha256="ab" * 32,
    backend="torch",
    max_tokens=192,
    dimension=384,
)


def _model_dir(root: Path) -> Path:
    """A sentence-transformers layout: transformer weights at the top, a Dense module, files
    that are not weights, and exported copies that are not what the model loads."""
    model = root / "model"
    (model / "2_Dense").mkdir(parents=True)
    (model / "onnx").mkdir()
    (model / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "Pooling"},
                {"idx": 2, "name": "2", "path": "2_Dense", "type": "Dense"},
            ]
        )
    )
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (model / "pytorch_model.bin").write_bytes(b"the same weights, older format")
    (model / "2_Dense" / "pytorch_model.bin").write_bytes(b"dense weights " * 100)
    (model / "onnx" / "model.onnx").write_bytes(b"an export")
    (model / "config.json").write_text("{}")
    return model


def test_weight_files_are_what_the_loader_reads(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    names = [p.relative_to(model).as_posix() for p in weight_files(model)]
    assert names == ["2_Dense/pytorch_model.bin", "model.safetensors"]


def test_a_directory_without_weights_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="no weight files"):
        weight_files(tmp_path)


def test_the_weights_hash_is_the_same_in_every_process(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    first = weights_sha256(model, tmp_path / "cache")
    assert first == FAKE_MODEL_SHA256
    fingerprint._memo.clear()  # a new process: nothing remembered in memory
    assert weights_sha256(model, tmp_path / "cache") == FAKE_MODEL_SHA256  # from the cache file
    assert weights_sha256(model, tmp_path / "other-cache") == FAKE_MODEL_SHA256
    assert weights_sha256(model) == FAKE_MODEL_SHA256


def test_changing_one_weight_changes_the_hash(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    before = weights_sha256(model, tmp_path / "cache")
    dense = model / "2_Dense" / "pytorch_model.bin"
    data = bytearray(dense.read_bytes())
    data[7] ^= 1  # one bit of one weight, same size
    stat = dense.stat()
    dense.write_bytes(bytes(data))
    # A rewrite moves the mtime; set it explicitly so a coarse file system clock cannot hide it.
    os.utime(dense, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert weights_sha256(model, tmp_path / "cache") != before
    fingerprint._memo.clear()
    assert weights_sha256(model, tmp_path / "fresh-cache") != before


def test_a_later_start_reads_no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model_dir(tmp_path)
    expected = weights_sha256(model, tmp_path / "cache")
    cached = json.loads((tmp_path / "cache" / fingerprint.CACHE_FILE).read_text())
    assert len(cached) == 2  # one entry per weight file
    fingerprint._memo.clear()

    def no_reading(*_args: object) -> str:
        raise AssertionError("a weight file was read although its hash is cached")

    monkeypatch.setattr(fingerprint, "_file_sha256", no_reading)
    assert weights_sha256(model, tmp_path / "cache") == expected


def test_json_round_trip_is_exact_and_its_text_stable() -> None:
    data = FP.to_json()
    assert ModelFingerprint.from_json(data) == FP
    assert ModelFingerprint.from_json(json.loads(FP.dumps())) == FP
    shuffled = dict(reversed(list(data.items())))
    assert ModelFingerprint.from_json(shuffled).dumps() == FP.dumps()
    assert FP.dumps().startswith('{"backend":"torch","dimension":384,')
    assert set(data) == {
        "format",
        "model",
        "weights_sha256",
        "backend",
        "max_tokens",
        "dimension",
        "normalization",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 2}, "format"),
        ({"dimension": True}, "dimension"),
        ({"max_tokens": "192"}, "max_tokens"),
        ({"weights_sha256": ""}, "weights_sha256"),
    ],
)
def test_a_form_that_cannot_be_read_is_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelFingerprint.from_json({**FP.to_json(), **change})
    assert FP.refusal({**FP.to_json(), **change}) is not None


def test_the_same_fingerprint_is_compatible_without_warning() -> None:
    verdict = compatibility(FP, replace(FP))
    assert verdict.compatible and verdict.warning is None
    assert FP.refusal(FP.to_json()) is None


def test_another_backend_that_passed_the_quality_bar_is_accepted_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    openvino = replace(FP, backend="openvino-int8")
    verdict = compatibility(openvino, FP, passing={"torch", "openvino-int8"})
    assert verdict.compatible
    assert verdict.warning is not None and "openvino-int8" in verdict.warning
    # The shipped record: every backend passes for the packaged model.
    assert passing_backends(PACKAGED_MODEL) == {"torch", "onnx-int8", "openvino-int8"}
    with caplog.at_level("WARNING", logger="embedding.fingerprint"):
        assert openvino.refusal(FP.to_json()) is None
    assert "accepted" in caplog.text


def test_a_backend_never_measured_for_the_model_is_refused() -> None:
    other_model = replace(FP, model="some/other-model")
    verdict = compatibility(replace(other_model, backend="onnx-int8"), other_model)
    assert not verdict.compatible
    assert verdict.fields == ("backend",)
    assert passing_backends("some/other-model") == {"torch"}


@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("model", "sentence-transformers/all-mpnet-base-v2", "NEWSSTREAM_EMBEDDING_MODEL"),
        ("weights_sha256", "cd" * 32, "NEWSSTREAM_EMBEDDING_MODEL"),
        ("dimension", 768, "NEWSSTREAM_EMBEDDING_MODEL"),
        ("max_tokens", 256, "NEWSSTREAM_EMBEDDING_MAX_TOKENS"),
        ("normalization", "none", "NEWSSTREAM_EMBEDDING_MODEL"),
    ],
)
def test_a_different_identity_is_refused_naming_both(
    field: str, value: object, setting: str
) -> None:
    mine = replace(FP, **{field: value})
    verdict = compatibility(mine, FP)
    assert not verdict.compatible
    assert verdict.fields == (field,)
    reason = mine.refusal(FP.to_json())
    assert reason is not None
    assert FP.short() in reason and mine.short() in reason
    assert field in reason and setting in reason
