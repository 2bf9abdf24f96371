"""The outbox: every fix and journal step of the local DuckDB history, copied to the group's PostgreSQL.

The local history stays the source of truth; PostgreSQL gets a copy. What has been copied
is kept locally, in a table of this module's own beside the store's (``fleet_outbox``: per
fix, a hash of the fix row as shipped and the highest journal ``seq`` shipped), so

- with PostgreSQL unreachable nothing is lost: the marks do not move, and the rows are
  found again by the next pass;
- a fix row that changed since it was shipped (its status moved on, it finished) is shipped
  again (an upsert that never rewrites a row PostgreSQL already holds as final);
- a step is identified by (fix id, seq) (``Store.step`` numbers a fix's steps 1, 2, 3 ...);
  it is inserted ``ON CONFLICT DO NOTHING``, so one shipped twice (the marks are written
  after PostgreSQL commits: a crash between the two ships the batch again) is one row.

Delivery is at least once, storage exactly once: each (sidecar, fix) and (sidecar, fix, seq)
is one row in PostgreSQL whatever happens. A step's fencing token is read from its detail
(``{"fence": N}``, see :func:`~suture.engine.fleet_values.fence_of`) into its own column.

One :class:`Shipper` per sidecar, driven by a loop of the sidecar's (``ship_all`` after each
fix step, and every few seconds while the fleet is down). It reads DuckDB through its own
cursor of the store's connection, so it may run on its own thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from suture.engine.fleet_values import fence_of, pg_text
from suture.engine.store import Store

from .fleet_pg import FleetConnection

# the columns of the local `fixes` table that PostgreSQL's fleet_fixes holds (same names)
FIX_COLUMNS = (
    "id", "playbook_id", "playbook_version", "group_key", "status", "decision", "reason", "mode", "started_at",
    "finished_at", "base_confidence", "adjusted_confidence", "threshold", "model", "successes", "failures",
    "fleet_successes", "fleet_failures", "backup_id", "errors_before", "errors_after", "fix_types", "changes",
    "detail", "approved_by", "proposal_id",
)
OUTBOX_DDL = """CREATE TABLE IF NOT EXISTS fleet_outbox (
    fix_id VARCHAR PRIMARY KEY, row_hash VARCHAR NOT NULL, steps_shipped INTEGER NOT NULL)"""
PENDING_SQL = f"""
    WITH last AS (SELECT fix_id, max(seq) AS seq FROM fix_steps GROUP BY fix_id)
    SELECT {", ".join(f"f.{c}" for c in FIX_COLUMNS)}, md5(f::VARCHAR) AS row_hash,
           coalesce(o.steps_shipped, 0) AS steps_shipped, o.row_hash AS shipped_hash
    FROM fixes f LEFT JOIN fleet_outbox o ON o.fix_id = f.id LEFT JOIN last ON last.fix_id = f.id
    WHERE o.fix_id IS NULL OR o.row_hash <> md5(f::VARCHAR) OR coalesce(last.seq, 0) > o.steps_shipped
    ORDER BY f.started_at, f.id LIMIT ?"""
UPSERT_FIX = f"""
    INSERT INTO fleet_fixes (grp, sidecar, {", ".join(FIX_COLUMNS)})
    VALUES (%s, %s, {", ".join("%s::jsonb" if c == "changes" else "%s" for c in FIX_COLUMNS)})
    ON CONFLICT (grp, sidecar, id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in FIX_COLUMNS if c != "id")}, shipped_at = clock_timestamp()
    WHERE fleet_fixes.finished_at IS NULL
    RETURNING (xmax = 0)"""
INSERT_STEP = """
    INSERT INTO fleet_steps (grp, sidecar, fix_id, seq, step, happened_at, detail, fence)
    VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)
    ON CONFLICT DO NOTHING RETURNING 1"""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShipReport:
    """What one pass copied: rows sent, rows PostgreSQL did not hold before, and what is still waiting."""

    fixes: int = 0
    steps: int = 0
    new_fixes: int = 0
    new_steps: int = 0
    pending: int = 0  # fixes with something left to ship after this pass

    def __add__(self, other: ShipReport) -> ShipReport:
        return ShipReport(fixes=self.fixes + other.fixes, steps=self.steps + other.steps,
                          new_fixes=self.new_fixes + other.new_fixes, new_steps=self.new_steps + other.new_steps,
                          pending=other.pending)


class Shipper:
    """Copies this sidecar's fixes and steps to the group's tables, each exactly once."""

    def __init__(self, store: Store, fleet: FleetConnection, *, group: str, sidecar: str, batch: int = 200) -> None:
        self.local = store.con.cursor()  # our own cursor: the shipper may run on its own thread
        self.fleet = fleet
        self.group = group
        self.sidecar = sidecar
        self.batch = batch
        self.local.execute(OUTBOX_DDL)

    def close(self) -> None:
        self.local.close()

    def pending(self) -> int:
        """Fixes with a row or a step not yet in PostgreSQL."""
        return len(self._pending(limit=1_000_000_000))

    def ship_once(self) -> ShipReport:
        """Ship up to ``batch`` fixes with what is new of them; FleetUnavailable (nothing marked) when down."""
        pending = self._pending(limit=self.batch)
        if not pending:
            return ShipReport()
        rows = [dict(zip((*FIX_COLUMNS, "row_hash", "steps_shipped", "shipped_hash"), r, strict=True)) for r in pending]
        fixes = [self._fix_params(fix) for fix in rows if fix["shipped_hash"] != fix["row_hash"]]
        steps = self._steps({str(fix["id"]): int(fix["steps_shipped"]) for fix in rows})
        last = {fix_id: seq for _, _, fix_id, seq, *_ in steps}  # steps come in seq order
        marks = [(fix["id"], fix["row_hash"], last.get(fix["id"], int(fix["steps_shipped"]))) for fix in rows]
        new_fixes = new_steps = 0
        with self.fleet.transaction() as pg, pg.cursor() as cur:
            if fixes:
                cur.executemany(UPSERT_FIX, fixes, returning=True)
                new_fixes = _count_true(cur)
            if steps:
                cur.executemany(INSERT_STEP, steps, returning=True)
                new_steps = _count_true(cur)
        self._mark(marks)
        left = len(self._pending(limit=1)) if len(pending) == self.batch else 0
        return ShipReport(fixes=len(fixes), steps=len(steps), new_fixes=new_fixes, new_steps=new_steps, pending=left)

    def ship_all(self, max_passes: int = 1000) -> ShipReport:
        """Ship until nothing is pending (or ``max_passes`` batches); FleetUnavailable when down."""
        total = ShipReport()
        for _ in range(max_passes):
            report = self.ship_once()
            total = total + report
            if not report.pending:
                break
        return total

    # -- local side --

    def _pending(self, *, limit: int) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.local.execute(PENDING_SQL, [limit]).fetchall()
        return rows

    def _steps(self, after: dict[str, int]) -> list[tuple[Any, ...]]:
        """The steps of these fixes past each one's shipped seq, in seq order, as fleet_steps parameters."""
        rows = self.local.execute(
            """SELECT s.fix_id, s.seq, s.step, s.happened_at, s.detail
               FROM fix_steps s JOIN (SELECT unnest(?) AS fix_id, unnest(?) AS after) p ON p.fix_id = s.fix_id
               WHERE s.seq > p.after ORDER BY s.fix_id, s.seq""",
            [list(after), list(after.values())],
        ).fetchall()
        out = []
        for fix_id, seq, step, happened_at, detail in rows:
            decoded = _json(detail)
            out.append((self.group, self.sidecar, fix_id, int(seq), pg_text(step), _utc(happened_at),
                        json.dumps(decoded), fence_of(decoded)))
        return out

    def _fix_params(self, fix: dict[str, Any]) -> tuple[Any, ...]:
        values = []
        for column in FIX_COLUMNS:
            value = fix[column]
            if column == "changes":
                value = None if value is None else json.dumps(_json(value))
            elif isinstance(value, datetime):
                value = _utc(value)
            elif isinstance(value, str):
                value = pg_text(value)
            values.append(value)
        return (self.group, self.sidecar, *values)

    def _mark(self, marks: Sequence[tuple[Any, ...]]) -> None:
        columns = [list(column) for column in zip(*marks, strict=True)]  # one statement: executemany is slow in DuckDB
        self.local.execute("INSERT OR REPLACE INTO fleet_outbox SELECT unnest(?), unnest(?), unnest(?)", columns)


def _count_true(cur: Any) -> int:
    count = 0
    while True:
        row = cur.fetchone()
        count += bool(row and row[0])
        if not cur.nextset():
            return count


def _utc(value: datetime) -> datetime:
    """DuckDB's naive UTC datetimes, made aware (PostgreSQL stores timestamptz)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _json(text: Any) -> Any:
    """Parsed JSON with every NUL replaced (jsonb refuses \\u0000); text that is not JSON becomes a string."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        value = text
    return _no_nul(value)


def _no_nul(value: Any) -> Any:
    if isinstance(value, str):
        return pg_text(value)
    if isinstance(value, list):
        return [_no_nul(v) for v in value]
    if isinstance(value, dict):
        return {pg_text(str(k)): _no_nul(v) for k, v in value.items()}
    return value
