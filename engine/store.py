"""The DuckDB history: fixes, their journal of steps, and what learning reads back.

One process writes the file (the sidecar); the CLI opens it read-only when the
sidecar is not running. Migrations are numbered and applied in order at
open (:mod:`.migrations`). Times are stored as UTC TIMESTAMPs.

A fix row is inserted when a playbook fires and updated as the fix moves on;
its final ``status`` is written once (``finished_at IS NULL`` guards every
update), and ``fix_steps`` is append-only: the journal that start-up recovery
reads.

Every SQL statement is the store's: this module writes a fix's life, keeps the
suspensions and answers what learning and the gate read; :mod:`.reads` holds
the named reads the API, the dashboard, the CLI and the executor ask (methods
of :class:`Store` through its base). A person's own SQL goes through
:meth:`Store.user_query` only, which lets one read through and rolls it back.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import duckdb

from .decide import Decision, Gate, Outcomes
from .errors import StoreError
from .migrations import MIGRATIONS, migrate, schema_version
from .notifications import Routes, enqueue
from .reads import RECENT_FIXES_SQL, QueryResult, Reads, TypeTally, ValidatedFix, epoch, ts
from .sql import SqlRefused, check_query
from .status import FAILURE, FINAL, SUCCESS, sql_list

__all__ = ["FAILURE", "FINAL", "MIGRATIONS", "RECENT_FIXES_SQL", "SUCCESS", "QueryResult", "Store", "TypeTally",
           "ValidatedFix", "epoch", "ts"]



class Store(Reads):
    """The one writer of the history file (and, through :class:`~.reads.Reads`, its named reads)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None) -> None:
        super().__init__(con, path)
        self._fences: dict[str, int] = {}  # fix id -> the fleet fencing token its steps carry
        self.routes = Routes()  # what the outbox queues (none until the sidecar says: see notify_through)

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> Self:
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
        return schema_version(self.con)

    def migrate(self) -> list[int]:
        """Apply every migration newer than the file; return the versions applied."""
        return migrate(self.con, self.path)

    def notify_through(self, routes: Routes) -> None:
        """From now on, a final status or a suspension in ``routes.events`` queues a notification per channel."""
        self.routes = routes

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._exec("BEGIN TRANSACTION", [])
        try:
            yield
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise
        self._exec("COMMIT", [])

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

    def fence(self, fix_id: str, token: int) -> None:
        """From here until it finishes, every step of ``fix_id`` carries ``{"fence": token}`` (its fleet lease)."""
        self._fences[fix_id] = token

    def step(self, fix_id: str, step: str, at: float, detail: dict[str, Any] | None = None) -> None:
        """Append one journal step (committed before the caller takes the next)."""
        token = self._fences.get(fix_id)
        if token is not None:
            detail = {**(detail or {}), "fence": token}
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
        """Write the final status and its journal step, and queue its notifications, in one transaction."""
        if status not in FINAL:
            raise StoreError(f"{status!r} is not a final status")
        with self._transaction():
            ended = self._fetch(
                """UPDATE fixes SET status = ?, finished_at = ?, detail = ?, errors_after = coalesce(?, errors_after)
                   WHERE id = ? AND finished_at IS NULL RETURNING playbook_id""",
                [status, ts(at), detail, errors_after, fix_id],
            )
            self.step(fix_id, status, at, {"detail": detail} if detail else None)
            if ended:  # only the step that ended the fix tells of it
                self._enqueue(fix_id=fix_id, playbook_id=ended[0][0], event=status, at=at,
                              facts={"status": status, "detail": detail})
        self._fences.pop(fix_id, None)

    def record_validation(self, fix_id: str, *, opened_at: float, judged_at: float, verdict: str, reason: str,
                          errors_after: int | None, measured: dict[str, Any]) -> None:
        self._exec("INSERT INTO validations VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [fix_id, ts(opened_at), ts(judged_at), verdict, reason, errors_after,
                    json.dumps(measured, default=str)])

    def record_backup(self, backup_id: str, fix_id: str, playbook_id: str, created_at: float,
                      files: list[dict[str, Any]]) -> None:
        self._exec("INSERT INTO backups VALUES (?, ?, ?, ?, ?)",
                   [backup_id, fix_id, playbook_id, ts(created_at), json.dumps(files)])

    # -- what learning and the gate read --

    def outcomes(self, playbook_id: str) -> Outcomes:
        row = self.con.execute(
            f"""SELECT count(*) FILTER (WHERE status IN {sql_list(SUCCESS)}),
                       count(*) FILTER (WHERE status IN {sql_list(FAILURE)})
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
                AND status IN {sql_list(FAILURE)} AND finished_at >= ?""",
            [playbook_id, ts(since)],
        ).fetchone()
        return int(row[0]) if row else 0

    def suspension(self, playbook_id: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM suspensions WHERE playbook_id = ? AND resumed_at IS NULL ORDER BY suspended_at DESC LIMIT 1",
            [playbook_id],
        ).dicts()
        return rows[0] if rows else None

    def suspend(self, playbook_id: str, at: float, reason: str, *, fix_id: str | None = None) -> bool:
        """Suspend a playbook until a person resumes it (``fix_id``: the fix that caused it); False if it already was.

        The suspension and its notifications are written in one transaction.
        """
        if self.suspension(playbook_id) is not None:
            return False
        with self._transaction():
            self._exec("INSERT INTO suspensions (playbook_id, suspended_at, reason) VALUES (?, ?, ?)",
                       [playbook_id, ts(at), reason])
            self._enqueue(fix_id=fix_id, playbook_id=playbook_id, event="suspended", at=at, facts={"reason": reason})
        return True

    def resume(self, playbook_id: str, at: float, by: str) -> bool:
        """Lift a suspension; False if the playbook was not suspended."""
        if self.suspension(playbook_id) is None:
            return False
        self._exec("UPDATE suspensions SET resumed_at = ?, resumed_by = ? WHERE playbook_id = ? AND resumed_at IS NULL",
                   [ts(at), by, playbook_id])
        return True

    def user_query(self, sql: str, *, max_rows: int,
                   interrupt_after: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
                   ) -> tuple[QueryResult, bool]:
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

    def _enqueue(self, *, fix_id: str | None, playbook_id: str | None, event: str, at: float,
                 facts: dict[str, Any]) -> None:
        try:
            enqueue(self.con, self.routes, fix_id=fix_id, playbook_id=playbook_id, event=event, at=ts(at),
                    facts=facts)
        except duckdb.Error as exc:
            raise StoreError(f"queueing a notification: {exc}") from exc

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self.con.execute(sql, list(params)).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"writing the history: {exc}") from exc

    def _exec(self, sql: str, params: Sequence[Any]) -> None:
        try:
            self.con.execute(sql, list(params))
        except duckdb.Error as exc:
            raise StoreError(f"writing the history: {exc}") from exc

