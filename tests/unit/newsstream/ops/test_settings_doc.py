"""The README's settings table is the one the code renders, and settings fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings
from newsstream.ops.settings_doc import BEGIN, END, render_table

README = Path(__file__).resolve().parents[4] / "README.md"


def test_readme_holds_the_rendered_settings_table() -> None:
    text = README.read_text()
    table = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert table == render_table(), "run `python -m newsstream.ops.settings_doc` and paste it"


def test_every_setting_is_documented() -> None:
    assert all(field.description for field in Settings.model_fields.values())


def test_settings_come_from_the_environment_with_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEWSSTREAM_KAFKA_PARTITIONS", "12")
    monkeypatch.setenv("NEWSSTREAM_FETCH_ALLOW_NETWORKS", '["127.0.0.1/32"]')
    settings = Settings()
    assert settings.kafka_partitions == 12
    assert settings.fetch_allow_networks == ["127.0.0.1/32"]
    with pytest.raises(ValidationError):
        settings.kafka_partitions = 3  # type: ignore[misc]  # frozen


def test_invalid_values_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSSTREAM_KAFKA_PARTITIONS", "zero")
    with pytest.raises(ValidationError, match="kafka_partitions"):
        Settings()


def test_a_redis_url_without_the_redis_backend_refuses_to_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEWSSTREAM_DEDUP_REDIS_URL", "redis://redis:6379/0")
    with pytest.raises(ValidationError, match="NEWSSTREAM_DEDUP_BACKEND=redis"):
        Settings()
    monkeypatch.setenv("NEWSSTREAM_DEDUP_BACKEND", "redis")
    assert Settings().dedup_backend == "redis"


def test_exported_models_live_in_the_data_dir_unless_a_cache_dir_is_set(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).model_cache_dir == tmp_path / "models"
    shared = tmp_path / "shared-models"
    assert Settings(data_dir=tmp_path, embedding_cache_dir=shared).model_cache_dir == shared
