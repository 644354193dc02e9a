"""``embedding_backend=auto`` with the real model: measured at a first start, cached with the
CPU's identity, measured again on another CPU, never a backend under the quality bar.

The exports come from the session's shared model cache; the records go to a tmp dir and the
CPU identity is injected (a fake Xeon with VNNI), so nothing here depends on what other tests
cached. Loaded embedders are reused across measurements to keep the test short.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from core.settings import PACKAGED_MODEL, Settings
from embedding.backend_choice import MIN_MEAN_COSINE, Measurement, resolve_auto
from embedding.cpu import CpuIdentity, library_versions
from embedding.embedder import BACKENDS, Embedder
from embedding.probe_texts import probe_texts

#: The first test exports the int8 models when the run's shared cache has none yet (minutes on
#: a busy 2-core machine).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

XEON = CpuIdentity("Test Xeon with VNNI", ("avx2", "avx512f", "avx512_vnni"))


#: A quarter of the probe texts, headlines to articles: the same measurement, shorter.
TEXTS = probe_texts()[::4]


def quiet() -> float:
    """A load average of an idle machine (this one is shared: its own would vary)."""
    return 0.0


def _settings(model_cache_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        embedding_cache_dir=model_cache_dir,
        embedding_model=PACKAGED_MODEL,
        embedding_backend="auto",
    )


@pytest.fixture(scope="module")
def loads() -> dict[str, int]:
    return {}


@pytest.fixture(scope="module")
def loader(loads: dict[str, int]) -> Callable[[Settings], Embedder]:
    """Builds each backend's real embedder once for the module, counting the requests."""
    loaded: dict[str, Embedder] = {}

    def load(settings: Settings) -> Embedder:
        backend = settings.embedding_backend
        loads[backend] = loads.get(backend, 0) + 1
        if backend not in loaded:
            loaded[backend] = Embedder(settings)
        return loaded[backend]

    return load


def test_first_start_measures_and_caches_a_second_reads_a_new_cpu_measures_again(
    model_cache_dir: Path,
    tmp_path: Path,
    loader: Callable[[Settings], Embedder],
    loads: dict[str, int],
) -> None:
    settings = _settings(model_cache_dir, tmp_path)
    records = tmp_path / "choices"
    before = {name: loads.get(name, 0) for name in BACKENDS}

    def measured_times() -> dict[str, int]:
        return {name: loads.get(name, 0) - before[name] for name in BACKENDS}

    first = resolve_auto(
        settings, cpu=XEON, load=loader, cache_dir=records, loadavg=quiet, texts=TEXTS
    )
    assert first.source == "measured", first.line()
    assert first.backend in BACKENDS
    assert measured_times() == dict.fromkeys(BACKENDS, 1)
    (path,) = records.glob("*.json")
    record = json.loads(path.read_text())
    assert record["cpu"] == {"model": XEON.model, "flags": list(XEON.flags)}
    assert record["versions"] == library_versions()
    assert record["choice"] == first.backend
    for name in BACKENDS:
        figures = record["backends"][name]
        assert figures["error"] is None and figures["texts_per_s"] > 0
        assert 0.9 < figures["mean_cosine"] <= 1.0001

    def no_loading(_settings: Settings) -> Embedder:
        raise AssertionError("a cached choice must not measure again")

    second = resolve_auto(
        settings, cpu=XEON, load=no_loading, cache_dir=records, loadavg=quiet, texts=TEXTS
    )
    assert (second.backend, second.source) == (first.backend, "cached")
    assert record["measured_at"] in second.reason

    other_cpu = replace(XEON, model="Another Xeon with VNNI")
    third = resolve_auto(
        settings, cpu=other_cpu, load=loader, cache_dir=records, loadavg=quiet, texts=TEXTS
    )
    assert third.source == "measured"
    assert len(list(records.glob("*.json"))) == 2
    assert measured_times() == dict.fromkeys(BACKENDS, 2)


def test_a_backend_under_the_bar_here_is_never_picked(
    model_cache_dir: Path, tmp_path: Path, loader: Callable[[Settings], Embedder]
) -> None:
    settings = _settings(model_cache_dir, tmp_path)

    def as_on_an_avx2_epyc(m: Measurement) -> Measurement:
        # The figure OpenVINO int8 reached on a CPU without VNNI; the speed is left as measured.
        return m if m.backend == "torch" else replace(m, mean_cosine=0.9897)

    decision = resolve_auto(
        settings,
        cpu=replace(XEON, model="Xeon whose int8 is imprecise"),
        load=loader,
        adjust=as_on_an_avx2_epyc,
        cache_dir=tmp_path,
        loadavg=quiet,
        texts=TEXTS,
    )
    assert (decision.backend, decision.source) == ("torch", "measured")
    assert decision.reason.count(f"cosine 0.9897 (under the {MIN_MEAN_COSINE} bar)") == 2
    again = resolve_auto(
        settings,
        cpu=replace(XEON, model="Xeon whose int8 is imprecise"),
        cache_dir=tmp_path,
        loadavg=quiet,
        texts=TEXTS,
    )
    assert (again.backend, again.source) == ("torch", "cached")


def test_a_backend_that_fails_to_load_is_named_and_left_out(
    model_cache_dir: Path, tmp_path: Path, loader: Callable[[Settings], Embedder]
) -> None:
    def openvino_fails(settings: Settings) -> Embedder:
        if settings.embedding_backend == "openvino-int8":
            raise RuntimeError("export failed: no space left on device")
        return loader(settings)

    decision = resolve_auto(
        _settings(model_cache_dir, tmp_path),
        cpu=replace(XEON, model="Xeon without room for exports"),
        load=openvino_fails,
        cache_dir=tmp_path,
        loadavg=quiet,
        texts=TEXTS,
    )
    assert decision.backend in {"torch", "onnx-int8"}
    assert "openvino-int8 failed (RuntimeError: export failed" in decision.reason


def test_a_choice_measured_on_a_busy_machine_is_measured_again_once_it_is_quiet(
    model_cache_dir: Path,
    tmp_path: Path,
    loader: Callable[[Settings], Embedder],
    loads: dict[str, int],
) -> None:
    settings = _settings(model_cache_dir, tmp_path)
    cpu = replace(XEON, model="Xeon shared with other work")

    load = 3.0 * (os.cpu_count() or 1)  # three runnable tasks per core

    def busy() -> float:
        return load

    first = resolve_auto(
        settings, cpu=cpu, load=loader, cache_dir=tmp_path, loadavg=busy, texts=TEXTS
    )
    assert first.source == "measured" and f"load average {load}" in first.reason
    (path,) = tmp_path.glob("*.json")
    assert json.loads(path.read_text())["busy"] is True
    still_busy = resolve_auto(
        settings, cpu=cpu, load=loader, cache_dir=tmp_path, loadavg=busy, texts=TEXTS
    )
    assert still_busy.source == "cached"
    torch_loads = loads["torch"]
    quieter = resolve_auto(
        settings, cpu=cpu, load=loader, cache_dir=tmp_path, loadavg=quiet, texts=TEXTS
    )
    assert quieter.source == "measured" and loads["torch"] == torch_loads + 1
    assert json.loads(path.read_text())["busy"] is False
