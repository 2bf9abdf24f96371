"""The HTTP layer's route table: every URL the sidecar answers, declared once, with its schemas.

The API (:mod:`.api`) and the dashboard (:mod:`.dashboard`) each give a list of :class:`Route`;
:mod:`.web` puts them in one :class:`Routes`, which finds the route of a request (404 for a path
no route has, 405 with ``Allow`` for a method it lacks) and describes itself as the OpenAPI
document, so the document and the table cannot drift. Neither contributor imports the other,
and nothing here knows what a sidecar is.

A handler answers with JSON-able values, a :class:`Raw` body or a :class:`Stream`; it refuses
with :class:`ApiError` (its status, message and headers are the answer). A route also says how
much of a request body it takes (``max_body``, :data:`MAX_BODY` unless declared), which the
transport enforces before it reads the body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from suture.engine.errors import SutureError

MAX_BODY = 256 * 1024  # a route's body limit unless it declares one: larger than any body the schemas allow
ID = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"  # fix, playbook and backup ids: no '/', no '..'
PARAM = re.compile(r"(\{\w+\})")


class ApiError(Exception):
    """A refusal: the status, the message (``{"error": message}``) and extra headers of the answer."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class DuplicateRoute(SutureError):
    """Two routes declared for one method and path."""


@dataclass(frozen=True, slots=True)
class Raw:
    """A response that is not JSON (e.g. the Prometheus text format, a page), with extra headers."""

    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stream:
    """A response written while it lasts (server-sent events): no length, the connection closes after.

    ``produce(write, gone)``: ``write(chunk)`` returns False once the client has gone; ``gone()``
    says so without writing (the client closed its end).
    """

    content_type: str
    produce: Callable[[Callable[[bytes], bool], Callable[[], bool]], None]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """The most a route takes of a request body, and what its 413 calls the limit."""

    most: int  # bytes
    name: str  # e.g. "alerts.alertmanager.max_bytes", "the body limit of POST /api/sql"

    def refusal(self, length: int) -> str:
        """The 413's reason for a body of ``length`` bytes."""
        return f"the body is {length} bytes; {self.name} is {self.most}"


@dataclass(frozen=True, slots=True)
class Request:
    """What a route that asks for it (``Route.wants_request``) gets of the HTTP request."""

    method: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""  # as read (a route with ``own_token`` parses it itself)


@dataclass(frozen=True, slots=True)
class Route:
    """One method and path: its handler, what it takes and what it answers (JSON schemas)."""

    method: str
    path: str  # literal, with {name} parameters (each one path segment, checked against ID)
    handler: Callable[..., Any]  # its __name__ is the operationId
    summary: str
    needs_token: bool = False  # Authorization: Bearer <token> (every mutating route, and raw history reads)
    query: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> JSON schema
    body: dict[str, Any] | None = None  # JSON schema of the request body
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    content_type: str = "application/json"
    wants_request: bool = False  # the handler gets ``request=Request(...)``
    # the handler checks a bearer token of its own (not the API's) before it reads request.body, so a
    # request without it is refused before its body is parsed; ``body`` then only documents the request
    own_token: bool = False
    # the most the transport reads of a body for this route, decided from the headers before a byte of the
    # body is read (413 when Content-Length is over it): a number of bytes, or a function of the headers
    # (lower-case names) that gives a BodyLimit or refuses the request with ApiError there and then (a route
    # with own_token checks its token in it, so a stranger never gets a large body read)
    max_body: int | Callable[[dict[str, str]], BodyLimit] = MAX_BODY

    def body_limit(self, headers: dict[str, str]) -> BodyLimit:
        if callable(self.max_body):
            return self.max_body(headers)
        return BodyLimit(self.max_body, f"the body limit of {self.method} {self.path}")

    def pattern(self) -> re.Pattern[str]:
        """The path as a regular expression: literal parts escaped, each {name} a captured segment."""
        return re.compile("^" + "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p)
                                        for p in PARAM.split(self.path)) + "$")

    def parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


@dataclass(frozen=True, slots=True)
class Found:
    route: Route
    params: dict[str, str]  # the path's {name} parts, as sent (percent-decoded)


class Routes:
    """The table: routes in the order declared (the first of a method and path answers)."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._routes: list[tuple[Route, re.Pattern[str]]] = []
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        if any(r.method == route.method and r.path == route.path for r, _ in self._routes):
            raise DuplicateRoute(f"{route.method} {route.path} is declared twice")
        self._routes.append((route, route.pattern()))

    def __iter__(self) -> Iterator[Route]:
        return (route for route, _ in self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def lookup(self, method: str, path: str) -> Found:
        """The route for ``method`` at ``path``; 405 (with Allow) if only other methods are, 404 if none."""
        allowed: set[str] = set()
        for route, pattern in self._routes:
            m = pattern.match(path)
            if not m:
                continue
            if route.method == method:
                return Found(route, m.groupdict())
            allowed.add(route.method)
        if allowed:
            methods = ", ".join(sorted(allowed | ({"HEAD"} if "GET" in allowed else set())))
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed; use {methods}", {"Allow": methods})
        raise ApiError(HTTPStatus.NOT_FOUND, f"no such path: {path}")

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the table (what the suite fuzzes the API from)."""
        error = {"description": "An error", "content": {"application/json": {"schema": {
            "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}}}
        paths: dict[str, Any] = {}
        for route in self:
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "pattern": ID}}
                      for n in route.parameters()]
            params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in route.query.items()]
            op: dict[str, Any] = {
                "summary": route.summary,
                "operationId": route.handler.__name__,
                "parameters": params,
                "responses": {
                    "200": {"description": "OK", "content": {route.content_type: {"schema": route.response}}},
                    "400": error, "404": error, "409": error, "413": error, "421": error, "503": error,
                },
            }
            if route.needs_token or route.own_token:
                op["security"] = [{"bearer": []}]
                op["responses"]["401"] = error
            if route.body is not None:
                # a body with required fields is itself required (an empty body is read as {})
                op["requestBody"] = {"required": bool(route.body.get("required")),
                                     "content": {"application/json": {"schema": route.body}}}
            paths.setdefault(route.path, {})[route.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {"title": "suture sidecar API", "version": "1"},
            "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        }


# -- what answers are made of --


def iso(value: float | datetime | None, *, milliseconds: bool = False) -> str | None:
    """A time as ISO 8601 UTC with a Z (epoch seconds or a naive UTC datetime, as stored); 0 and None: None."""
    if value is None or value == 0:
        return None
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC).timestamp()
    text = datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds" if milliseconds else "auto")
    return text.replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """A handler's answer as JSON values: datetimes (naive UTC) in ISO 8601, anything else unknown as text."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
