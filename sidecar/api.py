"""The HTTP API's routes: the paths of the system suture replaces, and suture's own.

The paths of the system suture replaces are kept (``/api/monitoring/...``) so
its users can switch; the rest is under ``/api/``. Each route is declared once
here, with the schema of its parameters and answer; :mod:`.web` puts them in
the sidecar's route table beside the dashboard's and generates the OpenAPI
document (``GET /openapi.json``) from the table, so the two cannot drift (the
suite fuzzes the API from it).

Mutating calls and SQL need ``Authorization: Bearer <token>`` (the token from
the environment variable the config names); a missing or wrong token is 401.
Handlers read what the sidecar looks like from its snapshot
(:meth:`Sidecar.snapshot`), and touch the engine only through
:meth:`Sidecar.call` (on the core) or, for a person's SQL, their own cursor;
what they may use of the sidecar is :class:`~.public.PublicSidecar`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import operations as ops
from .alerts_api import AlertsApi
from .fleet_api import FleetApi
from .report_api import ReportApi
from .routes import Raw, Route, iso
from .sources.scrape import scrape_view

if TYPE_CHECKING:
    from .public import PublicSidecar

OBJ = {"type": "object"}
STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
NUM = {"type": ["number", "null"]}
FIX = {"type": "object", "required": ["id", "playbook_id", "status"],
       "properties": {"id": STR, "playbook_id": STR, "status": STR}}
BY_BODY = {"type": "object", "additionalProperties": False, "properties": {"by": {"type": "string", "maxLength": 128}}}


def routes(sidecar: PublicSidecar) -> list[Route]:
    """The API's routes, in the order of the document."""
    return Api(sidecar).routes()


class Api:
    """The API's handlers and their declarations."""

    def __init__(self, sidecar: PublicSidecar) -> None:
        self.sidecar = sidecar

    def routes(self) -> list[Route]:
        out: list[Route] = []
        r = out.append
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
                "Sample every probe and metric now and evaluate the rules.", needs_token=True))
        r(Route("GET", "/api/monitoring/backups", self.backups, "Backups, newest first.",
                response={"type": "object", "required": ["backups"],
                          "properties": {"backups": {"type": "array", "items": OBJ}}}))
        r(Route("POST", "/api/monitoring/rollback/{backup_id}", self.rollback,
                "Restore a backup (refused with 409 if a file changed since suture wrote it, unless force=true); a fix"
                " still in its validation window ends rolled_back, recorded with who rolled it back.",
                needs_token=True, query={"force": {"type": "boolean"}}, body=BY_BODY))
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
        out.extend(ReportApi(self.sidecar).routes())
        r(Route("GET", "/api/proposals", self.proposals, "Proposals nobody approved yet.",
                response={"type": "object", "required": ["proposals"],
                          "properties": {"proposals": {"type": "array", "items": FIX}}}))
        r(Route("POST", "/api/proposals/{fix_id}/approve", self.approve,
                "Apply a proposal (backup, validation and rollback as usual); recorded with who approved.",
                needs_token=True, body=BY_BODY))
        r(Route("POST", "/api/playbooks/{playbook_id}/suspend", self.suspend, "Stop a playbook from acting.",
                needs_token=True, body=BY_BODY))
        r(Route("POST", "/api/playbooks/{playbook_id}/resume", self.resume, "Let a suspended playbook act again.",
                needs_token=True, body=BY_BODY))
        r(Route("GET", "/api/playbooks/{playbook_id}/explain", self.explain,
                "Base confidence, outcomes (local and fleet), adjusted confidence, threshold, decision now; "
                "with fleet:, the group's caps, canaries and what it would say."))
        r(Route("POST", "/api/sql", self.sql, "A read-only SQL query of the history (one SELECT).", needs_token=True,
                body={"type": "object", "required": ["sql"], "additionalProperties": False,
                      "properties": {"sql": {"type": "string", "maxLength": 65536},
                                     "max_rows": {"type": "integer", "minimum": 1, "maximum": ops.MAX_ROWS}}},
                response={"type": "object", "required": ["columns", "rows", "truncated"],
                          "properties": {"columns": {"type": "array", "items": STR}, "rows": {"type": "array"},
                                         "truncated": {"type": "boolean"}}}))
        r(Route("GET", "/api/history/{table}", self.history_export,
                "A table of the history as Parquet (fixes.parquet, fix_steps.parquet).", needs_token=True,
                content_type="application/vnd.apache.parquet", response={"type": "string"}))
        out.extend(FleetApi(self.sidecar).routes())
        out.extend(AlertsApi(self.sidecar).routes())
        r(Route("GET", "/metrics", self.metrics, "Prometheus metrics.", content_type="text/plain",
                response={"type": "string"}))
        return out

    def _core(self, fn: Callable[[], Any]) -> Any:
        return self.sidecar.call(fn)

    # -- the replaced system's paths --

    def health(self) -> dict[str, Any]:
        now = self.sidecar.snapshot()
        checks = {
            name: {"status": "healthy" if r.healthy else "unhealthy", "latency_ms": r.latency_ms,
                   "detail": r.detail, "checked_at": iso(r.at)}
            for name, r in sorted(now.probes.items())
        }
        for name in self.sidecar.config.probes:
            checks.setdefault(name, {"status": "unknown", "latency_ms": None, "detail": "not checked yet",
                                     "checked_at": None})
        overall = "unhealthy" if any(c["status"] == "unhealthy" for c in checks.values()) else "healthy"
        return {"overall_status": overall, "checks": checks, "timestamp": iso(now.at)}

    def status(self) -> dict[str, Any]:
        sc = self.sidecar
        by_status: dict[str, int] = self._core(lambda: ops.store_of(sc).count_by_status())
        now = sc.snapshot()
        return {
            "autonomous_mode": True,
            "last_check": iso(now.last_check),
            "started_at": iso(now.started_at),
            "fix_statistics": {"total": sum(by_status.values()), "by_status": by_status},
            "recent_backups": self.backups()["backups"][:5],
            "check_interval_seconds": min((p.interval for p in sc.config.probes.values()), default=None),
            "active_fixes": [r.fix_id for r in now.runs],
            "playbooks_version": now.version,
            "scrapes": {name: scrape_view(scrape, now.scrapes.get(name))
                        for name, scrape in sorted(sc.config.scrapes.items())},
        }

    def trigger_check(self) -> dict[str, Any]:
        checked = self.sidecar.check_now()
        return {"checked": checked, "health": self.health()}

    def backups(self) -> dict[str, Any]:
        executor = self.sidecar.executor
        manifests = list(executor.backups.all()) if executor is not None else []
        return {"backups": [
            {"backup_id": m.id, "created_at": iso(m.created_at), "playbook_id": m.playbook_id,
             "fix_id": m.fix_id, "files": [f.path for f in m.files], "confidence": m.confidence}
            for m in manifests
        ]}

    def rollback(self, backup_id: str, body: dict[str, Any], force: bool = False) -> dict[str, Any]:
        by = body.get("by") or "api"
        return dict(self._core(lambda: ops.rollback(self.sidecar, backup_id, force=force, by=by)))

    def stats(self) -> dict[str, Any]:
        tallies = self._core(lambda: ops.store_of(self.sidecar).applied_by_type())
        total = sum(t.total for t in tallies)
        ok = sum(t.succeeded for t in tallies)
        return {
            "total_fixes": total,
            "success_rate": round(ok / total, 4) if total else None,
            "by_type": {t.fix_types or "none": {"total": t.total, "succeeded": t.succeeded} for t in tallies},
            "last_updated": iso(self.sidecar.clock()),
        }

    def playbooks(self) -> dict[str, Any]:
        now = self.sidecar.snapshot()
        if now.version is None:  # nothing loaded yet
            return {"version": None, "loaded": [], "errors": []}
        return {
            "version": now.version,
            "loaded_at": iso(now.loaded_at),
            "reloads": now.reloads,
            "reload_errors": now.reload_errors,
            "loaded": [{"id": pb.id, "file": pb.file, "version": pb.digest[:12], "mode": pb.mode,
                        "confidence": pb.confidence, "severity": pb.severity, "tags": list(pb.tags)}
                       for pb in now.playbooks.values()],
            "errors": [p.as_dict() | {"rendered": p.render()} for p in now.playbook_problems],
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
        answer = dict(self._core(lambda: ops.explain(self.sidecar, playbook_id)))
        return answer | {"fleet": ops.explain_fleet(self.sidecar, playbook_id)}  # off the core: it asks PostgreSQL

    def sql(self, body: dict[str, Any]) -> dict[str, Any]:
        return ops.user_sql(self.sidecar, body["sql"], max_rows=body.get("max_rows", ops.MAX_ROWS))

    def history_export(self, table: str) -> Raw:
        return Raw(self._core(lambda: ops.parquet(self.sidecar, table)), "application/vnd.apache.parquet")

    def metrics(self) -> Raw:
        from .telemetry import CONTENT_TYPE

        return Raw(self.sidecar.telemetry.render(), CONTENT_TYPE)
