"""The named reads of the history: what the API, the dashboard, the CLI and the executor ask of it.

Each read is a method of :class:`~.store.Store` (through :class:`Reads`, its base) with typed
parameters, so no SQL lives outside the store and each question is asked in one place. Times
go in as epoch seconds and come out as stored (naive UTC datetimes). Rows that carry a fix's
``changes`` come out with them decoded (a list), whatever asks.

A person's own SQL is not here: :meth:`Store.user_query` runs it read-only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from .errors import StoreError

# What `suture history` shows without --sql. It is sent as a person's query (to the running
# sidecar's API, or run read-only on the file), so both paths answer the same.
RECENT_FIXES_SQL = """SELECT id, playbook_id, status, decision, round(adjusted_confidence, 1) AS confidence,
       backup_id, errors_before, errors_after, started_at, finished_at
FROM fixes ORDER BY started_at DESC LIMIT 20"""
UNAPPROVED = "p.status = 'proposed' AND NOT EXISTS (SELECT 1 FROM fixes a WHERE a.proposal_id = p.id)"
# the newest of a fix's validation verdicts (a fix is judged once; a crash may leave a second row)
LAST_VERDICT = """SELECT fix_id, verdict, reason FROM validations
                  QUALIFY row_number() OVER (PARTITION BY fix_id ORDER BY judged_at DESC) = 1"""
# a succeeded fix's `planned` step lists the files it writes, each with its post-image
PLANNED_OF_SUCCEEDED = """SELECT f.id, s.detail FROM fix_steps s JOIN fixes f ON f.id = s.fix_id
                          WHERE s.step = 'planned' AND f.status = 'succeeded'"""


def ts(epoch: float | None) -> datetime | None:
    """Epoch seconds -> naive UTC datetime, as stored."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeTally:
    """Applied fixes that ended, of one combination of fix types (``adjust,restart``; '' for none)."""

    fix_types: str
    total: int
    succeeded: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatedFix:
    """A fix that succeeded, and what it wrote: file (as the playbook names it) -> sha256 of its post-image."""

    fix_id: str
    files: Mapping[str, str]


class Reads:
    """The history's connection and the questions asked of it (the base of :class:`~.store.Store`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None) -> None:
        self.con = con
        self.path = path

    def query(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        """Our own SQL (never a person's: see ``user_query``), with its parameters."""
        try:
            cur = self.con.execute(sql, list(params or []))
            columns = tuple(d[0] for d in cur.description or ())
            return QueryResult(columns=columns, rows=tuple(cur.fetchall()))
        except duckdb.Error as exc:
            raise StoreError(str(exc).splitlines()[0]) from exc

    # -- one fix --

    def fix(self, fix_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM fixes WHERE id = ?", [fix_id]).dicts()
        return rows[0] if rows else None

    def steps(self, fix_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT step, happened_at, detail FROM fix_steps WHERE fix_id = ? ORDER BY seq", [fix_id]).dicts()

    def unfinished(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM fixes WHERE finished_at IS NULL ORDER BY started_at").dicts()

    def was_approved(self, proposal_id: str) -> bool:
        """Whether a fix was started from this proposal already."""
        return bool(self.query("SELECT 1 FROM fixes WHERE proposal_id = ?", [proposal_id]).rows)

    def approvals_of(self, proposal_id: str) -> list[tuple[str, str | None, str]]:
        """(fix id, approved by, status) of every fix started from this proposal, oldest first."""
        rows = self.query("SELECT id, approved_by, status FROM fixes WHERE proposal_id = ? ORDER BY started_at",
                          [proposal_id]).rows
        return [(str(fid), by, str(st)) for fid, by, st in rows]

    # -- lists of fixes --

    def recent_fixes(self, *, limit: int, status: str | None = None, playbook: str | None = None) -> list[dict[str, Any]]:
        """Fixes newest first, of one status and playbook if named; ``changes`` decoded."""
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if playbook:
            where.append("playbook_id = ?")
            params.append(playbook)
        sql = "SELECT * FROM fixes" + (" WHERE " + " AND ".join(where) if where else "")
        return _decoded(self.query(sql + " ORDER BY started_at DESC LIMIT ?", [*params, limit]).dicts())

    def pending_proposals(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Proposals nobody approved yet, newest first; ``changes`` decoded."""
        rows = self.query(f"SELECT p.* FROM fixes p WHERE {UNAPPROVED} ORDER BY p.started_at DESC"
                          + (" LIMIT ?" if limit is not None else ""), [] if limit is None else [limit])
        return _decoded(rows.dicts())

    def timeline(self, *, since: float, playbook: str | None, outcome: str | None, limit: int) -> list[dict[str, Any]]:
        """Fixes started since ``since``, newest first, with their last verdict, duration and whether approved.

        ``outcome`` is a status, or ``in_progress`` for fixes not finished; ``changes`` decoded.
        """
        rows = self.query(
            f"""SELECT f.id, f.playbook_id, f.group_key, f.status, f.decision, f.reason, f.mode, f.started_at,
                       f.finished_at, f.base_confidence, f.adjusted_confidence, f.threshold, f.successes,
                       f.failures, f.backup_id, f.errors_before, f.errors_after, f.fix_types, f.changes, f.detail,
                       f.approved_by, f.proposal_id, v.verdict, v.reason AS validation_reason,
                       epoch(f.finished_at) - epoch(f.started_at) AS seconds,
                       EXISTS (SELECT 1 FROM fixes a WHERE a.proposal_id = f.id) AS approved
                FROM fixes f LEFT JOIN ({LAST_VERDICT}) v ON v.fix_id = f.id
                WHERE f.started_at >= ? AND (? IS NULL OR f.playbook_id = ?)
                  AND (? IS NULL OR f.status = ? OR (? = 'in_progress' AND f.finished_at IS NULL))
                ORDER BY f.started_at DESC LIMIT ?""",
            [ts(since), playbook, playbook, outcome, outcome, outcome, limit])
        return _decoded(rows.dicts())

    def fix_summaries(self) -> QueryResult:
        """Every fix in order: confidences, backup, errors before and after, seconds taken (the demo's table)."""
        return self.query(
            """SELECT playbook_id, status, round(base_confidence, 1) AS base,
                      round(adjusted_confidence, 1) AS adjusted, threshold, backup_id,
                      errors_before, errors_after,
                      round(epoch(finished_at) - epoch(started_at), 1) AS seconds
               FROM fixes ORDER BY started_at""")

    # -- counts --

    def playbook_ids(self) -> list[str]:
        """Every playbook with a fix in the history, sorted."""
        return [name for (name,) in self.query("SELECT DISTINCT playbook_id FROM fixes ORDER BY 1").rows]

    def statuses(self) -> list[str]:
        """Every status a fix in the history has, sorted."""
        return [status for (status,) in self.query("SELECT DISTINCT status FROM fixes ORDER BY 1").rows]

    def count_by_status(self) -> dict[str, int]:
        """Fixes per status, in the order of the status names."""
        rows = self.query("SELECT status, count(*) FROM fixes GROUP BY status ORDER BY status").rows
        return {status: int(n) for status, n in rows}

    def applied_by_type(self) -> list[TypeTally]:
        """Applied fixes that ended, and how many succeeded, per combination of fix types."""
        rows = self.query(
            """SELECT fix_types, count(*) AS n, count(*) FILTER (WHERE status = 'succeeded') AS ok
               FROM fixes WHERE decision = 'apply' AND finished_at IS NOT NULL GROUP BY fix_types""").rows
        return [TypeTally(fix_types=t or "", total=int(n), succeeded=int(s)) for t, n, s in rows]

    def last_fix_by_playbook(self) -> dict[str, tuple[str, datetime]]:
        """Per playbook: the status of its newest fix, and when that fix started."""
        rows = self.query("SELECT playbook_id, arg_max(status, started_at), max(started_at) FROM fixes "
                          "GROUP BY playbook_id").rows
        return {pb: (status, at) for pb, status, at in rows}

    # -- trends (each since ``since``) --

    def fixes_per_day(self, *, since: float) -> list[dict[str, Any]]:
        """``day`` (YYYY-MM-DD, UTC), ``status``, ``fixes``: per day and status."""
        return self.query(
            """SELECT strftime(date_trunc('day', started_at), '%Y-%m-%d') AS day, status, count(*) AS fixes
               FROM fixes WHERE started_at >= ? GROUP BY ALL ORDER BY day, status""", [ts(since)]).dicts()

    def success_by_playbook(self, *, since: float) -> list[dict[str, Any]]:
        """Per playbook, of its applied fixes that ended: ``fixes``, ``succeeded``, ``success_rate`` and
        ``mttr_s`` (the mean seconds of the successes), the busiest first."""
        return self.query(
            """SELECT playbook_id, count(*) AS fixes, count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                      round(avg((status = 'succeeded')::INT), 4) AS success_rate,
                      round(avg(epoch(finished_at) - epoch(started_at)) FILTER (WHERE status = 'succeeded'), 1)
                          AS mttr_s
               FROM fixes WHERE decision = 'apply' AND finished_at IS NOT NULL AND started_at >= ?
               GROUP BY playbook_id ORDER BY fixes DESC, playbook_id""", [ts(since)]).dicts()

    def recoveries(self, *, since: float) -> list[dict[str, Any]]:
        """Each succeeded fix in order (at most 2000): ``playbook_id``, ``at``, ``seconds`` it took."""
        return self.query(
            """SELECT playbook_id, started_at AS at, round(epoch(finished_at) - epoch(started_at), 1) AS seconds
               FROM fixes WHERE status = 'succeeded' AND started_at >= ? ORDER BY started_at LIMIT 2000""",
            [ts(since)]).dicts()

    def confidence_history(self, *, since: float) -> list[dict[str, Any]]:
        """Each decision in order (at most 5000): ``playbook_id``, ``at``, ``adjusted`` confidence, ``threshold``."""
        return self.query(
            """SELECT playbook_id, started_at AS at, round(adjusted_confidence, 2) AS adjusted, threshold
               FROM fixes WHERE adjusted_confidence IS NOT NULL AND started_at >= ? ORDER BY started_at
               LIMIT 5000""", [ts(since)]).dicts()

    # -- what succeeded fixes wrote (the executor's last good version, backup retention) --

    def last_validated_files(self, *, limit: int = 200) -> list[ValidatedFix]:
        """The newest ``limit`` succeeded fixes, newest finish first, each with the post-image of each file."""
        rows = self.query(
            PLANNED_OF_SUCCEEDED + " ORDER BY f.finished_at DESC LIMIT ?", [limit]).rows
        return [ValidatedFix(fix_id=fix_id, files={e["path"]: e["post"] for e in json.loads(detail).get("files", [])})
                for fix_id, detail in rows]

    def validated_post_images(self) -> frozenset[str]:
        """The sha256 of every post-image a succeeded fix wrote (a later `restore` may need each one)."""
        return frozenset(e["post"] for _, detail in self.query(PLANNED_OF_SUCCEEDED).rows
                         for e in json.loads(detail).get("files", []))



def _decoded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["changes"] = json.loads(row["changes"]) if row.get("changes") else []
    return rows
