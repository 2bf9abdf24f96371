"""The route table: lookup by method and path, 404 and 405, duplicates refused, the document generated from it,
and the sidecar's table composed of the API's routes and the dashboard's."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from suture.sidecar.routes import ApiError, DuplicateRoute, Route, Routes
from suture.sidecar.web import App, document


def fix(fix_id: str) -> dict[str, str]:
    return {"id": fix_id}


def approve(fix_id: str, body: dict[str, str]) -> dict[str, str]:
    return {"approved": fix_id, "by": body.get("by", "")}


TABLE = Routes([
    Route("GET", "/api/fixes/{fix_id}", fix, "One fix."),
    Route("POST", "/api/fixes/{fix_id}/approve", approve, "Approve it.", needs_token=True,
          body={"type": "object", "properties": {"by": {"type": "string"}}}),
])


def test_a_path_and_method_find_their_route_and_parameters() -> None:
    """The route whose pattern and method match, with the path's {name} parts."""
    found = TABLE.lookup("GET", "/api/fixes/f-1")
    assert (found.route.handler, found.params) == (fix, {"fix_id": "f-1"})


def test_a_path_no_route_has_is_404() -> None:
    """No pattern matches: 404 naming the path."""
    with pytest.raises(ApiError) as caught:
        TABLE.lookup("GET", "/api/nothing")
    assert (caught.value.status, str(caught.value)) == (HTTPStatus.NOT_FOUND, "no such path: /api/nothing")


def test_a_method_the_path_lacks_is_405_with_allow() -> None:
    """The path exists for other methods: 405, and Allow lists them (HEAD beside GET)."""
    with pytest.raises(ApiError) as caught:
        TABLE.lookup("DELETE", "/api/fixes/f-1")
    assert (caught.value.status, caught.value.headers) == (HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": "GET, HEAD"})


def test_a_route_declared_twice_is_refused() -> None:
    """One method and path, one route: a second declaration raises, naming both."""
    with pytest.raises(DuplicateRoute, match=r"GET /api/fixes/\{fix_id\} is declared twice"):
        Routes([*TABLE, Route("GET", "/api/fixes/{fix_id}", fix, "Again.")])


def test_the_document_describes_each_route_once() -> None:
    """Every route is an operation of the document, named by its handler; a token route has its security."""
    doc = Routes(TABLE).openapi()
    operations = {(path, method): op["operationId"] for path, item in doc["paths"].items() for method, op in item.items()}
    assert operations == {("/api/fixes/{fix_id}", "get"): "fix", ("/api/fixes/{fix_id}/approve", "post"): "approve"}
    assert doc["paths"]["/api/fixes/{fix_id}/approve"]["post"]["security"] == [{"bearer": []}]


def test_a_token_route_needs_the_token() -> None:
    """Without the bearer token a route that needs it is 401; with it, the handler answers."""
    app = App(TABLE, token="s3cret", token_env="SUTURE_TOKEN")
    with pytest.raises(ApiError) as caught:
        app.dispatch("POST", "/api/fixes/f-1/approve", {}, b"{}")
    assert caught.value.status == HTTPStatus.UNAUTHORIZED
    answer = app.dispatch("POST", "/api/fixes/f-1/approve", {"authorization": "Bearer s3cret"}, b'{"by": "ann"}')
    assert answer == (HTTPStatus.OK, {"approved": "f-1", "by": "ann"})


def test_a_path_parameter_must_be_an_id() -> None:
    """A {name} part that is not an id ('..', a slash once decoded) is 400 before any handler runs."""
    with pytest.raises(ApiError) as caught:
        App(TABLE, token=None, token_env="T").dispatch("GET", "/api/fixes/..", {}, b"")
    assert caught.value.status == HTTPStatus.BAD_REQUEST


def test_the_sidecar_table_holds_the_api_and_the_dashboard() -> None:
    """The one table: the replaced system's paths, suture's own, the document and the dashboard's page and data."""
    paths = set(document()["paths"])
    assert {"/api/monitoring/health", "/api/sql", "/metrics", "/openapi.json", "/", "/api/dashboard/state",
            "/api/dashboard/events"} <= paths
