"""The deployment documents (Dockerfile, infra/README.md, docs/deploy.md) name only repository
paths that exist: a renamed test or config file must not leave a reader with a dead path."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_files import DEPLOY_DOCS, ROOT, missing_paths, named_paths


@pytest.mark.parametrize("document", DEPLOY_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_a_deployment_document_names_exists(document: Path) -> None:
    assert named_paths(document.read_text(encoding="utf-8")), f"{document.name}: found no path"
    assert not missing_paths(document), f"{document.name} names missing paths"


def test_path_finder_sees_paths_in_prose_code_and_links_and_skips_the_rest() -> None:
    """The finder the test above relies on (a finder that finds nothing checks nothing)."""
    text = """
# tests/unit/test_deploy_files.py checks that (a comment in a Dockerfile)
See [the guide](../docs/deploy.md#scaling) and `grafana/dashboards`, then run
`docker-compose -f docker-compose.yml config`; mount it at /etc/prometheus/prometheus.yml.
Not paths: `apache/kafka` is an image, `name:9100` a target, `/metrics` a route,
http://localhost:9090/x.yml a URL, TLS/SASL prose, ${HOME}/x.toml a variable.
```sh
promtool check config infra/prometheus/prometheus.yml   # also checks .env.example
```
"""
    assert named_paths(text) >= {
        "tests/unit/test_deploy_files.py",
        "../docs/deploy.md",
        "grafana/dashboards",
        "docker-compose.yml",
        "infra/prometheus/prometheus.yml",
        ".env.example",
    }
    for not_a_path in ("name:9100", "/metrics", "TLS/SASL", "prometheus.yml", "x.yml", "x.toml"):
        assert not_a_path not in named_paths(text), not_a_path
