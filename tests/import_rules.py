"""Who imports what: the absolute imports of our packages, read from the source (nothing is
imported or run), for the tests that keep the layers' direction and the declared dependencies.

Every ``import`` counts, also those inside functions (the command line imports lazily);
relative imports stay inside their package and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Our top-level packages, bottom layer first.
OUR_PACKAGES = (
    "core",
    "embedding",
    "store",
    "producers",
    "consumers",
    "dedup",
    "search_api",
    "trends",
    "newsstream",
)


def imports_under(folder: str) -> dict[str, set[str]]:
    """Every absolute module name imported by each ``.py`` file under ``ROOT/folder``.

    Keys are paths relative to the repository root (every file has one, maybe with an empty
    set); ``from a.b import c`` counts as ``a.b`` and ``a.b.c`` (``c`` may be a module).
    """
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def packages_imported_by(folder: str, among: Iterable[str]) -> dict[str, set[str]]:
    """The top-level packages of ``among`` that each file under ``folder`` imports; only the
    files that import at least one of them are keys."""
    wanted = set(among)
    tops = {
        module: {name.split(".")[0] for name in names} & wanted
        for module, names in imports_under(folder).items()
    }
    return {module: hits for module, hits in tops.items() if hits}


def imports_reaching(folder: str, prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    """The imported names starting with one of ``prefixes``, by file under ``folder``; only
    the files that import such a name are keys."""
    return {
        module: hits
        for module, names in imports_under(folder).items()
        if (hits := {n for n in names if n.startswith(prefixes)})
    }
