"""A playbook suspended for a whole group (a canary failed) until a person resumes it, in PostgreSQL.

    suspensions = Suspensions(fleet)
    suspensions.suspend("orders", "rate-limit-backoff", by="orders-1", reason="canary f-12 rolled back",
                        cause_fix_id="f-12")      # False if it already was: one active row per playbook
    suspensions.active("orders", "rate-limit-backoff")   # Suspension | None (the gate reads this)
    suspensions.resume("orders", "rate-limit-backoff", by="alice")   # `suture resume --fleet`

A partial unique index keeps at most one active suspension per (group, playbook), so two
canaries failing at once record one. Rows read back are bounded (``engine.fleet_values``).
"""

from __future__ import annotations

from dataclasses import dataclass

from suture.engine.fleet_values import as_epoch, clean_text, pg_text

from .fleet_pg import FleetConnection


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspension:
    group: str
    playbook_id: str
    suspended_at: float | None
    suspended_by: str
    reason: str
    cause_fix_id: str


class Suspensions:
    def __init__(self, fleet: FleetConnection) -> None:
        self.fleet = fleet

    def suspend(self, group: str, playbook_id: str, *, by: str, reason: str, cause_fix_id: str | None = None) -> bool:
        """Suspend the playbook for the group; False when it already was."""
        with self.fleet.transaction() as pg:
            cur = pg.execute(
                """INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason, cause_fix_id)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                [pg_text(group), pg_text(playbook_id), pg_text(by), pg_text(reason),
                 None if cause_fix_id is None else pg_text(cause_fix_id)],
            )
            return cur.rowcount == 1

    def resume(self, group: str, playbook_id: str, *, by: str) -> bool:
        """Lift the group's suspension of the playbook; False when it was not suspended.

        The failed canaries behind it are marked ``resumed`` in the same transaction, so the next
        match starts a new canary instead of finding the old failure again."""
        with self.fleet.transaction() as pg:
            cur = pg.execute(
                """UPDATE fleet_suspensions SET resumed_at = clock_timestamp(), resumed_by = %s
                   WHERE grp = %s AND playbook_id = %s AND resumed_at IS NULL""",
                [pg_text(by), pg_text(group), pg_text(playbook_id)],
            )
            pg.execute(
                """UPDATE fleet_canaries SET state = 'resumed', ended_at = coalesce(ended_at, clock_timestamp())
                   WHERE grp = %s AND playbook_id = %s AND state = 'failed'""",
                [pg_text(group), pg_text(playbook_id)],
            )
            return cur.rowcount > 0

    def active(self, group: str, playbook_id: str) -> Suspension | None:
        with self.fleet.transaction() as pg:
            row = pg.execute(
                """SELECT suspended_at, suspended_by, reason, cause_fix_id FROM fleet_suspensions
                   WHERE grp = %s AND playbook_id = %s AND resumed_at IS NULL
                   ORDER BY suspended_at DESC NULLS LAST LIMIT 1""",
                [pg_text(group), pg_text(playbook_id)],
            ).fetchone()
        if row is None:
            return None
        return Suspension(group=group, playbook_id=playbook_id, suspended_at=as_epoch(row[0]),
                          suspended_by=clean_text(row[1]), reason=clean_text(row[2], 1000),
                          cause_fix_id=clean_text(row[3]))
