"""The pure helpers of `newsstream bench stores` (the bench itself needs the side venvs)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from newsstream.bench.stores import (
    exact_top_k,
    latency_summary,
    percentile,
    projected_s,
    query_vectors,
    recall_at_k,
    stores_table,
)
from newsstream.stack.local_stores import STORES, parse_stores, store_command
from newsstream.stack.proctree import descendants, format_mib, memory, parse_proc_stat, tree_rss
from store.compaction import index_done, serving_segments


def test_parse_stores_keeps_order_drops_duplicates_and_names_unknown_keys() -> None:
    assert parse_stores("all") == list(STORES)
    assert parse_stores("") == list(STORES)
    assert parse_stores(" milvus-2.3, lite-3.2 ,milvus-2.3") == ["milvus-2.3", "lite-3.2"]
    with pytest.raises(ValueError, match="lite-9"):
        parse_stores("lite-3.2,lite-9")


def test_percentile_is_nearest_rank() -> None:
    ordered = [float(i) for i in range(1, 101)]
    assert percentile(ordered, 0.5) == 50.0
    assert percentile(ordered, 0.99) == 99.0
    assert percentile(ordered, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_latency_summary_in_ms_and_qps() -> None:
    summary = latency_summary([0.002, 0.001, 0.003, 0.004], wall_s=2.0, clients=4)
    assert summary["requests"] == 4
    assert summary["p50_ms"] == pytest.approx(2.0)
    assert summary["p99_ms"] == pytest.approx(4.0)
    assert summary["mean_ms"] == pytest.approx(2.5)
    assert summary["qps"] == pytest.approx(2.0)
    assert math.isnan(latency_summary([], 1.0, 1)["p50_ms"])


def test_exact_top_k_and_recall() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:40]  # more than one block of 16
    exact = exact_top_k(vectors, queries, k=10)
    assert len(exact) == 40
    for i, top in enumerate(exact):
        assert i in top and len(top) == 10
        brute = set(np.argsort(-(vectors @ queries[i]))[:10].tolist())
        assert top == brute
    assert recall_at_k(exact, exact) == 1.0
    half = [set(list(s)[:5]) | {10_000 + j for j in range(5)} for s in exact]
    assert recall_at_k(exact, half) == pytest.approx(0.5)
    assert math.isnan(recall_at_k([], []))


def test_query_vectors_are_unit_and_start_with_the_embedded_queries() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(50, 8)).astype(np.float32)
    embedded = np.eye(8, dtype=np.float32)[:3]
    queries = query_vectors(embedded, base, 10)
    assert queries.shape == (10, 8)
    assert np.allclose(queries[:3], embedded)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert query_vectors(embedded, base, 2).shape == (2, 8)


def test_projected_fill_time() -> None:
    assert projected_s(1_000, 10.0, 100_000) == pytest.approx(1_000.0)
    assert projected_s(0, 10.0, 100) == math.inf


def test_index_done_from_describe_index() -> None:
    assert index_done({}, 100)  # the server gives no progress figures
    assert not index_done({"total_rows": 100, "indexed_rows": 40, "pending_index_rows": 60}, 100)
    assert index_done({"total_rows": 100, "indexed_rows": 100, "pending_index_rows": 0}, 100)
    # FLAT in Milvus Lite 2.5 builds nothing and reports 0 of 0.
    assert index_done({"total_rows": 0, "indexed_rows": 0, "pending_index_rows": 0}, 100)
    # Milvus 2.3 right after flush: rows known, none indexed yet.
    assert not index_done({"total_rows": 100, "indexed_rows": 0, "pending_index_rows": 0}, 100)


def test_serving_segments_is_final_only_when_every_flushed_segment_is_loaded_with_its_index() -> (
    None
):
    assert serving_segments([(1, True), (2, True)], [2, 1]) == frozenset({1, 2})
    # A loaded segment without its index yet (searched by brute force).
    assert serving_segments([(1, True), (2, False)], [1, 2]) is None
    # The server merged 1 and 2 into 3 but still serves the old two.
    assert serving_segments([(1, True), (2, True)], [3]) is None
    # The merged segment is loaded beside an old one during the hand-off.
    assert serving_segments([(1, True), (3, True)], [3]) is None
    assert serving_segments([], []) == frozenset()


def test_parse_proc_stat_handles_spaces_and_parentheses_in_the_name() -> None:
    assert parse_proc_stat("42 (milvus) S 7 42 42 0") == (42, 7)
    assert parse_proc_stat("43 (a b) (c)) R 1 43 43 0") == (43, 1)


def test_descendants_walks_the_tree() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 30: 99}
    assert descendants(parents, 10) == {10, 11, 12, 13}
    assert descendants(parents, 30) == {30}


def test_tree_rss_of_this_process_is_positive() -> None:
    assert tree_rss(os.getpid()) > 0


def test_memory_of_this_process_splits_resident_bytes() -> None:
    figures = memory(os.getpid())
    assert 0 < figures["anon"] <= figures["rss"] and 0 < figures["pss"] <= figures["rss"]
    assert memory(2**22 + 1) == {}  # beyond the kernel's pid range: no such process


def test_format_mib() -> None:
    assert format_mib(None) == "-"
    assert format_mib(512 * 2**20) == "512 MiB"
    assert format_mib(12 * 2**30) == "12.0 GiB"


def test_store_commands_listen_on_loopback(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    binary = venv / "lib" / "python3.11" / "site-packages" / "milvus_lite" / "lib" / "milvus"
    binary.parent.mkdir(parents=True)
    binary.touch()
    argv, env = store_command(STORES["lite-2.5"], tmp_path, 1234, venv)
    assert argv == [str(binary), str(tmp_path / "lite.db"), "127.0.0.1:1234", "ERROR"]
    assert env["LD_LIBRARY_PATH"].startswith(str(binary.parent))
    argv, _ = store_command(STORES["milvus-2.3"], tmp_path, 1235, None)
    assert argv[1:3] == ["-m", "newsstream.stack.milvus_server"]
    assert argv[-2:] == ["--port", "1235"] and argv[argv.index("--data") + 1] == str(tmp_path)
    with pytest.raises(RuntimeError, match="milvus_lite"):
        store_command(STORES["lite-2.5"], tmp_path, 1, tmp_path / "empty")


def test_stores_table_has_one_column_per_store() -> None:
    result = {
        "rows": 100,
        "stores": [
            {
                "label": "A",
                "index_type": "HNSW",
                "upserts_per_s": 10.0,
                "flush_s": 1.0,
                "index_wait_s": 2.0,
                "one_client": {"p50_ms": 1.0, "p99_ms": 2.0, "qps": 3.0},
                "four_clients": {"p50_ms": 1.5, "p99_ms": 2.5, "qps": 5.0},
                "recall_at_10": 0.99,
                "peak_rss_bytes": 2**20,
                "features": {"bm25": True, "hybrid_search": False},
            },
            {"label": "B", "error": "did not start"},
        ],
    }
    table = stores_table(result)
    assert [c.header for c in table.columns] == ["", "A", "B"]
    assert table.row_count >= 10
