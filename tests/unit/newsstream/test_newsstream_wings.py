"""The composition root's wings keep their direction: the command line sits on top and nothing
imports it; the stack and the operator tools never reach into benchmarks, evaluations or the
command line; the services never import the composition root."""

from __future__ import annotations

from import_rules import OUR_PACKAGES, imports_reaching

SERVICES = tuple(p for p in OUR_PACKAGES if p != "newsstream")


def test_nothing_but_the_entry_point_imports_the_command_line() -> None:
    wing = ("newsstream.cli.", "newsstream.cli")
    outside = {
        module: names
        for module, names in imports_reaching("newsstream", wing).items()
        if not module.startswith("newsstream/cli/") and module != "newsstream/__main__.py"
    }
    assert not outside, f"imports of newsstream.cli outside it: {outside}"


def test_the_stack_and_the_operator_tools_stay_below_bench_evals_and_cli() -> None:
    above = ("newsstream.bench", "newsstream.evals", "newsstream.cli")
    for wing in ("stack", "ops"):
        reaching = imports_reaching(f"newsstream/{wing}", above)
        assert not reaching, f"newsstream/{wing} imports a wing above it: {reaching}"


def test_no_service_imports_the_composition_root() -> None:
    for package in SERVICES:
        reaching = imports_reaching(package, ("newsstream",))
        assert not reaching, f"{package} imports newsstream: {reaching}"
