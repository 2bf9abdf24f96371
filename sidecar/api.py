"""The HTTP API, on the address from the config (loopback by default).

The paths of the system suture replaces are kept (``/api/monitoring/...``) so
its users can switch. Handlers never touch the engine from the server's
threads: they ask the core through :meth:`Sidecar.call`, which runs a
function between two observations and returns its result.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import Sidecar

log = logging.getLogger("suture.api")
MAX_BODY = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Raw:
    """A response that is not JSON (e.g. the Prometheus text format)."""

    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]
    mutating: bool


def _iso(epoch: float | None) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Api:
    """Route table and handlers; transport-free, so tests can call it directly too."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.routes: list[Route] = []
        self.add("GET", "/api/monitoring/health", self.health)
        self.add("GET", "/api/monitoring/status", self.status)
        self.add("GET", "/api/monitoring/stats", self.stats)
        self.add("GET", "/api/monitoring/backups", self.backups)
        self.add("GET", "/api/monitoring/playbooks", self.playbooks)
        self.add("GET", "/metrics", self.metrics)

    def add(self, method: str, path: str, handler: Callable[..., Any], *, mutating: bool = False) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")
        self.routes.append(Route(method, regex, handler, mutating))

    def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
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
            return HTTPStatus.OK, route.handler(**m.groupdict())
        if allowed:
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed; use {', '.join(allowed)}")
        raise ApiError(HTTPStatus.NOT_FOUND, f"no such path: {path}")

    def _authorize(self, headers: dict[str, str]) -> None:
        token = self.sidecar.config.api.token
        given = headers.get("authorization", "")
        if not token:
            raise ApiError(HTTPStatus.UNAUTHORIZED, f"no token configured (set ${self.sidecar.config.api.token_env})")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
            raise ApiError(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")

    # -- handlers --

    def metrics(self) -> Raw:
        from .telemetry import CONTENT_TYPE

        return Raw(self.sidecar.telemetry.render(), CONTENT_TYPE)

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
        states = {c["status"] for c in checks.values()}
        overall = "unhealthy" if "unhealthy" in states else "healthy"
        return {"overall_status": overall, "checks": checks, "timestamp": _iso(self.sidecar.clock())}

    def _fix_statistics(self) -> dict[str, Any]:
        def query() -> Any:
            assert self.sidecar.store is not None
            return self.sidecar.store.query(
                "SELECT status, count(*) FROM fixes GROUP BY status ORDER BY status"
            ).rows

        rows = self.sidecar.call(query)
        by_status = {status: int(n) for status, n in rows}
        return {"total": sum(by_status.values()), "by_status": by_status}

    def status(self) -> dict[str, Any]:
        sc = self.sidecar
        backups = list(self.backups()["backups"])[:5]
        return {
            "autonomous_mode": True,
            "last_check": _iso(sc.last_check),
            "started_at": _iso(sc.started_at),
            "fix_statistics": self._fix_statistics(),
            "recent_backups": backups,
            "check_interval_seconds": min((p.interval for p in sc.config.probes.values()), default=None),
            "active_fixes": [r.fix_id for r in sc.runs],
            "playbooks_version": sc.playbook_set.version if sc.playbook_set else None,
        }

    def stats(self) -> dict[str, Any]:
        def query() -> Any:
            assert self.sidecar.store is not None
            return self.sidecar.store.query(
                """SELECT fix_types, count(*) AS n, count(*) FILTER (WHERE status = 'succeeded') AS ok
                   FROM fixes WHERE decision = 'apply' AND finished_at IS NOT NULL GROUP BY fix_types"""
            ).rows

        rows = self.sidecar.call(query)
        total = sum(int(n) for _, n, _ in rows)
        ok = sum(int(s) for _, _, s in rows)
        return {
            "total_fixes": total,
            "success_rate": round(ok / total, 4) if total else None,
            "by_type": {t or "none": {"total": int(n), "succeeded": int(s)} for t, n, s in rows},
            "last_updated": _iso(self.sidecar.clock()),
        }

    def backups(self) -> dict[str, Any]:
        assert self.sidecar.executor is not None
        manifests = list(self.sidecar.executor.backups.all())
        return {"backups": [
            {"backup_id": m.id, "created_at": _iso(m.created_at), "playbook_id": m.playbook_id,
             "fix_id": m.fix_id, "files": [f.path for f in m.files], "confidence": m.confidence}
            for m in manifests
        ]}

    def playbooks(self) -> dict[str, Any]:
        result = self.sidecar.playbook_set
        if result is None:
            return {"version": None, "loaded": [], "errors": []}
        return {
            "version": result.version,
            "loaded_at": _iso(self.sidecar.loaded_at),
            "reloads": self.sidecar.reloads,
            "reload_errors": self.sidecar.reload_errors,
            "loaded": [{"id": pb.id, "file": pb.file, "version": pb.digest[:12], "mode": pb.mode,
                        "confidence": pb.confidence, "severity": pb.severity, "tags": list(pb.tags)}
                       for pb in result.playbooks],
            "errors": [p.as_dict() | {"rendered": p.render()} for p in result.problems],
        }


class _Handler(BaseHTTPRequestHandler):
    api: Api
    server_version = "suture"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def _respond(self, status: int, payload: Any) -> None:
        if isinstance(payload, Raw):
            body, content_type = payload.body, payload.content_type
        else:
            body, content_type = json.dumps(_jsonable(payload), indent=2).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0 or length > MAX_BODY:
                raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path.split("?", 1)[0]
            status, payload = self.api.dispatch(method, path, headers, body)
            self._respond(status, payload)
        except ApiError as exc:
            self._respond(exc.status, {"error": str(exc)})
        except ValueError as exc:
            self._respond(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except TimeoutError as exc:
            self._respond(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        except Exception:
            log.exception("API handler failed")
            self._respond(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error (see the sidecar log)"})

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(sidecar: Sidecar) -> _Server:
    """Start the API in a background thread; the caller shuts it down."""
    cfg = sidecar.config.api
    handler = type("Handler", (_Handler,), {"api": Api(sidecar)})
    server = _Server((cfg.host, cfg.port), handler)
    host, port = server.server_address[:2]
    sidecar.api_url = f"http://{host}:{port}" if ":" not in str(host) else f"http://[{host}]:{port}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="suture-api", daemon=True).start()
    log.info("api          listening on %s", sidecar.api_url)
    return server
