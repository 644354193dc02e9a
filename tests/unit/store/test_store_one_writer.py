"""Every write of article rows goes through ``store.writer.ArticleWriter``: no module outside
``store/`` calls a Milvus client's ``upsert``, ``insert`` or ``delete`` itself (it would skip the
keyword index beside servers without BM25, and the count check)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("core", "embedding", "producers", "consumers", "dedup", "search_api", "trends")
#: Compares the local stores' own write rates on throw-away data dirs (the writer would add the
#: keyword index to what it measures), so it writes through the client on purpose.
EXEMPT = {"newsstream/bench/stores.py"}
WRITES = {"upsert", "insert", "delete"}


def _client_writes(path: Path) -> list[str]:
    """``receiver.method`` of each row write on a Milvus client in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = ast.unparse(node.func.value)
            if node.func.attr in WRITES and "client" in receiver.lower():
                found.append(f"{receiver}.{node.func.attr} (line {node.lineno})")
    return found


def test_no_module_outside_the_store_writes_rows_through_a_milvus_client() -> None:
    files = [p for package in (*PACKAGES, "newsstream") for p in (ROOT / package).rglob("*.py")]
    assert len(files) > 50  # the packages were found
    bypasses = {
        str(path.relative_to(ROOT)): writes
        for path in files
        if str(path.relative_to(ROOT)) not in EXEMPT and (writes := _client_writes(path))
    }
    assert not bypasses, f"write rows through store.writer.ArticleWriter instead: {bypasses}"
    assert _client_writes(ROOT / "newsstream/bench/stores.py")  # the exemption still applies
