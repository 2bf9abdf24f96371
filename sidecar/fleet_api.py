"""The fleet's two routes: what the group looks like, and a person lifting a group's suspension.

    GET  /api/fleet           the connection's state and the group as the fleet worker last read it
                              (sidecar/fleet_view.py); 404 without fleet: in the config
    POST /api/fleet/resume    {"playbook": ID, "by": NAME} with the API token: Suspensions.resume for the group

The GET answers from the snapshot (it never waits on PostgreSQL: the worker reads the group
every pass). The POST is a person's command and goes to PostgreSQL on the request's thread,
never on the core's, through the sidecar's decision connection (bounded waits; a fleet that
does not answer is 503).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import FleetState, clean_text

from .routes import ID, ApiError, Route, iso

if TYPE_CHECKING:
    from .fleet_worker import Fleet
    from .public import PublicSidecar

NO_FLEET = "this sidecar is in no group: its config has no fleet: section (see docs/fleet.md)"
SNAPSHOT_TIMEOUT = 3.0

S, NS, N, INT, BOOL = ({"type": "string"}, {"type": ["string", "null"]}, {"type": ["number", "null"]},
                       {"type": "integer"}, {"type": "boolean"})


def _items(**properties: Any) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "object", "required": list(properties), "properties": properties}}


STATE = {"type": ["object", "null"], "required": ["connected", "since", "last_error", "failures", "next_attempt_at"],
         "properties": {"connected": BOOL, "since": NS, "last_error": S, "failures": INT, "next_attempt_at": NS}}
OVERVIEW = {
    "type": ["object", "null"],
    "required": ["group", "own", "at", "replicas", "leases", "canaries", "suspensions", "outcomes", "cut", "errors"],
    "properties": {
        "group": S, "own": S, "at": NS,
        "replicas": _items(sidecar=S, version=S, playbooks=INT, in_flight=INT, started_at=NS, seen_at=NS, age=N,
                           stale=BOOL, own=BOOL),
        "leases": _items(playbook_id=S, key=S, holder=S, token=INT, acquired_at=NS, expires_at=NS),
        "canaries": _items(playbook_id=S, version=S, fix_id=S, sidecar=S, state=S, detail=S, started_at=NS,
                           ended_at=NS, expired=BOOL),
        "suspensions": _items(playbook_id=S, reason=S, by=S, since=NS, cause_fix_id=S),
        "outcomes": _items(playbook_id=S, successes=INT, failures=INT, rate=N, sidecars=INT, last_finished_at=NS),
        "cut": {"type": "array", "items": S}, "errors": {"type": "array", "items": S},
    },
}
FLEET = {"type": "object", "required": ["group", "name", "state", "overview"],
         "properties": {"group": S, "name": S, "state": STATE, "overview": OVERVIEW}}
RESUME_BODY = {"type": "object", "required": ["playbook"], "additionalProperties": False,
               "properties": {"playbook": {"type": "string", "pattern": ID, "maxLength": 128},
                              "by": {"type": "string", "maxLength": 128}}}
RESUMED = {"type": "object", "required": ["playbook_id", "group", "changed", "by"],
           "properties": {"playbook_id": S, "group": S, "changed": BOOL, "by": S}}


class FleetApi:
    def __init__(self, sidecar: PublicSidecar) -> None:
        self.sidecar = sidecar

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/fleet", self.fleet,
                  "The group on PostgreSQL: the connection's state, replicas, leases held, canaries, suspensions and"
                  " the success rate per playbook, as the fleet worker last read them (404 without fleet:).",
                  response=FLEET),
            Route("POST", "/api/fleet/resume", self.fleet_resume,
                  "Lift the group's suspension of a playbook (a failed canary), recorded with who; changed is false"
                  " when it was not suspended; 503 when the group's PostgreSQL does not answer.",
                  needs_token=True, body=RESUME_BODY, response=RESUMED),
        ]

    def fleet(self) -> dict[str, Any]:
        config = self.sidecar.config
        if config.fleet_pg is None:
            raise ApiError(HTTPStatus.NOT_FOUND, NO_FLEET)
        now = self.sidecar.snapshot(timeout=SNAPSHOT_TIMEOUT)
        overview = now.fleet_overview
        return {"group": config.fleet_pg.group, "name": config.name, "state": state_json(now.fleet),
                "overview": overview.as_json() if overview is not None else None}

    def fleet_resume(self, body: dict[str, Any]) -> dict[str, Any]:
        fleet = self._fleet()
        playbook, by, group = body["playbook"], body.get("by") or "api", fleet.config.group
        try:
            changed = fleet.suspensions.resume(group, playbook, by=by)
        except FleetUnavailable as exc:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, f"the group's suspension is unchanged: {exc}",
                           {"Retry-After": "5"}) from None
        if changed:
            self.sidecar.emit("fleet_resumed", f"{playbook}: resumed for group {group} by {by}", playbook_id=playbook,
                              group=group, by=by)
        return {"playbook_id": playbook, "group": group, "changed": changed, "by": by}

    def _fleet(self) -> Fleet:
        fleet = self.sidecar.group  # None until the sidecar has opened it
        if self.sidecar.config.fleet_pg is None:
            raise ApiError(HTTPStatus.NOT_FOUND, NO_FLEET)
        if fleet is None:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "the sidecar has not opened its fleet yet",
                           {"Retry-After": "5"})
        return fleet


def state_json(state: FleetState | None) -> dict[str, Any] | None:
    """The connection's state; its last error is the server's text, so it is cleaned like a row."""
    if state is None:
        return None
    return {"connected": state.connected, "since": iso(state.since), "last_error": clean_text(state.last_error, 500),
            "failures": state.failures, "next_attempt_at": iso(state.next_attempt_at)}
