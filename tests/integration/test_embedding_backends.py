"""Embedding backends with the real model: exports, their cache, batch independence, quality.

The packaged model is exported once per test session into a pytest tmp dir (ONNX fp32, ONNX
int8 and OpenVINO int8: about 1-2 minutes on 2 cores, all fixtures share it); the cache tests
work on copies so that they never re-export the fp32 graph.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

import embedding.onnx_export as onnx_export
from core.errors import ConfigurationError
from core.settings import PACKAGED_MODEL, Settings, load_settings
from embedding.embedder import BACKENDS, Embedder, resolve_model_path

pytestmark = pytest.mark.integration

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
#: An article of about 200 tokens (checked in the test), far longer than its batch-mates.
ARTICLE = " ".join(NEWS_TEXTS[10:24])
OTHER_ARTICLE = " ".join(NEWS_TEXTS[22:36])
#: The texts whose vectors must not move: a one-word headline, a headline, a paragraph, and
#: the long article.
SUBJECTS = ["Oil", NEWS_TEXTS[0], NEWS_TEXTS[29], ARTICLE]
BATCH_SIZE = 16
#: Cosine a text's vector keeps between embedded alone and embedded in any batch.
MIN_BATCH_COSINE = 0.999


def _compositions(text: str) -> dict[str, list[str]]:
    """Batches that hold ``text``: short and long mates, several runs, repeats, positions."""
    return {
        "beside a long article": [text, OTHER_ARTICLE],
        "between headlines": ["Flood", text, NEWS_TEXTS[1], "Oil prices"],
        "among long articles": [OTHER_ARTICLE, ARTICLE + " Updated.", text, OTHER_ARTICLE[:400]],
        "in a call of several runs": [*NEWS_TEXTS, OTHER_ARTICLE, text, ARTICLE[::-1]],
        "twice": [text, text],
    }


def _settings(data_dir: Path, backend: str) -> Settings:
    return load_settings(
        data_dir=data_dir,
        embedding_backend=backend,
        embedding_model=PACKAGED_MODEL,
        embedding_threads=0,
        embedding_batch_size=BATCH_SIZE,
        embedding_max_tokens=None,
    )


@pytest.fixture(scope="session")
def embed_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data dir of the session's exports (a fresh cache: nothing from an earlier run)."""
    return tmp_path_factory.mktemp("embed-data")


@pytest.fixture(scope="session")
def embedder_for(embed_data_dir: Path) -> Callable[[str], Embedder]:
    """One loaded :class:`Embedder` per configured backend name, shared by the session."""
    loaded: dict[str, Embedder] = {}

    def get(backend: str) -> Embedder:
        if backend not in loaded:
            loaded[backend] = Embedder(_settings(embed_data_dir, backend))
        return loaded[backend]

    return get


@pytest.fixture(scope="session")
def onnx_embedder(embedder_for: Callable[[str], Embedder]) -> Embedder:
    return embedder_for("onnx-int8")


@pytest.fixture(scope="session")
def fp32_vectors(embedder_for: Callable[[str], Embedder]) -> np.ndarray:
    return embedder_for("torch").embed(NEWS_TEXTS)


def _cache_root(data_dir: Path) -> Path:
    roots = list((data_dir / "models").iterdir())
    assert len(roots) == 1, roots
    return roots[0]


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_the_long_subject_is_an_article_of_about_200_tokens() -> None:
    tokenizer = Tokenizer.from_file(
        str(Path(resolve_model_path(PACKAGED_MODEL)) / "tokenizer.json")
    )
    tokenizer.no_truncation()  # the model's tokenizer.json pads and cuts at 128 by itself
    tokenizer.no_padding()
    assert 180 <= len(tokenizer.encode(ARTICLE).ids) <= 240
    assert len(tokenizer.encode("Oil").ids) <= 4


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
def test_a_texts_vector_does_not_depend_on_its_batch_mates(
    backend: str, embedder_for: Callable[[str], Embedder]
) -> None:
    embedder = embedder_for(backend)
    assert embedder.backend in BACKENDS  # auto resolved to a concrete backend
    worst: list[tuple[float, str, str]] = []
    for text in SUBJECTS:
        alone = embedder.embed([text])[0]
        for name, batch in _compositions(text).items():
            vectors = embedder.embed(batch)
            for row in (i for i, t in enumerate(batch) if t == text):
                worst.append((float(vectors[row] @ alone), name, text[:30]))
    assert min(worst)[0] >= MIN_BATCH_COSINE, sorted(worst)[:3]


@pytest.mark.parametrize("backend", ["onnx-int8", "openvino-int8"])
def test_int8_backends_agree_with_fp32(
    backend: str, embedder_for: Callable[[str], Embedder], fp32_vectors: np.ndarray
) -> None:
    cos = np.sum(embedder_for(backend).embed(NEWS_TEXTS) * fp32_vectors, axis=1)
    assert float(np.mean(cos)) >= 0.99, cos
    assert float(np.min(cos)) >= 0.97, cos


@pytest.mark.parametrize("backend", ["onnx-int8", "openvino-int8"])
def test_graph_backends_return_normalised_rows_of_the_model_dimension(
    backend: str, embedder_for: Callable[[str], Embedder]
) -> None:
    embedder = embedder_for(backend)
    vectors = embedder.embed(NEWS_TEXTS)
    assert embedder.backend == backend
    assert (embedder.dimension, embedder.max_seq_length) == (384, 256)
    assert vectors.shape == (len(NEWS_TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_onnx_rows_come_back_in_input_order(onnx_embedder: Embedder) -> None:
    # Mixed lengths, so that the length sort inside embed really reorders them.
    texts = [NEWS_TEXTS[29], NEWS_TEXTS[0], "Flood", NEWS_TEXTS[7], NEWS_TEXTS[13], "Oil"]
    similarity = onnx_embedder.embed(texts) @ np.vstack([onnx_embedder.embed([t]) for t in texts]).T
    assert list(np.argmax(similarity, axis=1)) == list(range(len(texts)))


def test_long_texts_are_truncated_not_rejected(onnx_embedder: Embedder) -> None:
    long_text = " ".join(NEWS_TEXTS * 10)  # far beyond 256 tokens
    vectors = onnx_embedder.embed([long_text, long_text + " and more words at the end"])
    # Everything past the limit is cut, so the tail cannot change the vector.
    assert float(vectors[0] @ vectors[1]) > 0.9999


def test_max_tokens_cuts_texts_shorter_with_the_same_exported_model(
    onnx_embedder: Embedder, embed_data_dir: Path
) -> None:
    short = Embedder(
        _settings(embed_data_dir, "onnx-int8").model_copy(update={"embedding_max_tokens": 16})
    )
    assert short.max_seq_length == 16
    head = NEWS_TEXTS[0] + " " + NEWS_TEXTS[1]  # past 16 tokens
    vectors = short.embed([head, head + " " + NEWS_TEXTS[2]])
    assert float(vectors[0] @ vectors[1]) > 0.9999  # words past token 16 are not read
    assert len(list((embed_data_dir / "models").iterdir())) == 1  # no second export


def test_second_embedder_reuses_the_cache_without_exporting(
    onnx_embedder: Embedder, embed_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _cache_root(embed_data_dir)
    before = _mtimes(root)
    assert {"onnx-fp32/model.onnx", "onnx-int8/model.onnx", "onnx-int8/manifest.json"} <= set(
        before
    )

    def no_export(*_args: object) -> None:
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(onnx_export, "export_fp32", no_export)
    monkeypatch.setattr(onnx_export, "quantize_int8", no_export)
    second = Embedder(_settings(embed_data_dir, "onnx-int8"))
    assert _mtimes(root) == before
    np.testing.assert_allclose(
        second.embed(NEWS_TEXTS[:5]), onnx_embedder.embed(NEWS_TEXTS[:5]), atol=1e-6
    )


def _copy_data_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "models", dst / "models")
    return _cache_root(dst)


def test_corrupted_int8_model_is_detected_and_rebuilt(
    onnx_embedder: Embedder,
    embed_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _copy_data_dir(embed_data_dir, tmp_path)
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
    onnx_embedder: Embedder, embed_data_dir: Path, tmp_path: Path
) -> None:
    root = _copy_data_dir(embed_data_dir, tmp_path)
    (root / "onnx-int8" / "manifest.json").unlink()  # a build that died before sealing
    leftover = root / ".onnx-int8.tmp-deadbeef"
    leftover.mkdir()
    (leftover / "model.onnx").write_bytes(b"half")
    embedder = Embedder(_settings(tmp_path, "onnx-int8"))
    assert onnx_export.is_complete(root / "onnx-int8")
    assert not leftover.exists()
    assert not list(root.glob(".onnx-int8.broken-*"))
    assert embedder.embed(NEWS_TEXTS[:2]).shape == (2, 384)


def test_embedder_refuses_an_unknown_backend_before_loading_anything() -> None:
    unchecked = Settings.model_construct(embedding_backend="tensorrt")
    with pytest.raises(ConfigurationError, match="embedding_backend must be one of"):
        Embedder(unchecked)
