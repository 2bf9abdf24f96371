"""SQL that people send: one read, nothing else, and never a file outside the history.

Two layers, so neither has to be perfect alone:

- the history's DuckDB connection is opened with ``enable_external_access =
  false``: DuckDB itself refuses ``read_csv('/etc/passwd')``, ``COPY ... TO``,
  ``ATTACH``, ``INSTALL``/``LOAD`` and every other file or network access, and
  that setting cannot be turned back on;
- :func:`check_query` lets through exactly one ``SELECT`` statement (CTEs and
  set operations included) and refuses everything else by its parsed type,
  before anything runs; the query then runs in a transaction that is rolled
  back.

Time and row limits are applied by the caller (the sidecar owns every wait).
"""

from __future__ import annotations

import duckdb

from .errors import SutureError

MAX_SQL_BYTES = 64 * 1024


class SqlRefused(SutureError):
    """A query that is not a single read of the history."""


def check_query(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The query, stripped, if it is exactly one SELECT; SqlRefused saying why otherwise."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefused("empty query")
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise SqlRefused(f"query longer than {MAX_SQL_BYTES} bytes")
    if "\x00" in sql:
        raise SqlRefused("NUL byte in query")
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlRefused(f"cannot parse: {str(exc).splitlines()[0]}") from exc
    if len(statements) != 1:
        raise SqlRefused(f"send exactly one statement (got {len(statements)})")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = str(kind).rsplit(".", 1)[-1]
        raise SqlRefused(f"only SELECT is allowed here (got {name}); the history is read-only")
    return sql.strip().rstrip(";")
