"""Embedding backends without a model: the artifact cache, run grouping, the backend choice,
and the package's import boundary.

Everything that exports or loads a model is in ``tests/integration/test_embedding_backends.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from import_rules import packages_imported_by
from pydantic import ValidationError

import embedding.onnx_export as onnx_export
from core.errors import ConfigurationError
from core.settings import PACKAGED_MODEL, Settings, load_settings
from embedding.calibration import calibration_texts
from embedding.embedder import choose_backend, recorded_ranking, resolve_model_path
from embedding.onnx_backend import GraphEmbedder, ModelSpec, read_model_spec
from newsstream.bench.embed_quality import MIN_BATCH_COSINE, QualityResult, batch_min_cosine


def _settings(data_dir: Path, backend: str) -> Settings:
    return load_settings(
        data_dir=data_dir, embedding_backend=backend, embedding_model=PACKAGED_MODEL
    )


def test_concurrent_builders_build_once_and_all_see_the_finished_artifact(
    tmp_path: Path,
) -> None:
    calls: list[int] = []

    def slow_build(directory: Path) -> None:
        calls.append(1)
        time.sleep(0.3)
        (directory / "weights.bin").write_bytes(b"x" * 1000)

    target = tmp_path / "cache" / "artifact"
    seen: list[bytes] = []

    def worker() -> None:
        seen.append((onnx_export.ensure_artifact(target, slow_build) / "weights.bin").read_bytes())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert seen == [b"x" * 1000] * 4
    assert onnx_export.is_complete(target)


def test_failed_build_leaves_no_artifact_and_no_temp_dir(tmp_path: Path) -> None:
    def broken_build(directory: Path) -> None:
        (directory / "model.onnx").write_bytes(b"partial")
        raise RuntimeError("exporter crashed")

    target = tmp_path / "cache" / "artifact"
    with pytest.raises(RuntimeError, match="exporter crashed"):
        onnx_export.ensure_artifact(target, broken_build)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == [".artifact.lock"]


def _writes(content: bytes) -> Callable[[Path], None]:
    def build(directory: Path) -> None:
        (directory / "model.onnx").write_bytes(content)

    return build


def test_an_artifact_of_an_older_recipe_is_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    data_dir = tmp_path / "data"
    monkeypatch.setattr(onnx_export, "RECIPE_VERSION", "old")
    old_root = onnx_export.model_cache_root(data_dir / "models", PACKAGED_MODEL, model_dir)
    old = onnx_export.ensure_artifact(old_root / "onnx-int8", _writes(b"old recipe"))
    monkeypatch.undo()
    # A new recipe looks somewhere else, and the old directory does not pass for a new one.
    assert onnx_export.model_cache_root(data_dir / "models", PACKAGED_MODEL, model_dir) != old_root
    assert not onnx_export.is_complete(old)
    rebuilt = onnx_export.ensure_artifact(old, _writes(b"new recipe"))
    assert (rebuilt / "model.onnx").read_bytes() == b"new recipe"


class _PerTensorScale:
    """A fake graph that, like dynamic int8 quantization, scales every row by the run's max id."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        ids = inputs["input_ids"].astype(np.float32)
        self.batch_sizes.append(ids.shape[0])
        hidden = np.stack([np.sin(ids), np.cos(ids), np.sin(ids / 7)], axis=-1)
        # Rounding to a grid set by the whole tensor: what makes rows depend on batch-mates.
        step = float(ids.max()) / 50.0
        quantised: np.ndarray = np.round(hidden * 1000.0 / step) * step
        return quantised


def _packaged_spec(dimension: int) -> ModelSpec:
    """The packaged model's tokenizer settings, with a fake graph's hidden size."""
    spec = read_model_spec(Path(resolve_model_path(PACKAGED_MODEL)))
    return replace(spec, dimension=dimension)


TEXTS = [
    "Oil",
    "Rebels seize the airport of the eastern city, residents say; the army denies it. "
    "Fighting has displaced tens of thousands of people since the start of the month.",
    "Heavy snow closes airports across northern Europe for a second day",
    "Flood",
]


def test_one_text_per_run_makes_each_vector_its_own_even_under_per_run_scales() -> None:
    spec = _packaged_spec(3)
    fake = _PerTensorScale()
    single = GraphEmbedder(spec, fake, rows_per_run=1)
    alone = np.vstack([single.embed([t]) for t in TEXTS])
    together = single.embed(TEXTS)
    np.testing.assert_array_equal(together, alone)
    assert set(fake.batch_sizes) == {1}
    # The same fake graph run in batches does mix rows: the test above can fail.
    batched = GraphEmbedder(spec, _PerTensorScale(), rows_per_run=4).embed(TEXTS)
    assert not np.allclose(batched, alone, atol=1e-6)


def test_runs_hold_at_most_rows_per_run_texts_and_rows_come_back_in_input_order() -> None:
    spec = _packaged_spec(2)
    seen: list[int] = []

    def first_id(inputs: dict[str, np.ndarray]) -> np.ndarray:
        # Row i's hidden state encodes its own second token id, so order mix-ups show.
        seen.append(inputs["input_ids"].shape[0])
        ids = inputs["input_ids"].astype(np.float32)
        return np.stack([ids[:, 1:2].repeat(ids.shape[1], 1), np.ones_like(ids)], axis=-1)

    texts = TEXTS * 2
    vectors = GraphEmbedder(spec, first_id, rows_per_run=3).embed(texts)
    assert max(seen) <= 3 and sum(seen) == len(texts)
    expected = np.vstack([GraphEmbedder(spec, first_id, 1).embed([t]) for t in texts])
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="rows_per_run"):
        GraphEmbedder(spec, first_id, rows_per_run=0)


def test_calibration_texts_span_headlines_to_passages_past_the_token_limit() -> None:
    texts = calibration_texts()
    assert texts == calibration_texts()  # the same model on every machine
    assert 200 <= len(texts) <= 1000
    words = sorted(len(t.split()) for t in texts)
    assert words[0] <= 3  # headline fragments
    assert words[-1] >= 256  # cut at the token limit, as articles are
    assert sum(1 for n in words if n >= 150) >= 20


def test_unknown_backend_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="embedding_backend"):
        load_settings(embedding_backend="tensorrt")
    unchecked = Settings.model_construct(embedding_backend="tensorrt")
    with pytest.raises(ConfigurationError, match="embedding_backend must be one of"):
        choose_backend(unchecked)


def test_auto_candidates_come_from_the_reference_record_of_its_model_only(
    tmp_path: Path,
) -> None:
    record = tmp_path / "choice.json"
    record.write_text(json.dumps({"model": PACKAGED_MODEL, "ranking": ["onnx-int8", "torch"]}))
    assert recorded_ranking(PACKAGED_MODEL, record) == ["onnx-int8", "torch"]
    assert recorded_ranking("/models/some-other-model", record) == []
    assert recorded_ranking(PACKAGED_MODEL, tmp_path / "missing.json") == []
    assert choose_backend(_settings(tmp_path, "torch")) == "torch"


def test_the_shipped_choice_only_names_backends_that_passed() -> None:
    from embedding.embedder import CHOICE_FILE

    record = json.loads(CHOICE_FILE.read_text())
    assert record["model"] == PACKAGED_MODEL
    assert record["default"] == record["ranking"][0]
    for name in record["ranking"]:
        if name != "torch":
            quality = record["backends"][name]["quality"]
            assert quality["passes"] is True
            assert quality["batch_min_cosine"] >= record["thresholds"]["min_batch_cosine"]


def _fake_embed(depends_on_batch: bool) -> Callable[[Sequence[str]], np.ndarray]:
    """Vectors from a text's letters; optionally rounded on a grid set by the longest text."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        rows = np.array([[t.count(c) + 1.0 for c in "aeiost "] for t in texts])
        if depends_on_batch:
            step = max(len(t) for t in texts) / 40.0
            rows = np.round(rows / step) * step + step
        normalised: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return normalised

    return embed


def test_the_quality_check_measures_and_requires_batch_independence() -> None:
    texts = [f"Oil {'prices rise as traders see a tight market ' * n}" for n in range(40)]
    assert batch_min_cosine(_fake_embed(depends_on_batch=False), texts) > 0.99999
    assert batch_min_cosine(_fake_embed(depends_on_batch=True), texts) < MIN_BATCH_COSINE
    good = QualityResult("onnx-int8", 0.995, 0.98, 0.94, 0.94, 1.0, batch_min_cosine=0.9999)
    assert good.passes
    assert not replace(good, batch_min_cosine=0.98).passes
    assert good.as_dict()["batch_min_cosine"] == 0.9999


def test_the_embedding_package_imports_only_core_and_core_never_imports_it() -> None:
    """The embedder sits below every service: it may use core (settings, errors), nothing else
    of ours; core stays the bottom layer, so it never reaches up into embedding."""
    ours = {"producers", "consumers", "dedup", "search_api", "trends", "newsstream", "store"}
    reaching_up = packages_imported_by("embedding", ours)
    assert not reaching_up, f"embedding imports more than core: {reaching_up}"
    into_embedding = list(packages_imported_by("core", {"embedding"}))
    assert not into_embedding, f"core imports embedding: {into_embedding}"
