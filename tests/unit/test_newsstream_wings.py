"""The composition root's wings keep their direction: the command line sits on top and nothing
imports it; the stack and the operator tools never reach into benchmarks, evaluations or the
command line; the services never import the composition root."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("core", "embedding", "store", "dedup", "producers", "consumers", "search_api", "trends")


def _imports(folder: Path) -> dict[str, set[str]]:
    """Every absolute module name imported by each file under ``folder`` (also inside
    functions: the CLI imports lazily)."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def _reaching(folder: Path, prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    return {
        module: hits
        for module, names in _imports(folder).items()
        if (hits := {n for n in names if n.startswith(prefixes)})
    }


def test_nothing_but_the_entry_point_imports_the_command_line() -> None:
    wing = ("newsstream.cli.", "newsstream.cli")
    outside = {
        module: names
        for module, names in _reaching(ROOT / "newsstream", wing).items()
        if not module.startswith("newsstream/cli/") and module != "newsstream/__main__.py"
    }
    assert not outside, f"imports of newsstream.cli outside it: {outside}"


def test_the_stack_and_the_operator_tools_stay_below_bench_evals_and_cli() -> None:
    above = ("newsstream.bench", "newsstream.evals", "newsstream.cli")
    for wing in ("stack", "ops"):
        reaching = _reaching(ROOT / "newsstream" / wing, above)
        assert not reaching, f"newsstream/{wing} imports a wing above it: {reaching}"


def test_no_service_imports_the_composition_root() -> None:
    for package in SERVICES:
        reaching = _reaching(ROOT / package, ("newsstream",))
        assert not reaching, f"{package} imports newsstream: {reaching}"
