"""`newsstream serve` gives the API its feed and DLQ actions: the app it serves has the
``/admin/feeds`` and ``/admin/dlq`` routes (the server itself is not started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.routing import Route
from typer.testing import CliRunner

from newsstream.cli.app import app

ADMIN_ROUTES = {
    ("GET", "/admin/feeds"),
    ("POST", "/admin/feeds"),
    ("PATCH", "/admin/feeds/{feed}"),
    ("DELETE", "/admin/feeds/{feed}"),
    ("GET", "/admin/dlq"),
    ("POST", "/admin/dlq/replay"),
}


def test_the_served_app_has_the_admin_feed_and_dlq_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda api, **_kwargs: served.append(api))
    monkeypatch.chdir(tmp_path)
    env = {"NEWSSTREAM_DATA_DIR": str(tmp_path / "data"), "NEWSSTREAM_API_SEARCH_EVENTS": "false"}
    result = CliRunner().invoke(app, ["serve", "--port", "0"], env=env)
    assert result.exit_code == 0, result.output
    (api,) = served
    routes = {
        (method, route.path)
        for route in api.routes
        if isinstance(route, Route)
        for method in (route.methods or set())
    }
    assert not ADMIN_ROUTES - routes, f"missing: {ADMIN_ROUTES - routes}"
