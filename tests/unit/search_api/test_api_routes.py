"""The API's routers, composed by create_app: every route of the HTTP contract is served, and
sits in the app's own route table (what the 405 answers' Allow header is built from)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from starlette.routing import Route

from core.settings import Settings
from search_api.app import create_app

#: (method, path) of every route the API serves, HEAD aside.
CONTRACT = {
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/static/{name}"),
    ("GET", "/dashboard/data"),
    ("GET", "/search"),
    ("POST", "/search"),
    ("GET", "/articles/{article_id}/similar"),
    ("GET", "/articles/{article_id}"),
    ("GET", "/articles/{article_id}/explain"),
    ("DELETE", "/articles/{article_id}"),
    ("GET", "/audit"),
    ("GET", "/stats"),
    ("GET", "/feeds"),
    ("GET", "/trends"),
    ("GET", "/stories/{story_id}"),
    ("POST", "/stories/{story_id}/split"),
    ("POST", "/admin/reindex"),
    ("GET", "/admin/reindex/{job}"),
}


def test_the_app_serves_every_route_of_the_contract_in_its_own_table() -> None:
    app = create_app(Settings(api_search_events=False))
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served == CONTRACT


def test_a_wrong_method_answers_405_naming_every_method_of_the_path() -> None:
    # No lifespan: these answers never reach Milvus or the model.
    api = TestClient(create_app(Settings(api_search_events=False)))
    wrong = api.put("/search")
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET, POST"
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    article = api.post("/articles/" + "a" * 32)
    assert (article.status_code, article.headers["Allow"]) == (405, "DELETE, GET")
    split = api.get("/stories/" + "a" * 32 + "/split")
    assert (split.status_code, split.headers["Allow"]) == (405, "POST")
