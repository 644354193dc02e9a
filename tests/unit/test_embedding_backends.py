"""Embedding backends: the ONNX int8 export, its cache, the backend choice.

One real export per session (``onnx_data_dir``, ~20-40 s on 2 cores); the cache tests work on
copies of it so that they never re-export the fp32 graph.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import core.onnx_export as onnx_export
from core.embedding import Embedder, choose_backend
from core.errors import ConfigurationError
from core.settings import PACKAGED_MODEL, Settings, load_settings

NEWS_TEXTS = [
    "Prime minister survives no-confidence vote by a margin of 12 votes",
    "Heavy snow closes airports across northern Europe for a second day",
    "Shares in the retailer slumped after it cut its profit forecast for the year.",
    "The central bank raised its benchmark rate by a quarter point to 4.5%.",
    "Rescue teams search for survivors after a landslide buried a mountain village.",
    "Champions League: late penalty sends holders through to the quarter-finals",
    "New vaccine shows 90% efficacy against malaria in a trial of 4,800 children.",
    "Regulators fine social network over children's data; the company will appeal.",
    "Electric car sales overtook diesel for the first time last month, data show.",
    "Protesters gathered outside parliament to oppose the pension reform.",
    "NASA delays the moon mission launch after a fuel leak was found on the pad.",
    "The novelist won the prize for a book about three generations of a fishing family.",
    "Ceasefire talks stall as both sides accuse each other of violations.",
    "Heatwave pushes temperatures above 45C in parts of the country; schools close early.",
    "Chip shortage forces carmakers to idle plants in Mexico and the United States.",
    "The festival cancelled its final night because of storm warnings.",
    "Supreme Court to hear the case on voting districts next term.",
    "Startup unveils a robot that sorts recycling twice as fast as human workers.",
    "Inflation eased to 3.1% in March, the lowest in two years, statistics office says.",
    "Two journalists released after 400 days in detention return home.",
    "Olympic sprinter banned for four years after failing a doping test.",
    "Coastal towns brace for the strongest typhoon in a decade.",
    "Government unveils a plan to plant one billion trees by 2030.",
    "Bank merger creates the region's largest lender with assets of $600bn.",
    "Scientists map the brain of a fruit fly neuron by neuron.",
    "Teachers' union votes to strike over pay and class sizes.",
    "Police say the fire at the warehouse was started deliberately.",
    "Farmers block motorways with tractors to protest against fuel taxes.",
    "Streaming service loses subscribers for the first time in its history.",
    "Rebels seize the airport of the eastern city, residents say; the army denies it. "
    "Fighting has displaced tens of thousands of people since the start of the month, and aid "
    "agencies warn of shortages of food, water and medicine in the camps near the border.",
    "Ancient shipwreck found off the coast holds amphorae of wine and olive oil.",
    "Housing market cools as mortgage approvals fall for a sixth straight month.",
    "The minister resigned after leaked messages showed he lobbied for a donor's firm.",
    "A new species of frog has been discovered in the cloud forests of Ecuador.",
    "World leaders gather for the climate summit amid disputes over funding.",
    "Factory explosion kills nine and injures dozens in the industrial zone.",
]


def _settings(data_dir: Path, backend: str) -> Settings:
    return load_settings(
        data_dir=data_dir,
        embedding_backend=backend,
        embedding_model=PACKAGED_MODEL,
        embedding_threads=0,
        embedding_batch_size=16,
        embedding_max_tokens=None,
    )


@pytest.fixture(scope="session")
def onnx_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embed-data")


@pytest.fixture(scope="session")
def onnx_embedder(onnx_data_dir: Path) -> Embedder:
    return Embedder(_settings(onnx_data_dir, "onnx-int8"))


@pytest.fixture(scope="session")
def fp32_vectors(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    torch_embedder = Embedder(_settings(tmp_path_factory.mktemp("torch"), "torch"))
    assert torch_embedder.backend == "torch"
    return torch_embedder.embed(NEWS_TEXTS)


def _cache_root(data_dir: Path) -> Path:
    roots = list((data_dir / "models").iterdir())
    assert len(roots) == 1, roots
    return roots[0]


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_onnx_backend_returns_normalised_rows_of_the_model_dimension(
    onnx_embedder: Embedder,
) -> None:
    vectors = onnx_embedder.embed(NEWS_TEXTS)
    assert onnx_embedder.backend == "onnx-int8"
    assert (onnx_embedder.dimension, onnx_embedder.max_seq_length) == (384, 256)
    assert vectors.shape == (len(NEWS_TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert onnx_embedder.embed([]).shape == (0, 384)


def test_onnx_rows_come_back_in_input_order(onnx_embedder: Embedder) -> None:
    # Mixed lengths, so that the length sort inside embed really reorders them.
    texts = [NEWS_TEXTS[29], NEWS_TEXTS[0], "Flood", NEWS_TEXTS[7], NEWS_TEXTS[13], "Oil"]
    batch = onnx_embedder.embed(texts)
    singles = np.vstack([onnx_embedder.embed([t]) for t in texts])
    similarity = batch @ singles.T
    assert list(np.argmax(similarity, axis=1)) == list(range(len(texts)))
    # Not identical: dynamic int8 quantizes activations with one scale per batch, so a text's
    # vector depends slightly on its batch-mates (measured here: cosine >= 0.988 alone vs batched).
    assert np.min(np.diag(similarity)) > 0.98


def test_onnx_int8_agrees_with_fp32(onnx_embedder: Embedder, fp32_vectors: np.ndarray) -> None:
    cos = np.sum(onnx_embedder.embed(NEWS_TEXTS) * fp32_vectors, axis=1)
    assert float(np.mean(cos)) >= 0.99, cos
    assert float(np.min(cos)) >= 0.97, cos


def test_long_texts_are_truncated_not_rejected(onnx_embedder: Embedder) -> None:
    long_text = " ".join(NEWS_TEXTS * 10)  # far beyond 256 tokens
    vectors = onnx_embedder.embed([long_text, long_text + " and more words at the end"])
    # Everything past the limit is cut, so the tail cannot change the vector.
    assert float(vectors[0] @ vectors[1]) > 0.9999


def test_max_tokens_cuts_texts_shorter_with_the_same_exported_model(onnx_data_dir: Path) -> None:
    short = Embedder(
        _settings(onnx_data_dir, "onnx-int8").model_copy(update={"embedding_max_tokens": 16})
    )
    assert short.max_seq_length == 16
    head = NEWS_TEXTS[0] + " " + NEWS_TEXTS[1]  # past 16 tokens
    vectors = short.embed([head, head + " " + NEWS_TEXTS[2]])
    assert float(vectors[0] @ vectors[1]) > 0.9999  # words past token 16 are not read
    assert len(list((onnx_data_dir / "models").iterdir())) == 1  # no second export


def test_second_embedder_reuses_the_cache_without_exporting(
    onnx_embedder: Embedder, onnx_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _cache_root(onnx_data_dir)
    before = _mtimes(root)
    assert {"onnx-fp32/model.onnx", "onnx-int8/model.onnx", "onnx-int8/manifest.json"} <= set(
        before
    )

    def no_export(*_args: object) -> None:
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(onnx_export, "export_fp32", no_export)
    monkeypatch.setattr(onnx_export, "quantize_int8", no_export)
    second = Embedder(_settings(onnx_data_dir, "onnx-int8"))
    assert _mtimes(root) == before
    np.testing.assert_allclose(
        second.embed(NEWS_TEXTS[:5]), onnx_embedder.embed(NEWS_TEXTS[:5]), atol=1e-6
    )


def _copy_data_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "models", dst / "models")
    return _cache_root(dst)


def test_corrupted_int8_model_is_detected_and_rebuilt(
    onnx_embedder: Embedder,
    onnx_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _copy_data_dir(onnx_data_dir, tmp_path)
    model = root / "onnx-int8" / "model.onnx"
    size = model.stat().st_size
    with model.open("r+b") as handle:  # a torn write: same name, half the bytes
        handle.truncate(size // 2)
    assert not onnx_export.is_complete(root / "onnx-int8")

    def no_export(*_args: object) -> None:
        raise AssertionError("the intact fp32 export should have been reused")

    monkeypatch.setattr(onnx_export, "export_fp32", no_export)
    rebuilt = Embedder(_settings(tmp_path, "onnx-int8"))
    assert onnx_export.is_complete(root / "onnx-int8")
    assert model.stat().st_size == size
    np.testing.assert_allclose(
        rebuilt.embed(NEWS_TEXTS[:5]), onnx_embedder.embed(NEWS_TEXTS[:5]), atol=1e-5
    )


def test_partial_cache_dir_and_leftover_temp_dir_are_replaced(
    onnx_data_dir: Path, tmp_path: Path
) -> None:
    root = _copy_data_dir(onnx_data_dir, tmp_path)
    (root / "onnx-int8" / "manifest.json").unlink()  # a build that died before sealing
    leftover = root / ".onnx-int8.tmp-deadbeef"
    leftover.mkdir()
    (leftover / "model.onnx").write_bytes(b"half")
    embedder = Embedder(_settings(tmp_path, "onnx-int8"))
    assert onnx_export.is_complete(root / "onnx-int8")
    assert not leftover.exists()
    assert not list(root.glob(".onnx-int8.broken-*"))
    assert embedder.embed(NEWS_TEXTS[:2]).shape == (2, 384)


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


def test_unknown_backend_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="embedding_backend"):
        load_settings(embedding_backend="tensorrt")
    unchecked = Settings.model_construct(embedding_backend="tensorrt")
    with pytest.raises(ConfigurationError, match="embedding_backend must be one of"):
        Embedder(unchecked)


def test_auto_follows_the_recorded_ranking_for_its_model_only(tmp_path: Path) -> None:
    record = tmp_path / "choice.json"
    record.write_text(json.dumps({"model": PACKAGED_MODEL, "ranking": ["onnx-int8", "torch"]}))
    auto = _settings(tmp_path, "auto")
    assert choose_backend(auto, record) == "onnx-int8"
    other_model = auto.model_copy(update={"embedding_model": "/models/some-other-model"})
    assert choose_backend(other_model, record) == "torch"
    assert choose_backend(auto, tmp_path / "missing.json") == "torch"
    assert choose_backend(_settings(tmp_path, "torch"), record) == "torch"


def test_the_shipped_choice_only_names_backends_that_passed() -> None:
    from core.embedding import CHOICE_FILE

    record = json.loads(CHOICE_FILE.read_text())
    assert record["model"] == PACKAGED_MODEL
    assert record["default"] == record["ranking"][0]
    for name in record["ranking"]:
        if name != "torch":
            assert record["backends"][name]["quality"]["passes"] is True
