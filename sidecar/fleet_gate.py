"""The group's say on a fix this sidecar decided to apply, and what the group learns when it ends.

    gate = FleetGate(config.fleet_pg, name=config.name, decisions=connection)   # Fleet.open makes one
    verdict = gate.admit(pb, key, fix_id)     # engine.fleet_admission.FleetVerdict: act | skip | propose | wait
    fence = gate.fence(fix_id)                # scope: fleet: the lease every step re-checks (engine.fix.Fence)
    gate.ended(outcome)                       # release the lease; the canary's row; a failed canary suspends
    gate.keep_up(background)                  # the fleet thread: renew leases and canary rows, retry ends

Admission is one transaction under the (group, playbook) advisory lock (the same lock a capped
lease acquisition takes), so two replicas matching at once see each other: it reads the group's
suspension, the hourly count and this playbook version's canaries, lets
:func:`engine.fleet_admission.plan` decide, takes the lease (``scope: fleet``: on the target's key,
so only one sidecar acts; ``scope: replica``: on this sidecar's own key, so ``max_concurrent``
counts replicas in flight), then claims the canary slot and records the start. A FleetUnavailable
anywhere fails closed (:func:`engine.fleet_admission.unreachable`).

A running canary whose row expired (its sidecar stopped renewing it: killed, paused, cut off) is
resolved from what its sidecar shipped: a final status in fleet_fixes decides it (a failure
suspends the group); without one the slot is abandoned and the next replica becomes the canary.
An end the group could not hear (PostgreSQL down) is kept and retried by the fleet thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from suture.engine.config import FleetConfig
from suture.engine.errors import FleetUnavailable
from suture.engine.fix import Outcome
from suture.engine.fleet_admission import (
    Canary,
    FleetVerdict,
    GroupView,
    canary_end,
    plan,
    unreachable,
    with_lease,
)
from suture.engine.fleet_values import Lease, as_count, clean_text, pg_text
from suture.engine.playbook import Playbook
from suture.engine.status import FINAL

from .fleet_leases import PLAYBOOK_LOCK, Leases, acquire_in, lock_key, release_in
from .fleet_pg import FleetConnection, PgConnection

log = logging.getLogger("suture.fleet")

CANARY_ROWS = 64  # canaries of one playbook version read at admission (the plan needs the first few)

SUSPENSION = """SELECT left(reason, 500) FROM fleet_suspensions
                WHERE grp = %s AND playbook_id = %s AND resumed_at IS NULL LIMIT 1"""
STARTS = """SELECT count(*) FROM fleet_starts
            WHERE grp = %s AND started_at >= clock_timestamp() - interval '1 hour'
              AND started_at <= clock_timestamp() + interval '1 minute'"""  # a row dated ahead was written by no start
EXPIRED = """SELECT c.fix_id, c.sidecar, f.status FROM fleet_canaries c
             LEFT JOIN fleet_fixes f ON f.grp = c.grp AND f.sidecar = c.sidecar AND f.id = c.fix_id
             WHERE c.grp = %s AND c.playbook_id = %s AND c.state = 'running' AND c.expires_at <= clock_timestamp()
             LIMIT 16"""
CANARIES = f"""SELECT left(fix_id, 256), left(sidecar, 256), state FROM fleet_canaries
               WHERE grp = %s AND playbook_id = %s AND playbook_version = %s
               ORDER BY started_at, fix_id LIMIT {CANARY_ROWS}"""
IN_FLIGHT = """SELECT count(*) FROM fleet_leases WHERE grp = %s AND playbook_id = %s AND holder IS NOT NULL
               AND expires_at > clock_timestamp()"""
END_CANARY = """UPDATE fleet_canaries SET state = %s, detail = %s, ended_at = clock_timestamp()
                WHERE grp = %s AND playbook_id = %s AND fix_id = %s AND state IN ('running', 'abandoned')"""
SUSPEND = """INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason, cause_fix_id)
             VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"""


@dataclass(frozen=True, slots=True)
class _Ended:
    playbook_id: str
    fix_id: str
    status: str
    detail: str
    lease: Lease | None
    canary: bool
    interrupted: bool = False


class FleetGate:
    """One sidecar's admissions and ends; ``admit``, ``fence`` and ``ended`` run on the core thread, on the
    decision path's connection; ``keep_up`` on the fleet thread, on the background one."""

    def __init__(self, config: FleetConfig, *, name: str, decisions: FleetConnection) -> None:
        self.config = config
        self.group = config.group
        self.own = name
        self.decisions = decisions
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}  # fix id -> its lease, renewed until the fix ends
        self._canaries: dict[str, str] = {}  # fix id -> playbook id, this sidecar's running canaries
        self._unsent: list[_Ended] = []  # ends the group has not heard yet

    # -- admission --

    def admit(self, pb: Playbook, key: str, fix_id: str) -> FleetVerdict:
        cfg = self.config
        try:
            with self.decisions.transaction() as pg:
                pg.execute(PLAYBOOK_LOCK, [lock_key(self.group, pb.id)])
                view = self._view(pg, pb)
                step = plan(pb.scope, view, canary=cfg.canary, fixes_per_hour=cfg.fixes_per_hour, playbook_id=pb.id)
                if step.action != "act":
                    return step
                lease_key = key if pb.scope == "fleet" else f"{self.own}\x1f{key}"
                got = acquire_in(pg, self.group, pb.id, lease_key, self.own, cfg.lease,
                                 max_concurrent=cfg.max_concurrent)
                verdict = with_lease(step, got)
                if verdict.action != "act" or not isinstance(got, Lease):
                    return verdict
                if verdict.canary:
                    pg.execute(
                        """INSERT INTO fleet_canaries (grp, playbook_id, playbook_version, fix_id, sidecar, state,
                               expires_at)
                           VALUES (%s, %s, %s, %s, %s, 'running', clock_timestamp() + make_interval(secs => %s))""",
                        [self.group, pb.id, pb.digest[:12], fix_id, pg_text(self.own), float(cfg.lease)])
                pg.execute("INSERT INTO fleet_starts (grp, playbook_id, fix_id, sidecar) VALUES (%s, %s, %s, %s)",
                           [self.group, pb.id, fix_id, pg_text(self.own)])
        except FleetUnavailable as exc:
            return unreachable(pb.scope, str(exc))
        with self._lock:
            self._leases[fix_id] = got
            if verdict.canary:
                self._canaries[fix_id] = pb.id
        return verdict

    def _view(self, pg: PgConnection, pb: Playbook, *, resolve: bool = True) -> GroupView:
        row = pg.execute(SUSPENSION, [self.group, pb.id]).fetchone()
        suspended = (clean_text(row[0], 500) or "no reason given") if row is not None else None
        started = pg.execute(STARTS, [self.group]).fetchone()
        canaries: tuple[Canary, ...] = ()
        if pb.scope == "replica" and self.config.canary > 0:
            for fix_id, sidecar, status in pg.execute(EXPIRED, [self.group, pb.id]).fetchall() if resolve else ():
                state = canary_end(status) if status in FINAL else "abandoned"
                self._end_canary(pg, pb.id, str(fix_id), str(sidecar), state, str(status) if status else "",
                                 "its sidecar stopped renewing it")
            canaries = tuple(
                Canary(fix_id=clean_text(f), sidecar=clean_text(s), state=st)
                for f, s, st in pg.execute(CANARIES, [self.group, pb.id, pb.digest[:12]]).fetchall()
                if st in ("running", "succeeded", "failed", "abandoned", "resumed"))
        return GroupView(suspended=suspended, started_last_hour=as_count(started[0] if started else 0),
                         canaries=canaries)

    def _end_canary(self, pg: PgConnection, playbook_id: str, fix_id: str, sidecar: str, state: str, status: str,
                    detail: str) -> None:
        said = f"ended {status}" if status else "no outcome"
        pg.execute(END_CANARY, [state, pg_text(f"{said}: {detail}")[:1000], self.group, playbook_id, fix_id])
        if state == "failed":
            reason = f"canary {fix_id} on {sidecar} {said}: {detail}"
            pg.execute(SUSPEND, [self.group, playbook_id, pg_text(self.own), pg_text(reason)[:1000], pg_text(fix_id)])

    # -- while a fix runs --

    def fence(self, fix_id: str, pb: Playbook) -> LeaseFence | None:
        """The lease a ``scope: fleet`` fix acts under (a replica's lease only counts max_concurrent)."""
        with self._lock:
            lease = self._leases.get(fix_id)
        if lease is None or pb.scope != "fleet":
            return None
        return LeaseFence(Leases(self.decisions), lease)

    def ended(self, outcome: Outcome, *, interrupted: bool = False) -> None:
        """A fix reached its final state: the group hears it now, or from the fleet thread once it answers.

        ``interrupted``: it ended because this sidecar is stopping (a deploy, a restart), which says nothing
        about the fix: a canary's slot is freed (``abandoned``) instead of suspending the group."""
        with self._lock:
            lease = self._leases.pop(outcome.fix_id, None)
            canary = self._canaries.pop(outcome.fix_id, None) is not None
        if lease is None and not canary:
            return
        end = _Ended(outcome.playbook_id, outcome.fix_id, outcome.status, outcome.detail, lease, canary, interrupted)
        try:
            self._send(self.decisions, end)
        except FleetUnavailable as exc:
            log.warning("fleet        %s ended %s; the group hears it when it answers: %s", end.fix_id, end.status, exc)
            with self._lock:
                self._unsent.append(end)

    def _send(self, conn: FleetConnection, end: _Ended) -> None:
        with conn.transaction() as pg:
            if end.lease is not None:
                release_in(pg, end.lease)
            if end.canary:
                state = "abandoned" if end.interrupted else canary_end(end.status)
                self._end_canary(pg, end.playbook_id, end.fix_id, self.own, state, end.status,
                                 end.detail)

    # -- the fleet thread --

    def keep_up(self, conn: FleetConnection) -> None:
        """Renew the leases and canary rows of the fixes still running; send the ends not heard yet."""
        with self._lock:
            unsent, self._unsent = self._unsent, []
            leases = list(self._leases.values())
            canaries = list(self._canaries)
        try:
            while unsent:
                self._send(conn, unsent[0])
                unsent.pop(0)
            renewing = Leases(conn)
            for lease in leases:
                if renewing.renew(lease, self.config.lease) is None:
                    log.warning("fleet        lease on %s (token %d) expired before it was renewed",
                                lease.playbook_id, lease.token)
            if canaries:
                with conn.transaction(atomic=False) as pg:
                    pg.execute("""UPDATE fleet_canaries SET expires_at = clock_timestamp() + make_interval(secs => %s)
                                  WHERE grp = %s AND sidecar = %s AND fix_id = ANY(%s) AND state = 'running'""",
                               [float(self.config.lease), self.group, pg_text(self.own), canaries])
        finally:
            if unsent:
                with self._lock:
                    self._unsent[:0] = unsent

    # -- suture explain --

    def explain(self, conn: FleetConnection, pb: Playbook) -> dict[str, Any]:
        """What the group would say now, and the numbers behind it (read only: no lock, no lease taken)."""
        cfg = self.config
        out: dict[str, Any] = {"group": self.group, "scope": pb.scope, "canary": cfg.canary,
                               "max_concurrent": cfg.max_concurrent, "fixes_per_hour": cfg.fixes_per_hour,
                               "lease_seconds": cfg.lease}
        try:
            with conn.transaction() as pg:
                view = self._view(pg, pb, resolve=False)
                in_flight = as_count((pg.execute(IN_FLIGHT, [self.group, pb.id]).fetchone() or [0])[0])
        except FleetUnavailable as exc:
            return out | {"reachable": False, "error": str(exc), "would": unreachable(pb.scope, str(exc)).detail()}
        step = plan(pb.scope, view, canary=cfg.canary, fixes_per_hour=cfg.fixes_per_hour, playbook_id=pb.id)
        if step.action == "act" and in_flight >= cfg.max_concurrent:
            step = FleetVerdict(action="wait", reason=f"waiting: {in_flight} of at most {cfg.max_concurrent} fixes "
                                                      "of this playbook in flight across the group")
        return out | {"reachable": True, "in_flight": in_flight, "started_last_hour": view.started_last_hour,
                      "suspended": view.suspended,
                      "canaries": [{"fix_id": c.fix_id, "sidecar": c.sidecar, "state": c.state} for c in view.canaries],
                      "would": step.detail()}

    @property
    def renew_every(self) -> float | None:
        """How often ``keep_up`` must run while fixes hold leases (a third of the lease); None: nothing held."""
        with self._lock:
            busy = bool(self._leases or self._canaries or self._unsent)
        return self.config.lease / 3 if busy else None


@dataclass(frozen=True, slots=True)
class LeaseFence:
    """engine.fix.Fence over a lease in PostgreSQL: every step of the fix asks the server."""

    leases: Leases
    lease: Lease

    @property
    def token(self) -> int:
        return self.lease.token

    def lost(self) -> str | None:
        try:
            return self.leases.lost(self.lease)
        except FleetUnavailable as exc:
            return f"the fleet cannot confirm the lease ({exc})"
