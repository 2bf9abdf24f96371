"""The DuckDB history: fixes, their journal of steps, and what learning reads back.

One process writes the file (the sidecar); the CLI opens it read-only when the
sidecar is not running. Migrations are numbered and applied in order at
open; ``schema_version`` records each. Times are stored as UTC TIMESTAMPs.

A fix row is inserted when a playbook fires and updated as the fix moves on;
its final ``status`` is written once (``finished_at IS NULL`` guards every
update), and ``fix_steps`` is append-only: the journal that start-up recovery
reads.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from .decide import Decision, Gate, Outcomes
from .errors import StoreError
from .sql import SqlRefused, check_query

FINAL = ("succeeded", "rolled_back", "failed", "proposed", "shadow", "conflict", "exhausted", "inconclusive", "skipped")
SUCCESS = ("succeeded",)
FAILURE = ("rolled_back", "failed", "inconclusive")

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "fixes and their journal",
        """
        CREATE TABLE fixes (
            id VARCHAR PRIMARY KEY,
            playbook_id VARCHAR NOT NULL,
            playbook_version VARCHAR,
            group_key VARCHAR NOT NULL DEFAULT '',
            status VARCHAR NOT NULL,
            decision VARCHAR NOT NULL,
            reason VARCHAR,
            mode VARCHAR,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            base_confidence DOUBLE,
            adjusted_confidence DOUBLE,
            threshold DOUBLE,
            model VARCHAR,
            successes INTEGER,
            failures INTEGER,
            fleet_successes INTEGER,
            fleet_failures INTEGER,
            backup_id VARCHAR,
            errors_before INTEGER,
            errors_after INTEGER,
            fix_types VARCHAR,
            changes JSON,
            detail VARCHAR,
            approved_by VARCHAR,
            proposal_id VARCHAR
        );
        CREATE TABLE fix_steps (
            fix_id VARCHAR NOT NULL,
            seq INTEGER NOT NULL,
            step VARCHAR NOT NULL,
            happened_at TIMESTAMP NOT NULL,
            detail JSON
        );
        """,
    ),
    (
        2,
        "suspensions",
        """
        CREATE TABLE suspensions (
            playbook_id VARCHAR NOT NULL,
            suspended_at TIMESTAMP NOT NULL,
            reason VARCHAR NOT NULL,
            resumed_at TIMESTAMP,
            resumed_by VARCHAR
        );
        """,
    ),
    (
        3,
        "validations, backups, proposals",
        """
        CREATE TABLE validations (
            fix_id VARCHAR NOT NULL,
            opened_at TIMESTAMP NOT NULL,
            judged_at TIMESTAMP NOT NULL,
            verdict VARCHAR NOT NULL,
            reason VARCHAR,
            errors_after INTEGER,
            measured JSON
        );
        CREATE TABLE backups (
            id VARCHAR NOT NULL,
            fix_id VARCHAR NOT NULL,
            playbook_id VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            files JSON NOT NULL
        );
        CREATE VIEW proposals AS
            SELECT p.id, p.playbook_id, p.group_key, p.started_at AS proposed_at, p.adjusted_confidence,
                   p.threshold, p.reason, p.changes, a.id AS approved_fix_id, a.approved_by, a.status AS approved_status
            FROM fixes p LEFT JOIN fixes a ON a.proposal_id = p.id
            WHERE p.status = 'proposed';
        """,
    ),
)


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


class Store:
    """The one writer of the history file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None) -> None:
        self.con = con
        self.path = path

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> Store:
        try:
            if not read_only:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # no file or network access beyond this file: user SQL cannot read /etc/passwd,
            # COPY out, ATTACH or INSTALL (exports go through a separate in-memory instance)
            con = duckdb.connect(str(path), read_only=read_only, config={"enable_external_access": False})
        except duckdb.IOException as exc:
            message = str(exc)
            if "lock" in message.lower():
                raise StoreError(
                    f"{path} is held by a running sidecar (DuckDB allows one process); "
                    "ask the sidecar through its API instead"
                ) from exc
            raise StoreError(f"cannot open {path}: {message}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        store = cls(con, path)
        if not read_only:
            store.migrate()
            with contextlib.suppress(OSError):
                path.chmod(0o600)
        return store

    def close(self) -> None:
        self.con.close()

    # -- schema --

    def version(self) -> int:
        exists = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        row = self.con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> list[int]:
        """Apply every migration newer than the file; return the versions applied."""
        applied = []
        try:
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, name VARCHAR, applied_at TIMESTAMP)"
            )
            current = self.version()
            for version, name, sql in MIGRATIONS:
                if version <= current:
                    continue
                self.con.execute("BEGIN")
                self.con.execute(sql)
                self.con.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)", [version, name, datetime.now(UTC).replace(tzinfo=None)]
                )
                self.con.execute("COMMIT")
                applied.append(version)
        except duckdb.Error as exc:
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise StoreError(f"migrating {self.path}: {exc}") from exc
        return applied

    # -- writing a fix's life --

    def begin_fix(
        self,
        fix_id: str,
        decision: Decision,
        *,
        status: str,
        playbook_version: str,
        fix_types: Sequence[str],
        errors_before: int | None,
        proposal_id: str | None = None,
        approved_by: str | None = None,
    ) -> None:
        d = decision
        self._exec(
            """INSERT INTO fixes (id, playbook_id, playbook_version, group_key, status, decision, reason, mode,
                   started_at, base_confidence, adjusted_confidence, threshold, model, successes, failures,
                   fleet_successes, fleet_failures, errors_before, fix_types, proposal_id, approved_by)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                fix_id, d.playbook_id, playbook_version, d.key, status, d.verdict, d.reason, d.mode,
                ts(d.decided_at), d.base_confidence, d.adjusted_confidence, d.threshold, d.model,
                d.successes, d.failures, d.fleet_successes, d.fleet_failures, errors_before,
                ",".join(fix_types), proposal_id, approved_by,
            ],
        )

    def step(self, fix_id: str, step: str, at: float, detail: dict[str, Any] | None = None) -> None:
        """Append one journal step (committed before the caller takes the next)."""
        self._exec(
            """INSERT INTO fix_steps
               SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ? FROM fix_steps WHERE fix_id = ?""",
            [fix_id, step, ts(at), json.dumps(detail or {}, default=str), fix_id],
        )

    def update(self, fix_id: str, **fields: Any) -> None:
        """Set columns of an unfinished fix (status moves on; final rows are never rewritten)."""
        if not fields:
            return
        cols = ", ".join(f"{name} = ?" for name in fields)
        values = [json.dumps(v) if name == "changes" else v for name, v in fields.items()]
        self._exec(f"UPDATE fixes SET {cols} WHERE id = ? AND finished_at IS NULL", [*values, fix_id])

    def finish(self, fix_id: str, status: str, at: float, *, detail: str = "", errors_after: int | None = None) -> None:
        if status not in FINAL:
            raise StoreError(f"{status!r} is not a final status")
        self._exec(
            """UPDATE fixes SET status = ?, finished_at = ?, detail = ?, errors_after = coalesce(?, errors_after)
               WHERE id = ? AND finished_at IS NULL""",
            [status, ts(at), detail, errors_after, fix_id],
        )
        self.step(fix_id, status, at, {"detail": detail} if detail else None)

    def record_validation(self, fix_id: str, *, opened_at: float, judged_at: float, verdict: str, reason: str,
                          errors_after: int | None, measured: dict[str, Any]) -> None:
        self._exec("INSERT INTO validations VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [fix_id, ts(opened_at), ts(judged_at), verdict, reason, errors_after,
                    json.dumps(measured, default=str)])

    def record_backup(self, backup_id: str, fix_id: str, playbook_id: str, created_at: float,
                      files: list[dict[str, Any]]) -> None:
        self._exec("INSERT INTO backups VALUES (?, ?, ?, ?, ?)",
                   [backup_id, fix_id, playbook_id, ts(created_at), json.dumps(files)])

    # -- reading --

    def fix(self, fix_id: str) -> dict[str, Any] | None:
        result = self.query("SELECT * FROM fixes WHERE id = ?", [fix_id])
        rows = result.dicts()
        return rows[0] if rows else None

    def steps(self, fix_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT step, happened_at, detail FROM fix_steps WHERE fix_id = ? ORDER BY seq", [fix_id]).dicts()

    def unfinished(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM fixes WHERE finished_at IS NULL ORDER BY started_at").dicts()

    def outcomes(self, playbook_id: str) -> Outcomes:
        row = self.con.execute(
            f"""SELECT count(*) FILTER (WHERE status IN {_sql_list(SUCCESS)}),
                       count(*) FILTER (WHERE status IN {_sql_list(FAILURE)})
                FROM fixes WHERE playbook_id = ? AND decision = 'apply'""",
            [playbook_id],
        ).fetchone()
        assert row is not None
        return Outcomes(successes=int(row[0]), failures=int(row[1]))

    def gate(self, playbook_id: str, key: str, now: float) -> Gate:
        """Cooldown, backoff, in-flight and suspension state for one playbook and key."""
        in_flight = self.con.execute(
            "SELECT count(*) FROM fixes WHERE playbook_id = ? AND group_key = ? AND finished_at IS NULL",
            [playbook_id, key],
        ).fetchone()
        last = self.con.execute(
            """SELECT max(started_at) FROM fixes WHERE playbook_id = ? AND group_key = ?
               AND decision IN ('apply', 'propose', 'shadow')""",
            [playbook_id, key],
        ).fetchone()
        resumed = self.con.execute(
            "SELECT max(resumed_at) FROM suspensions WHERE playbook_id = ?", [playbook_id]
        ).fetchone()
        since = resumed[0] if resumed and resumed[0] is not None else datetime(1970, 1, 1)
        statuses = self.con.execute(
            """SELECT status FROM fixes WHERE playbook_id = ? AND group_key = ? AND decision = 'apply'
               AND finished_at IS NOT NULL AND finished_at > ? ORDER BY finished_at DESC LIMIT 16""",
            [playbook_id, key, since],
        ).fetchall()
        consecutive = 0  # failures in a row since the last success (a person's resume starts afresh)
        for (status,) in statuses:
            if status in SUCCESS:
                break
            if status in FAILURE:
                consecutive += 1
        hour = self.con.execute(
            "SELECT count(*) FROM fixes WHERE decision = 'apply' AND started_at >= ?", [ts(now - 3600)]
        ).fetchone()
        suspended = self.suspension(playbook_id)
        return Gate(
            suspended=suspended is not None,
            suspended_reason=suspended["reason"] if suspended else "",
            in_flight=bool(in_flight and in_flight[0]),
            last_started_at=epoch(last[0]) if last and last[0] else None,
            consecutive_failures=consecutive,
            fixes_last_hour=int(hour[0]) if hour else 0,
        )

    # -- suspensions --

    def failures_since(self, playbook_id: str, since: float) -> int:
        row = self.con.execute(
            f"""SELECT count(*) FROM fixes WHERE playbook_id = ? AND decision = 'apply'
                AND status IN {_sql_list(FAILURE)} AND finished_at >= ?""",
            [playbook_id, ts(since)],
        ).fetchone()
        return int(row[0]) if row else 0

    def suspension(self, playbook_id: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM suspensions WHERE playbook_id = ? AND resumed_at IS NULL ORDER BY suspended_at DESC LIMIT 1",
            [playbook_id],
        ).dicts()
        return rows[0] if rows else None

    def suspend(self, playbook_id: str, at: float, reason: str) -> bool:
        """Suspend a playbook until a person resumes it; False if it already was."""
        if self.suspension(playbook_id) is not None:
            return False
        self._exec("INSERT INTO suspensions (playbook_id, suspended_at, reason) VALUES (?, ?, ?)",
                   [playbook_id, ts(at), reason])
        return True

    def resume(self, playbook_id: str, at: float, by: str) -> bool:
        """Lift a suspension; False if the playbook was not suspended."""
        if self.suspension(playbook_id) is None:
            return False
        self._exec("UPDATE suspensions SET resumed_at = ?, resumed_by = ? WHERE playbook_id = ? AND resumed_at IS NULL",
                   [ts(at), by, playbook_id])
        return True

    def user_query(self, sql: str, *, max_rows: int, interrupt_after: Any = None) -> tuple[QueryResult, bool]:
        """A person's query: one SELECT, in a rolled-back transaction, at most ``max_rows`` rows.

        Returns the result and whether rows were cut. ``interrupt_after(cursor)`` lets the
        caller arm a timer that calls ``cursor.interrupt()`` (the engine does not wait).
        """
        cur = self.con.cursor()
        try:
            text = check_query(cur, sql)
            cur.execute("BEGIN TRANSACTION")
            try:
                if interrupt_after is not None:
                    interrupt_after(cur)
                result = cur.execute(text)
                columns = tuple(d[0] for d in result.description or ())
                rows = result.fetchmany(max_rows + 1)
            finally:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
        except duckdb.InterruptException as exc:
            raise SqlRefused("the query took too long and was stopped") from exc
        except duckdb.Error as exc:
            raise SqlRefused(str(exc).splitlines()[0]) from exc
        finally:
            cur.close()
        return QueryResult(columns=columns, rows=tuple(rows[:max_rows])), len(rows) > max_rows

    def query(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        try:
            cur = self.con.execute(sql, list(params or []))
            columns = tuple(d[0] for d in cur.description or ())
            return QueryResult(columns=columns, rows=tuple(cur.fetchall()))
        except duckdb.Error as exc:
            raise StoreError(str(exc).splitlines()[0]) from exc

    def _exec(self, sql: str, params: Sequence[Any]) -> None:
        try:
            self.con.execute(sql, list(params))
        except duckdb.Error as exc:
            raise StoreError(f"writing the history: {exc}") from exc


def _sql_list(values: Sequence[str]) -> str:
    """A constant SQL list of our own status names (never user input)."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"
