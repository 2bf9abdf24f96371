"""Pooled learning from PostgreSQL: the group's outcomes per playbook, the other backend of GroupOutcomes.

    pooled = PgFleetHistory(fleet, group="orders", own="orders-1")
    pooled.refresh()                     # a sidecar loop calls this (FleetUnavailable is kept in .error)
    pooled.outcomes("rate-limit-backoff")  # (successes, failures) of the *other* sidecars: no wait

Like :class:`~suture.engine.fleet.FleetHistory` (the Parquet folder), it counts the other
sidecars' applied fixes only (``LiveHistory`` adds the local ones from DuckDB), and a failed
refresh keeps the last good counts. The rows were written by other sidecars: each one's
contribution to a playbook is capped (``per_sidecar``), so one buggy or hostile sidecar that
writes a million "succeeded" rows moves confidence no more than ``per_sidecar`` outcomes would;
playbook ids that no playbook could have are ignored.
"""

from __future__ import annotations

import re

from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import as_count, clean_text
from suture.engine.status import FAILURE, SUCCESS, sql_list

from .fleet_pg import FleetConnection

PLAYBOOK_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")  # what schemas/playbook.schema.json allows, bounded
PER_SIDECAR = 1000

OUTCOMES = f"""
    SELECT playbook_id, sum(least(s, %(cap)s))::bigint, sum(least(f, %(cap)s))::bigint,
           array_agg(DISTINCT sidecar ORDER BY sidecar)
    FROM (SELECT playbook_id, sidecar,
                 count(*) FILTER (WHERE status IN {sql_list(SUCCESS)}) AS s,
                 count(*) FILTER (WHERE status IN {sql_list(FAILURE)}) AS f
          FROM fleet_fixes
          WHERE grp = %(grp)s AND sidecar <> %(own)s AND decision = 'apply' AND length(playbook_id) <= 128
          GROUP BY playbook_id, sidecar) AS per_sidecar
    GROUP BY playbook_id"""


class PgFleetHistory:
    """The other sidecars of ``group``: their outcomes per playbook, as last read from PostgreSQL."""

    def __init__(self, fleet: FleetConnection, *, group: str, own: str, per_sidecar: int = PER_SIDECAR) -> None:
        self.fleet = fleet
        self.group = group
        self.own = own
        self.per_sidecar = per_sidecar
        self.counts: dict[str, tuple[int, int]] = {}
        self.sidecars: list[str] = []
        self.error = ""

    def refresh(self) -> None:
        try:
            with self.fleet.transaction() as pg:
                rows = pg.execute(OUTCOMES, {"grp": self.group, "own": self.own, "cap": self.per_sidecar}).fetchall()
        except FleetUnavailable as exc:  # keep the last good counts; the state says the fleet is down
            self.error = str(exc)
            return
        counts: dict[str, tuple[int, int]] = {}
        sidecars: set[str] = set()
        for playbook_id, successes, failures, names in rows:
            if isinstance(playbook_id, str) and PLAYBOOK_ID.match(playbook_id):
                counts[playbook_id] = (as_count(successes), as_count(failures))
            sidecars.update(clean_text(n, 64) for n in (names if isinstance(names, list) else ()))
        self.counts = counts
        self.sidecars = sorted(sidecars)
        self.error = ""

    def outcomes(self, playbook_id: str) -> tuple[int, int]:
        return self.counts.get(playbook_id, (0, 0))
