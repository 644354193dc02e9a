"""What an install gets: every import declared, every declared package pinned, the CPU torch.

These read files and installed package metadata only (no network, no subprocess), so two
installs a month apart can be compared with what the repository says they get.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
import tomllib

from import_rules import OUR_PACKAGES, ROOT, imports_under
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(*groups: str) -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for group in groups:
        reqs += [Requirement(r) for r in project["optional-dependencies"][group]]
    return {canonicalize_name(r.name): r for r in reqs}


def _constraints() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _third_party_imports() -> dict[str, str]:
    """Top-level module names our packages import (absolute imports only), with a file each."""
    found: dict[str, str] = {}
    for package in OUR_PACKAGES:
        for path, names in imports_under(package).items():
            for top in sorted({name.split(".")[0] for name in names}):
                if top not in OUR_PACKAGES and top not in sys.stdlib_module_names:
                    found.setdefault(top, path)
    return found


def test_every_imported_package_is_declared() -> None:
    declared = set(_requirements("local"))
    dists = metadata.packages_distributions()
    missing = []
    for module, path in sorted(_third_party_imports().items()):
        owners = {canonicalize_name(d) for d in dists.get(module, [])}
        assert owners, f"{module} (imported in {path}) is not installed"
        if not owners & declared:
            missing.append(f"{module} ({path}) from {sorted(owners)}")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_declared_package_is_pinned_within_its_range() -> None:
    pins = _constraints()
    for name, req in _requirements("local", "dev").items():
        assert name in pins, f"{name} is declared but has no pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req.specifier}"
        )


def test_installed_versions_match_the_constraints() -> None:
    """The environment the suite runs in is the one constraints.txt describes."""
    pins = _constraints()
    wrong = []
    for name in _requirements("local", "dev"):
        installed = Version(metadata.version(name))
        if Version(installed.public) != pins[name]:
            wrong.append(f"{name}: installed {installed}, pinned {pins[name]}")
    assert not wrong, wrong


def test_every_pip_install_in_the_makefile_is_constrained() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [
        line.strip()
        for line in makefile.splitlines()
        if re.search(r"\$\(PIP\) install", line) and "--dry-run" not in line
    ]
    assert installs
    for line in installs:
        assert "$(CONSTRAINTS)" in line or "--upgrade pip" in line, line


def test_torch_is_installed_first_as_the_cpu_build() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stamp = makefile[makefile.index("$(STAMP): ") :]
    assert "$(VENV)/.torch" in stamp.splitlines()[0], "torch must be installed before the project"
    assert "TORCH_INDEX ?= https://download.pytorch.org/whl/cpu" in makefile
    torch = metadata.distribution("torch")
    requires = [canonicalize_name(Requirement(r).name) for r in torch.requires or []]
    assert not [r for r in requires if r.startswith("nvidia")], "a CUDA build of torch is installed"
    assert not [
        d.metadata["Name"]
        for d in metadata.distributions()
        if canonicalize_name(d.metadata["Name"] or "").startswith("nvidia-")
    ]


def test_the_licence_file_matches_the_declared_licence() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
