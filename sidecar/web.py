"""The HTTP application: the API's and the dashboard's routes in one table, and what every request goes through.

:func:`build` is the one place the two contributors meet (neither imports the other). :class:`App`
answers a request that :mod:`.transport` has read whole and admitted:

1. the method must be an HTTP token and the target a path of visible ASCII, percent-encoded
   properly and UTF-8 once decoded, without control characters (400 otherwise);
2. the route table finds the route (404, or 405 with ``Allow``);
3. a route that needs the token gets ``Authorization: Bearer <token>`` compared in constant
   time (401 otherwise, and when no token is configured); a route with ``own_token`` checks a token
   of its own and reads its raw body itself (``Request.body``), so neither happens here;
4. path parameters must be ids (:data:`~.routes.ID`), query parameters are coerced to their
   schema's type (unknown ones ignored), a body must be JSON valid against the route's schema
   (400 naming the field otherwise).
"""

from __future__ import annotations

import hmac
import json
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from . import api, dashboard
from .routes import ID, MAX_BODY, ApiError, BodyLimit, Request, Route, Routes

if TYPE_CHECKING:
    from .public import PublicSidecar

METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")  # an HTTP token
TARGET = re.compile(r"/[\x21-\x7e]*")  # origin-form, visible ASCII only
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class App:
    """One request in, one answer out (``(status, payload)``); transport-free, so tests can call it directly."""

    def __init__(self, routes: Routes, *, token: str | None, token_env: str) -> None:
        self.routes = routes
        self.token, self.token_env = token, token_env

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """Answer one request; ``target`` is origin-form (``/path?query``), ``headers`` have lower-case names."""
        path, query_string = _target(method, target)
        found = self.routes.lookup(method, path)
        route = found.route
        if route.needs_token:
            self._authorize(headers)
        params = {k: _id(v) for k, v in found.params.items()}
        query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        args = _query(route, query)
        if route.body is not None and not route.own_token:
            args["body"] = _body(route, body)
        if route.wants_request:
            args["request"] = Request(method=method, headers=headers, body=body)
        return HTTPStatus.OK, route.handler(**params, **args)

    def body_limit(self, method: str, target: str, headers: dict[str, str]) -> BodyLimit:
        """How much body the transport may read for this request, asked before it reads any (its route's
        ``max_body``, which may refuse with ApiError). A request no route answers gets :data:`MAX_BODY`:
        :meth:`dispatch` answers it as it would have (400, 404, 405) once the body is read."""
        try:
            path, _ = _target(method, target)
            route = self.routes.lookup(method, path).route
        except ApiError:
            return BodyLimit(MAX_BODY, "the API's body limit")
        return route.body_limit(headers)

    def _authorize(self, headers: dict[str, str]) -> None:
        given = headers.get("authorization", "")
        if not self.token:
            raise ApiError(HTTPStatus.UNAUTHORIZED, f"no token configured (set ${self.token_env})")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), self.token.encode()):
            raise ApiError(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")



def table(sidecar: PublicSidecar) -> Routes:
    """The sidecar's whole HTTP surface: the API's routes, this document's, then the dashboard's."""
    routes = Routes(api.routes(sidecar))

    def openapi() -> dict[str, Any]:
        return routes.openapi()

    routes.add(Route("GET", "/openapi.json", openapi, "This document."))
    for route in dashboard.routes(sidecar):
        routes.add(route)
    return routes


def build(sidecar: PublicSidecar) -> App:
    cfg = sidecar.config.api
    return App(table(sidecar), token=cfg.token, token_env=cfg.token_env)


def document() -> dict[str, Any]:
    """The OpenAPI document, without a sidecar (declaring routes never touches it)."""
    return table(None).openapi()  # type: ignore[arg-type]


def _target(method: str, target: str) -> tuple[str, str]:
    """The percent-decoded path and the raw query of a target, or 400 for one no client of ours sends."""
    if not METHOD.fullmatch(method):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"not an HTTP method: {method[:32]!r}")
    if not TARGET.fullmatch(target):
        raise ApiError(HTTPStatus.BAD_REQUEST, "the target must be a path of visible ASCII characters")
    raw_path, _, query = target.partition("?")
    if BAD_ESCAPE.search(raw_path):
        raise ApiError(HTTPStatus.BAD_REQUEST, "bad percent-encoding in the path")
    try:
        path = unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(HTTPStatus.BAD_REQUEST, "the path is not UTF-8 once percent-decoded") from None
    if any(c < " " or c == "\x7f" for c in path):
        raise ApiError(HTTPStatus.BAD_REQUEST, "a control character in the path")
    return path, query


def _id(value: str) -> str:
    if not re.match(ID, value):
        raise ApiError(HTTPStatus.BAD_REQUEST, f"not a valid id: {value[:64]!r}")
    return value


def _query(route: Route, query: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in query.items():
        schema = route.query.get(name)
        if schema is None:
            continue  # unknown query parameters are ignored, as most APIs do
        kind = schema.get("type")
        if kind == "integer":
            if not re.fullmatch(r"[0-9]{1,6}", raw):
                raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} must be a whole number")
            value: Any = int(raw)
            if not schema.get("minimum", 0) <= value <= schema.get("maximum", 10**6):
                raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} out of range")
        elif kind == "boolean":
            if raw not in ("true", "false", "1", "0"):
                raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} must be true or false")
            value = raw in ("true", "1")
        else:
            if len(raw) > schema.get("maxLength", 256):
                raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} too long")
            value = raw
        out[name] = value
    return out


def _body(route: Route, raw: bytes) -> dict[str, Any]:
    import jsonschema

    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "the body is nested too deeply") from None
    assert route.body is not None
    errors = sorted(jsonschema.Draft202012Validator(route.body).iter_errors(data), key=lambda e: e.path)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "body"
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{where}: {errors[0].message}")
    return dict(data)
