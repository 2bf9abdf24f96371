"""``suture history --fleet``: a person's query of the group's PostgreSQL, kept read-only by PostgreSQL itself.

    fleet = FleetConnection.from_config(config.fleet_pg, name=..., statement_timeout=10)
    answer = fleet_query(fleet, "SELECT playbook_id, successes FROM fleet_outcomes", max_rows=1000)
    answer.columns, answer.rows, answer.truncated     # truncated: "" or what cut it ("rows", "bytes")

What keeps it a read, without suture parsing any SQL:

- the query runs in a transaction made ``READ ONLY`` first, so PostgreSQL refuses INSERT,
  UPDATE, DELETE, DDL and ``nextval`` ("cannot execute INSERT in a read-only transaction"),
  and switching it back is refused once the statement has taken its snapshot;
- it is sent with the extended protocol (psycopg's ``stream``), which carries exactly one
  statement: ``COMMIT; INSERT ...`` is refused before anything runs;
- ``statement_timeout`` (the connection's, from ``--timeout``) stops a long query on the server;
- rows are read one at a time and the query is cancelled past ``max_rows`` or ``max_bytes``,
  so a huge answer never reaches memory whole.

The rows may hold anything another sidecar wrote: a value psycopg cannot turn into Python (a
date of ``'infinity'``, JSON nested thousands deep) comes back as its text instead of failing
the whole query, and JSON columns are always their text. :func:`display` makes a value safe
for a terminal (no control characters: a row could hold escape sequences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.abc import AdaptContext, Buffer, Loader
from psycopg.adapt import Loader as BaseLoader
from psycopg.pq import Format
from psycopg.types.string import TextLoader
from suture.engine.errors import FleetUnavailable, SutureError
from suture.engine.fleet_values import clean_text

from .fleet_pg import FleetConnection, PgConnection

MAX_BYTES = 32 * 1024 * 1024  # of values read, before the query is cancelled
CELL = 1000  # characters of a value shown in a table (the table cuts at 60 anyway)
RECENT_FLEET_FIXES = """SELECT started_at, sidecar, id, playbook_id, status, decision, reason
FROM fleet_fixes WHERE grp = %s ORDER BY started_at DESC LIMIT 20"""
LENIENT = ("date", "timestamp", "timestamptz", "time", "timetz", "interval")  # may fail on values Python lacks
AS_TEXT = ("json", "jsonb")  # never parsed: nesting deep enough to exhaust the parser's stack is valid JSON
REFUSED = "the fleet database refused a statement: "


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetAnswer:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: str = ""  # "" (whole), "rows" (cut at max_rows) or "bytes" (cut at max_bytes)


def fleet_query(fleet: FleetConnection, sql: str, params: Sequence[Any] | None = None, *, max_rows: int,
                max_bytes: int = MAX_BYTES) -> FleetAnswer:
    """One statement in a READ ONLY transaction; FleetUnavailable (PostgreSQL's words) when refused or unreachable."""
    if "\x00" in sql:
        raise SutureError("the SQL holds a NUL character")
    if not sql.strip():
        raise SutureError("no SQL given")
    try:
        with fleet.transaction() as pg:
            pg.execute("SET TRANSACTION READ ONLY")
            return _run(pg, sql, params, max_rows=max(1, max_rows), max_bytes=max_bytes)
    except FleetUnavailable as exc:
        raise FleetUnavailable(_explain(exc, fleet.statement_timeout)) from exc


def _run(pg: PgConnection, sql: str, params: Sequence[Any] | None, *, max_rows: int, max_bytes: int) -> FleetAnswer:
    cur = pg.cursor()
    for name in LENIENT:
        cur.adapters.register_loader(name, _lenient(cur.adapters.get_loader(_oid(name), Format.TEXT)))
    for name in AS_TEXT:
        cur.adapters.register_loader(name, TextLoader)
    rows: list[tuple[Any, ...]] = []
    size, truncated = 0, ""
    for row in cur.stream(sql.encode(), params):
        result = cur.pgresult
        size += sum(len(result.get_value(0, i) or b"") for i in range(result.nfields)) if result is not None else 0
        if len(rows) == max_rows or size > max_bytes:
            truncated = "rows" if len(rows) == max_rows else "bytes"
            break  # stream() cancels the rest of the query
        rows.append(row)
    if cur.description is not None:
        columns = tuple(c.name for c in cur.description)
    else:  # no row came: ask the server what the statement's columns are
        described = pg.pgconn.describe_prepared(b"")
        columns = tuple((described.fname(i) or b"?").decode("utf-8", "replace") for i in range(described.nfields))
    return FleetAnswer(columns=columns, rows=tuple(rows), truncated=truncated)


def _oid(name: str) -> int:
    info = psycopg.postgres.types.get(name)
    assert info is not None, name
    return info.oid


def _lenient(base: type[Loader] | None) -> type[Loader]:
    """``base``'s loader, but a value it cannot load comes back as its text (the C loaders cannot be subclassed)."""
    inner_type: type[Loader] = base if base is not None else TextLoader

    class Lenient(BaseLoader):
        def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
            super().__init__(oid, context)
            self.inner = inner_type(oid, context)

        def load(self, data: Buffer) -> Any:
            try:
                return self.inner.load(data)
            except (psycopg.DataError, ValueError, OverflowError):
                return bytes(data).decode("utf-8", "replace")

    return Lenient


def _explain(exc: FleetUnavailable, timeout: float) -> str:
    """What went wrong, in a person's words, with PostgreSQL's own message."""
    cause, text = exc.__cause__, str(exc)
    said = text.removeprefix(REFUSED)
    if isinstance(cause, pgerrors.ReadOnlySqlTransaction):
        return f"refused: history --fleet only reads (PostgreSQL: {said})"
    if isinstance(cause, pgerrors.QueryCanceled):
        return f"the query ran longer than {timeout:g}s and was stopped (--timeout): {said}"
    if isinstance(cause, psycopg.ProgrammingError) and "didn't produce a result" in said:
        return "the statement returns no rows: --sql takes one query (SELECT, WITH, VALUES, TABLE, SHOW)"
    if isinstance(cause, psycopg.InternalError) and "EMPTY_QUERY" in said:
        return "no SQL statement given (only comments?)"
    if text.startswith(REFUSED):
        return f"PostgreSQL refused the query: {said}"
    return text


def display(value: Any) -> Any:
    """A value as a table cell: numbers and times as they are, anything else text without control characters."""
    if value is None or isinstance(value, int | Decimal | datetime | date | time | timedelta):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return clean_text(value if isinstance(value, str) else str(value), CELL)


def as_json_value(value: Any) -> Any:
    """A value for ``--json``: times in ISO 8601, non-finite numbers and the rest as text (json.dumps escapes it)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
