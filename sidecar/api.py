"""The HTTP API, on the address from the config (loopback by default).

The paths of the system suture replaces are kept (``/api/monitoring/...``) so
its users can switch; the rest is under ``/api/``. Every route is declared
once, with the schema of its parameters and answer, and the OpenAPI document
(``GET /openapi.json``) is generated from those declarations, so the two
cannot drift (the suite fuzzes the API from it).

Mutating calls and SQL need ``Authorization: Bearer <token>`` (the token from
the environment variable the config names); a missing or wrong token is 401.
CORS is off unless the config names one exact origin. Handlers touch the
engine only through :meth:`Sidecar.call` (on the core) or their own cursor.
Requests reach :meth:`Api.dispatch` through :mod:`.transport`, which refuses
Host names that are not this server's (421, against DNS rebinding), slow and
excess clients, and malformed framing.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from . import operations as ops

if TYPE_CHECKING:
    from .runtime import Sidecar

log = logging.getLogger("suture.api")
MAX_BODY = 256 * 1024  # larger than any body the schemas allow, so those get a 400 naming the field
ID = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"  # fix, playbook and backup ids: no '/', no '..'
METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")  # an HTTP token
TARGET = re.compile(r"/[\x21-\x7e]*")  # origin-form, visible ASCII only
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


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
class Request:
    """What a route that asks for it (``Route.wants_request``) gets of the HTTP request."""

    method: str
    headers: dict[str, str]  # lower-case names


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Callable[..., Any]
    summary: str
    mutating: bool = False
    query: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> JSON schema
    body: dict[str, Any] | None = None  # JSON schema of the request body
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    content_type: str = "application/json"
    wants_request: bool = False  # the handler gets ``request=Request(...)``

    @property
    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"(\{\w+\})", self.path)  # literal parts escaped, {name} parts captured
        return re.compile("^" + "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p)
                                        for p in parts) + "$")


def _iso(epoch: float | None) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


OBJ = {"type": "object"}
STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
NUM = {"type": ["number", "null"]}
FIX = {"type": "object", "required": ["id", "playbook_id", "status"],
       "properties": {"id": STR, "playbook_id": STR, "status": STR}}
BY_BODY = {"type": "object", "additionalProperties": False, "properties": {"by": {"type": "string", "maxLength": 128}}}


class Api:
    """Route table and handlers; transport-free, so tests can call ``dispatch`` directly too."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.routes: list[Route] = []
        self._declare()

    def _declare(self) -> None:
        r = self.routes.append
        r(Route("GET", "/api/monitoring/health", self.health, "Probe results and overall status.",
                response={"type": "object", "required": ["overall_status", "checks"],
                          "properties": {"overall_status": {"enum": ["healthy", "unhealthy"]},
                                         "checks": {"type": "object", "additionalProperties": {
                                             "type": "object", "required": ["status"],
                                             "properties": {"status": {"enum": ["healthy", "unhealthy", "unknown"]},
                                                            "latency_ms": NUM}}}}}))
        r(Route("GET", "/api/monitoring/status", self.status, "Mode, last check, fix statistics, recent backups.",
                response={"type": "object", "required": ["autonomous_mode", "fix_statistics", "recent_backups"],
                          "properties": {"autonomous_mode": {"type": "boolean"}, "last_check": NSTR,
                                         "fix_statistics": OBJ, "recent_backups": {"type": "array"},
                                         "check_interval_seconds": NUM}}))
        r(Route("POST", "/api/monitoring/trigger-check", self.trigger_check,
                "Sample every probe and metric now and evaluate the rules.", mutating=True))
        r(Route("GET", "/api/monitoring/backups", self.backups, "Backups, newest first.",
                response={"type": "object", "required": ["backups"],
                          "properties": {"backups": {"type": "array", "items": OBJ}}}))
        r(Route("POST", "/api/monitoring/rollback/{backup_id}", self.rollback,
                "Restore a backup (refused with 409 if a file changed since suture wrote it, unless force=true); a fix"
                " still in its validation window ends rolled_back, recorded with who rolled it back.",
                mutating=True, query={"force": {"type": "boolean"}}, body=BY_BODY))
        r(Route("GET", "/api/monitoring/stats", self.stats, "Totals and success rates by fix type.",
                response={"type": "object", "required": ["total_fixes", "success_rate", "by_type", "last_updated"],
                          "properties": {"total_fixes": {"type": "integer"}, "success_rate": NUM,
                                         "by_type": OBJ, "last_updated": NSTR}}))
        r(Route("GET", "/api/monitoring/playbooks", self.playbooks, "Loaded playbooks, version, reload errors.",
                response={"type": "object", "required": ["version", "loaded", "errors"],
                          "properties": {"version": NSTR, "loaded": {"type": "array"}, "errors": {"type": "array"}}}))
        r(Route("GET", "/api/fixes", self.fixes, "Fixes, newest first.",
                query={"limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                       "status": {"type": "string", "maxLength": 32}, "playbook": {"type": "string", "maxLength": 64}},
                response={"type": "object", "required": ["fixes"],
                          "properties": {"fixes": {"type": "array", "items": FIX}}}))
        r(Route("GET", "/api/fixes/{fix_id}", self.fix, "One fix with its journal of steps.", response=FIX))
        r(Route("GET", "/api/proposals", self.proposals, "Proposals nobody approved yet.",
                response={"type": "object", "required": ["proposals"],
                          "properties": {"proposals": {"type": "array", "items": FIX}}}))
        r(Route("POST", "/api/proposals/{fix_id}/approve", self.approve,
                "Apply a proposal (backup, validation and rollback as usual); recorded with who approved.",
                mutating=True, body=BY_BODY))
        r(Route("POST", "/api/playbooks/{playbook_id}/suspend", self.suspend, "Stop a playbook from acting.",
                mutating=True, body=BY_BODY))
        r(Route("POST", "/api/playbooks/{playbook_id}/resume", self.resume, "Let a suspended playbook act again.",
                mutating=True, body=BY_BODY))
        r(Route("GET", "/api/playbooks/{playbook_id}/explain", self.explain,
                "Base confidence, outcomes (local and fleet), adjusted confidence, threshold, decision now."))
        r(Route("POST", "/api/sql", self.sql, "A read-only SQL query of the history (one SELECT).", mutating=True,
                body={"type": "object", "required": ["sql"], "additionalProperties": False,
                      "properties": {"sql": {"type": "string", "maxLength": 65536},
                                     "max_rows": {"type": "integer", "minimum": 1, "maximum": ops.MAX_ROWS}}},
                response={"type": "object", "required": ["columns", "rows", "truncated"],
                          "properties": {"columns": {"type": "array", "items": STR}, "rows": {"type": "array"},
                                         "truncated": {"type": "boolean"}}}))
        r(Route("GET", "/api/history/{table}", self.history_export,
                "A table of the history as Parquet (fixes.parquet, fix_steps.parquet).", mutating=True,
                content_type="application/vnd.apache.parquet", response={"type": "string"}))
        r(Route("GET", "/metrics", self.metrics, "Prometheus metrics.", content_type="text/plain",
                response={"type": "string"}))
        r(Route("GET", "/openapi.json", self.openapi, "This document."))
        from .dashboard import routes as dashboard_routes  # the dashboard at / and its data

        for route in dashboard_routes(self):
            r(route)

    # -- dispatch --

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """Answer one request; ``target`` is origin-form (``/path?query``), ``headers`` have lower-case names."""
        path, query_string = self._target(method, target)
        query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        allowed = []
        for route in self.routes:
            m = route.pattern.match(path)
            if not m:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            if route.mutating:
                self._authorize(headers)
            params = {k: self._id(v) for k, v in m.groupdict().items()}
            args = self._query(route, query)
            if route.body is not None:
                args["body"] = self._body(route, body)
            if route.wants_request:
                args["request"] = Request(method=method, headers=headers)
            return HTTPStatus.OK, route.handler(**params, **args)
        if allowed:
            methods = ", ".join(sorted(set(allowed) | ({"HEAD"} if "GET" in allowed else set())))
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed; use {methods}", {"Allow": methods})
        raise ApiError(HTTPStatus.NOT_FOUND, f"no such path: {path}")

    @staticmethod
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

    @staticmethod
    def _id(value: str) -> str:
        if not re.match(ID, value):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"not a valid id: {value[:64]!r}")
        return value

    @staticmethod
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

    @staticmethod
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

    def _authorize(self, headers: dict[str, str]) -> None:
        token = self.sidecar.config.api.token
        given = headers.get("authorization", "")
        if not token:
            raise ApiError(HTTPStatus.UNAUTHORIZED, f"no token configured (set ${self.sidecar.config.api.token_env})")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
            raise ApiError(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")

    def _core(self, fn: Callable[[], Any]) -> Any:
        return self.sidecar.call(fn)

    # -- the replaced system's paths --

    def health(self) -> dict[str, Any]:
        results = dict(self.sidecar.probe_results)
        checks = {
            name: {"status": "healthy" if r.healthy else "unhealthy", "latency_ms": r.latency_ms,
                   "detail": r.detail, "checked_at": _iso(r.at)}
            for name, r in sorted(results.items())
        }
        for name in self.sidecar.config.probes:
            checks.setdefault(name, {"status": "unknown", "latency_ms": None, "detail": "not checked yet",
                                     "checked_at": None})
        overall = "unhealthy" if any(c["status"] == "unhealthy" for c in checks.values()) else "healthy"
        return {"overall_status": overall, "checks": checks, "timestamp": _iso(self.sidecar.clock())}

    def status(self) -> dict[str, Any]:
        sc = self.sidecar
        rows = self._core(lambda: ops._store(sc).query(
            "SELECT status, count(*) FROM fixes GROUP BY status ORDER BY status").rows)
        by_status = {status: int(n) for status, n in rows}
        return {
            "autonomous_mode": True,
            "last_check": _iso(sc.last_check),
            "started_at": _iso(sc.started_at),
            "fix_statistics": {"total": sum(by_status.values()), "by_status": by_status},
            "recent_backups": self.backups()["backups"][:5],
            "check_interval_seconds": min((p.interval for p in sc.config.probes.values()), default=None),
            "active_fixes": [r.fix_id for r in sc.runs],
            "playbooks_version": sc.playbook_set.version if sc.playbook_set else None,
        }

    def trigger_check(self) -> dict[str, Any]:
        checked = self.sidecar.check_now()
        return {"checked": checked, "health": self.health()}

    def backups(self) -> dict[str, Any]:
        executor = self.sidecar.executor
        manifests = list(executor.backups.all()) if executor is not None else []
        return {"backups": [
            {"backup_id": m.id, "created_at": _iso(m.created_at), "playbook_id": m.playbook_id,
             "fix_id": m.fix_id, "files": [f.path for f in m.files], "confidence": m.confidence}
            for m in manifests
        ]}

    def rollback(self, backup_id: str, body: dict[str, Any], force: bool = False) -> dict[str, Any]:
        by = body.get("by") or "api"
        return dict(self._core(lambda: ops.rollback(self.sidecar, backup_id, force=force, by=by)))

    def stats(self) -> dict[str, Any]:
        rows = self._core(lambda: ops._store(self.sidecar).query(
            """SELECT fix_types, count(*) AS n, count(*) FILTER (WHERE status = 'succeeded') AS ok
               FROM fixes WHERE decision = 'apply' AND finished_at IS NOT NULL GROUP BY fix_types""").rows)
        total = sum(int(n) for _, n, _ in rows)
        ok = sum(int(s) for _, _, s in rows)
        return {
            "total_fixes": total,
            "success_rate": round(ok / total, 4) if total else None,
            "by_type": {t or "none": {"total": int(n), "succeeded": int(s)} for t, n, s in rows},
            "last_updated": _iso(self.sidecar.clock()),
        }

    def playbooks(self) -> dict[str, Any]:
        sc = self.sidecar
        result = sc.playbook_set
        if result is None:
            return {"version": None, "loaded": [], "errors": []}
        return {
            "version": result.version,
            "loaded_at": _iso(sc.loaded_at),
            "reloads": sc.reloads,
            "reload_errors": sc.reload_errors,
            "loaded": [{"id": pb.id, "file": pb.file, "version": pb.digest[:12], "mode": pb.mode,
                        "confidence": pb.confidence, "severity": pb.severity, "tags": list(pb.tags)}
                       for pb in result.playbooks],
            "errors": [p.as_dict() | {"rendered": p.render()} for p in result.problems],
        }

    # -- the rest --

    def fixes(self, limit: int = 50, status: str | None = None, playbook: str | None = None) -> dict[str, Any]:
        return {"fixes": self._core(lambda: ops.list_fixes(self.sidecar, limit=limit, status=status,
                                                           playbook=playbook))}

    def fix(self, fix_id: str) -> dict[str, Any]:
        return dict(self._core(lambda: ops.fix_detail(self.sidecar, fix_id)))

    def proposals(self) -> dict[str, Any]:
        return {"proposals": self._core(lambda: ops.pending_proposals(self.sidecar))}

    def approve(self, fix_id: str, body: dict[str, Any]) -> dict[str, Any]:
        by = body.get("by") or "api"
        return dict(self._core(lambda: ops.approve(self.sidecar, fix_id, by)))

    def suspend(self, playbook_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._core(lambda: ops.suspend(self.sidecar, playbook_id, body.get("by") or "api")))

    def resume(self, playbook_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._core(lambda: ops.resume(self.sidecar, playbook_id, body.get("by") or "api")))

    def explain(self, playbook_id: str) -> dict[str, Any]:
        return dict(self._core(lambda: ops.explain(self.sidecar, playbook_id)))

    def sql(self, body: dict[str, Any]) -> dict[str, Any]:
        return ops.user_sql(self.sidecar, body["sql"], max_rows=body.get("max_rows", ops.MAX_ROWS))

    def history_export(self, table: str) -> Raw:
        return Raw(self._core(lambda: ops.parquet(self.sidecar, table)), "application/vnd.apache.parquet")

    def metrics(self) -> Raw:
        from .telemetry import CONTENT_TYPE

        return Raw(self.sidecar.telemetry.render(), CONTENT_TYPE)

    def openapi(self) -> dict[str, Any]:
        return openapi_document(self.routes)


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    error = {"description": "An error", "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {"error": STR}}}}}
    paths: dict[str, Any] = {}
    for route in routes:
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "pattern": ID}}
                  for n in re.findall(r"\{(\w+)\}", route.path)]
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
        if route.mutating:
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = error
        if route.body is not None:
            op["requestBody"] = {"required": False, "content": {"application/json": {"schema": route.body}}}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "suture sidecar API", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
