"""A worker's memory stays flat with the OpenVINO int8 backend, whatever the texts' lengths.

The CPU plugin keeps compiled kernels per input shape (several MB each for this model): a
backend that hands it every (rows, tokens) shape it meets grows with each new one, for weeks.
The packaged model's export is the session's (``model_cache_dir``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from core.settings import PACKAGED_MODEL, Settings, load_settings
from embedding.embedder import Embedder, resolve_model_path
from embedding.onnx_backend import mean_pool_normalise
from newsstream.bench.embed_memory import rss_mb

pytestmark = pytest.mark.integration

ROWS = 7
#: RSS a process may gain over 60 calls of shapes it has not run before (unbounded, it gained
#: about 4 MB per new shape: over 200 MB here).
MAX_GROWTH_MB = 48.0


def _text(tokens: int) -> str:
    """A text of exactly ``tokens`` tokens with [CLS] and [SEP] ("news" is one token)."""
    return " ".join(["news"] * (tokens - 2))


@pytest.fixture(scope="module")
def ov_settings(model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The session's cache of exported models: the export (a minute or more on 2 busy cores) is
    # shared with every other test that embeds with the int8 backends.
    return load_settings(
        data_dir=tmp_path_factory.mktemp("ov-memory"),
        embedding_cache_dir=model_cache_dir,
        embedding_backend="openvino-int8",
        embedding_model=PACKAGED_MODEL,
        embedding_threads=0,
        embedding_batch_size=ROWS,
        embedding_max_tokens=None,
    )


@pytest.fixture(scope="module")
def ov_embedder(ov_settings: Settings) -> Embedder:
    return Embedder(ov_settings)


def test_memory_stays_flat_over_new_lengths_and_batch_sizes(ov_embedder: Embedder) -> None:
    # Warm-up: every even length from 8 to 128 tokens, in runs of 7 rows.
    for tokens in range(8, 129, 2):
        ov_embedder.embed([_text(tokens)] * ROWS)
    warm = rss_mb()
    # Then shapes never run before: every odd length, in runs of 1 to 7 rows.
    for tokens in range(9, 128, 2):
        ov_embedder.embed([_text(tokens)] * (1 + tokens % ROWS))
    growth = rss_mb() - warm
    assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.0f} MB over 60 calls after a warm-up"


def test_padding_runs_to_length_buckets_changes_no_vector(
    ov_embedder: Embedder, ov_settings: Settings
) -> None:
    import openvino as ov

    # The reference: the compiled model run on each text alone and unpadded, mean-pooled.
    artifact = next(ov_settings.model_cache_dir.glob("*/openvino-int8"))
    core = ov.Core()
    request = core.compile_model(
        core.read_model(str(artifact / "model.xml")), "CPU"
    ).create_infer_request()
    tokenizer = Tokenizer.from_file(
        str(Path(resolve_model_path(PACKAGED_MODEL)) / "tokenizer.json")
    )
    tokenizer.no_padding()
    tokenizer.no_truncation()
    texts = [_text(n) + " flood" for n in (3, 17, 33, 50, 65, 100, 129, 161, 200)]
    vectors = ov_embedder.embed(texts)
    for text, vector in zip(texts, vectors, strict=True):
        ids = np.asarray([tokenizer.encode(text).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        hidden = request.infer(
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        reference = mean_pool_normalise(np.asarray(hidden), mask)[0]
        assert float(vector @ reference) >= 0.9999, f"{ids.shape[1]} tokens"
