"""The model fingerprint beside a collection, on Milvus Lite and on the PyPI 2.3.5 server.

A new collection records the fingerprint of the model that opened it; the same model reopens it;
a different one is refused by the writer, by the API's backend and by a worker process (exit
code 2, the message naming both fingerprints and the fix); a collection made before
fingerprints adopts the model its rows name and refuses any other.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from core.errors import ConfigurationError
from embedding.fingerprint import ModelFingerprint
from newsstream.cli.app import app
from search_api.backend import Backend
from store.client import connect
from store.fingerprint import PROPERTY, recorded_fingerprint
from store.schema import ensure_collection
from store.writer import ArticleWriter

from worker_procs import settings_env, start_worker, stored_row

pytestmark = pytest.mark.integration

DIM = 8
SMALL = ModelFingerprint(
    model="tiny-model", weights_sha256="ab" * 32, backend="torch", max_tokens=128, dimension=DIM
)


@pytest.fixture(params=["lite", "server"])
def any_milvus(request: pytest.FixtureRequest) -> str:
    """The URI of Milvus Lite (the layer's session store) or of a 2.3.5 server."""
    if request.param == "lite":
        return str(request.getfixturevalue("milvus_uri"))
    return str(request.getfixturevalue("milvus_server_uri"))


def _rows(model: str, count: int = 3) -> list[dict[str, Any]]:
    vectors = np.eye(DIM, dtype=np.float32)[:count]
    return [
        stored_row(f"https://old.example/{n}", f"Old {n}", f"Old article {n}.", vectors[n], model)
        for n in range(count)
    ]


def test_a_new_collection_records_the_fingerprint_and_the_same_model_reopens_it(
    make_settings: Any, any_milvus: str
) -> None:
    settings = make_settings(milvus_uri=any_milvus)
    client = connect(any_milvus)
    ArticleWriter.open(client, settings, DIM, SMALL)
    assert recorded_fingerprint(client, settings.milvus_collection) == SMALL.to_json()
    # A second client (another process) sees it, and the same model opens the collection.
    other = connect(any_milvus)
    assert recorded_fingerprint(other, settings.milvus_collection) == SMALL.to_json()
    writer = ArticleWriter.open(other, settings, DIM, replace(SMALL))
    assert writer.upsert(_rows(SMALL.model)) == 3


@pytest.mark.parametrize(
    "change",
    [{"weights_sha256": "cd" * 32}, {"max_tokens": 256}, {"model": "another-model"}],
)
def test_a_different_fingerprint_is_refused_by_the_writer(
    make_settings: Any, any_milvus: str, change: dict[str, Any]
) -> None:
    settings = make_settings(milvus_uri=any_milvus)
    client = connect(any_milvus)
    ArticleWriter.open(client, settings, DIM, SMALL)
    different = replace(SMALL, **change)
    with pytest.raises(ConfigurationError) as refused:
        ArticleWriter.open(client, settings, DIM, different)
    message = str(refused.value)
    assert SMALL.short() in message and different.short() in message
    assert next(iter(change)) in message
    assert "NEWSSTREAM_MILVUS_COLLECTION" in message
    # The refusal changed nothing: the collection still names the model that built it.
    assert recorded_fingerprint(client, settings.milvus_collection) == SMALL.to_json()


def test_a_collection_from_before_fingerprints_adopts_the_model_its_rows_name(
    make_settings: Any, any_milvus: str
) -> None:
    settings = make_settings(milvus_uri=any_milvus)
    client = connect(any_milvus)
    old = ArticleWriter.open(client, settings, DIM)  # what an older version did: no fingerprint
    assert old.upsert(_rows(SMALL.model)) == 3
    assert recorded_fingerprint(client, settings.milvus_collection) is None
    ArticleWriter.open(client, settings, DIM, SMALL)
    assert recorded_fingerprint(client, settings.milvus_collection) == SMALL.to_json()


def test_a_collection_from_before_fingerprints_refuses_a_model_its_rows_do_not_name(
    make_settings: Any, any_milvus: str
) -> None:
    settings = make_settings(milvus_uri=any_milvus)
    client = connect(any_milvus)
    assert ArticleWriter.open(client, settings, DIM).upsert(_rows("older-model")) == 3
    with pytest.raises(ConfigurationError, match="older-model") as refused:
        ensure_collection(client, settings, DIM, SMALL)
    assert SMALL.short() in str(refused.value)
    assert recorded_fingerprint(client, settings.milvus_collection) is None


def test_the_api_backend_refuses_a_collection_of_another_model(
    make_settings: Any, any_milvus: str, embedder: Any
) -> None:
    settings = make_settings(milvus_uri=any_milvus)
    client = connect(any_milvus)
    mine: ModelFingerprint = embedder.fingerprint
    built_by = replace(mine, weights_sha256="0" * 64)
    ArticleWriter.open(client, settings, embedder.dimension, built_by)
    with pytest.raises(ConfigurationError) as refused:
        Backend(settings, embedder).searcher()
    assert built_by.short() in str(refused.value) and mine.short() in str(refused.value)
    # The same API on a collection of its own model reads.
    own = make_settings(milvus_uri=any_milvus, milvus_collection=settings.milvus_collection + "b")
    assert Backend(own, embedder).searcher() is not None
    assert recorded_fingerprint(client, own.milvus_collection) == mine.to_json()


def test_a_worker_process_refuses_to_start_with_exit_code_2(
    make_settings: Any, any_milvus: str, embedder: Any, tmp_path: Path
) -> None:
    settings = make_settings(milvus_uri=any_milvus)
    client = connect(any_milvus)
    mine: ModelFingerprint = embedder.fingerprint
    built_by = replace(mine, max_tokens=mine.max_tokens + 64)
    ArticleWriter.open(client, settings, embedder.dimension, built_by)
    log = tmp_path / "worker.log"
    process = start_worker(settings, log)
    try:
        code = process.wait(180)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        pytest.fail(f"the worker did not refuse within 180 s:\n{log.read_text()}")
    output = " ".join(log.read_text().split())  # the console may wrap the one error line
    assert code == 2, output
    assert "refuses this embedding model" in output
    assert built_by.short() in output and mine.short() in output
    assert "NEWSSTREAM_MILVUS_COLLECTION" in output
    described = client.describe_collection(settings.milvus_collection)["properties"]
    assert PROPERTY in described  # still the fingerprint it was built with
    assert recorded_fingerprint(client, settings.milvus_collection) == built_by.to_json()


def test_the_model_command_shows_the_recorded_fingerprint(make_settings: Any) -> None:
    settings = make_settings()
    runner = CliRunner()
    before = runner.invoke(app, ["model"], env=settings_env(settings))
    assert before.exit_code == 0, before.output
    assert "does not exist yet" in before.output
    ArticleWriter.open(connect(settings.milvus_uri), settings, DIM, SMALL)
    shown = runner.invoke(app, ["model", "--json"], env=settings_env(settings))
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["recorded"] == SMALL.to_json()
    table = runner.invoke(app, ["model"], env=settings_env(settings))
    assert SMALL.weights_sha256 in table.output and "tiny-model" in table.output


def test_the_model_check_refuses_the_configured_model_of_another_collection(
    make_settings: Any, embedder: Any
) -> None:
    settings = make_settings()
    mine: ModelFingerprint = embedder.fingerprint
    ArticleWriter.open(connect(settings.milvus_uri), settings, DIM, SMALL)
    refused = CliRunner().invoke(app, ["model", "--check"], env=settings_env(settings))
    assert refused.exit_code == 2, refused.output
    assert "refused" in refused.output and mine.weights_sha256[:12] in refused.output
    own = make_settings(milvus_collection=settings.milvus_collection + "b")
    ArticleWriter.open(connect(own.milvus_uri), own, mine.dimension, mine)
    accepted = CliRunner().invoke(app, ["model", "--check", "--json"], env=settings_env(own))
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(accepted.output)["accepted"] is True
