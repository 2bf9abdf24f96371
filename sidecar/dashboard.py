"""The dashboard at ``/``: what suture sees, what it did, and a person's controls.

The page is plain files in ``static/`` (HTML, CSS, ES modules; no build step,
nothing from a CDN: sidecars often run without internet). It reads the routes
below and the API's own; every change it makes goes through the API's
mutating routes with the bearer token the person types in (kept in the tab's
sessionStorage only).

    GET /                                 the page (CSP: self only, no inline script; never framed)
    GET /static/{name}.js|.css|.svg       its files: only those in static/, by name (no folders)
    GET /api/dashboard/state              probes, watched metrics and sources, each healthy/warning/critical
    GET /api/dashboard/events             server-sent events from the sidecar's recent events
    GET /api/dashboard/fixes              the timeline: decision, confidence, edit, validation per fix
    GET /api/dashboard/trends             fixed queries of the history (per day, per playbook)
    GET /api/dashboard/playbooks          per playbook: suspended, adjusted confidence, last fix
    GET /api/dashboard/backups/{id}       what rolling a backup back would change
    (GET /api/fleet, the API's)            the Fleet section, read only when the state says fleet: is set

This module holds the page, its files and the declarations of every dashboard route (with the
schemas the fuzzer holds each answer to); the answers are made in :mod:`.dashboard_state`,
:mod:`.dashboard_events` and :mod:`.dashboard_history`. The page carries its security headers
in its answer (:class:`~.routes.Raw`).
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dashboard_events import MAX_STREAMS, EventStream
from .dashboard_history import HistoryView
from .dashboard_state import StateView
from .routes import ApiError, Raw, Route

if TYPE_CHECKING:
    from .public import PublicSidecar

__all__ = ["MAX_STREAMS", "Page", "routes"]

STATIC = Path(__file__).with_name("static")
TYPES = {"js": "application/javascript", "css": "text/css", "svg": "image/svg+xml"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# -- response schemas (the fuzzer holds every answer to them) --
S, NS, N, INT = {"type": "string"}, {"type": ["string", "null"]}, {"type": ["number", "null"]}, {"type": "integer"}
LEVEL = {"enum": ["healthy", "warning", "critical", "unknown"]}
POINTS = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}


def _obj(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **optional}}


def _list(key: str, item: dict[str, Any], **more: Any) -> dict[str, Any]:
    return _obj({key: {"type": "array", "items": item}, **more})


HEALTH_ITEM = _obj({"name": S, "status": LEVEL, "detail": S, "series": POINTS})
STATE = _obj({"now": NS, "running": {"type": "boolean"}, "fleet": {"type": "boolean"}, "events_seq": INT,
              "threshold": {"type": "number"},
              "probes": {"type": "array", "items": HEALTH_ITEM}, "metrics": {"type": "array", "items": HEALTH_ITEM},
              "sources": {"type": "array", "items": HEALTH_ITEM}, "active_fixes": {"type": "array"}})
TIMELINE = _list("fixes", _obj({"id": S, "playbook_id": S, "status": S, "decision": S, "started_at": NS,
                                "finished_at": NS, "adjusted_confidence": N, "threshold": N,
                                "changes": {"type": "array"}, "verdict": NS, "seconds": N}),
                 playbooks={"type": "array", "items": S}, outcomes={"type": "array", "items": S})
TRENDS = _obj({"days": INT, "per_day": {"type": "array", "items": _obj({"day": S, "status": S, "fixes": INT})},
               "per_playbook": {"type": "array", "items": _obj({"playbook_id": S, "fixes": INT, "succeeded": INT,
                                                                "success_rate": N, "mttr_s": N})},
               "recovery": {"type": "array", "items": _obj({"playbook_id": S, "at": S, "seconds": N})},
               "confidence": {"type": "array", "items": _obj({"playbook_id": S, "at": S, "adjusted": N,
                                                              "threshold": N})}})
PLAYBOOKS = _list("playbooks", _obj({"id": S, "suspended": {"type": "boolean"}, "adjusted_confidence": N,
                                     "threshold": {"type": "number"}, "last_status": NS}))
# an event stream's schema describes one event (OpenAPI 3.1); `data` holds the event as JSON
EVENT = _obj({"data": S}, id=S, event=S)
PREVIEW = _obj({"backup_id": S, "fix_id": S, "playbook_id": S,
                "files": {"type": "array", "items": _obj({"path": S, "state": {"enum": [
                    "restore", "unchanged", "changed", "missing"]}})},
                "changes": {"type": "array"}, "needs_force": {"type": "boolean"}})



class Page:
    """The page and its files."""

    def page(self) -> Raw:
        return Raw((STATIC / "index.html").read_bytes(), "text/html; charset=utf-8", dict(PAGE_HEADERS))

    def _static(self, name: str, ext: str) -> Raw:
        path = STATIC / f"{name}.{ext}"
        # names come from the folder's own listing, never from joining a request's path
        if path.name not in {p.name for p in STATIC.iterdir() if p.is_file()}:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no such file: {name}.{ext}")
        return Raw(path.read_bytes(), TYPES[ext] + ("; charset=utf-8" if ext != "svg" else ""))

    def static_js(self, name: str) -> Raw:
        return self._static(name, "js")

    def static_css(self, name: str) -> Raw:
        return self._static(name, "css")

    def static_svg(self, name: str) -> Raw:
        return self._static(name, "svg")


def routes(sidecar: PublicSidecar) -> list[Route]:
    """The dashboard's routes (the page, its files, and the data it reads)."""
    page, state, events, history = Page(), StateView(sidecar), EventStream(sidecar), HistoryView(sidecar)
    days = {"type": "integer", "minimum": 1, "maximum": 366}
    return [
        Route("GET", "/", page.page, "The dashboard page.", content_type="text/html", response=S),
        *(Route("GET", f"/static/{{name}}.{ext}", getattr(page, f"static_{ext}"), f"A {ext} file of the page.",
                content_type=kind, response=S) for ext, kind in TYPES.items()),
        Route("GET", "/api/dashboard/state", state.dashboard_state,
              "Every probe, watched metric and source with its state (healthy, warning, critical).",
              response=STATE),
        Route("GET", "/api/dashboard/events", events.dashboard_events,
              "The sidecar's events as server-sent events (a live stream for Accept: text/event-stream).",
              query={"after": {"type": "integer", "minimum": 0, "maximum": 999_999}},
              content_type="text/event-stream", response=EVENT, wants_request=True),
        Route("GET", "/api/dashboard/fixes", history.dashboard_fixes,
              "Fixes for the timeline, with decision, confidence, edit and validation.",
              query={"limit": {"type": "integer", "minimum": 1, "maximum": 500},
                     "playbook": {"type": "string", "maxLength": 64}, "outcome": {"type": "string", "maxLength": 32},
                     "days": days},
              response=TIMELINE),
        Route("GET", "/api/dashboard/trends", history.dashboard_trends,
              "Fixes per day by outcome, success rate and time to recovery per playbook, confidence over time.",
              query={"days": days}, response=TRENDS),
        Route("GET", "/api/dashboard/playbooks", history.dashboard_playbooks,
              "Per loaded playbook: suspended or not, adjusted confidence, last fix.", response=PLAYBOOKS),
        Route("GET", "/api/dashboard/backups/{backup_id}", history.dashboard_backup,
              "What rolling this backup back would change: each file restored, unchanged or changed since.",
              response=PREVIEW),
    ]
