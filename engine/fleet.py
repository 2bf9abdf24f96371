"""Fleet learning through shared storage: each sidecar exports Parquet, reads the others'.

    FLEET_DIR/<sidecar name>/fixes.parquet       (and fix_steps, validations, backups)

``suture history --export DIR`` writes the same files by hand. A sidecar with
``learning: {fleet: DIR}`` rewrites its own export after every final outcome
(atomically: a temp file, then rename) and counts the other sidecars'
outcomes per playbook when it computes confidence. No central server; a shared
volume or a synced bucket mount is enough.

The history's own connection cannot touch files (see engine.sql), so Parquet
goes through a separate in-memory DuckDB instance.

This is one of two backends of :class:`GroupOutcomes` (the other sidecars' outcomes per
playbook); the other is PostgreSQL (``sidecar.fleet_learning.PgFleetHistory``, fleet mode).
Both are refreshed by a loop of the sidecar and answer ``outcomes`` from what they last read,
so the decision path never waits on a disk or a network.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Protocol

import duckdb

from .errors import StoreError
from .status import FAILURE, SUCCESS, sql_list
from .store import Store

TABLES = ("fixes", "fix_steps", "validations", "backups")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def export_history(store: Store, folder: Path, name: str) -> list[Path]:
    """Write ``folder/<name>/<table>.parquet`` for every table; return the files written."""
    if not NAME.match(name):
        raise StoreError(f"sidecar name {name!r} cannot name a folder (letters, digits, . _ -)")
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    out = []
    side = duckdb.connect(":memory:")
    try:
        for table in TABLES:
            columns = store.query(f"DESCRIBE {table}").rows
            ddl = ", ".join(f'"{col}" {kind}' for col, kind, *_ in columns)
            side.execute(f"CREATE TABLE {table} ({ddl}, sidecar VARCHAR)")
            rows = store.query(f"SELECT * FROM {table}").rows
            if rows:
                marks = ", ".join("?" for _ in range(len(columns) + 1))
                side.executemany(f"INSERT INTO {table} VALUES ({marks})", [(*row, name) for row in rows])
            final = target / f"{table}.parquet"
            tmp = target / f".{table}.parquet.tmp-{os.getpid()}"
            side.execute(f"COPY {table} TO '{_quote(tmp)}' (FORMAT parquet)")
            os.replace(tmp, final)
            out.append(final)
    except duckdb.Error as exc:
        raise StoreError(f"exporting the history to {target}: {exc}") from exc
    finally:
        side.close()
    return out


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


class GroupOutcomes(Protocol):
    """The other sidecars' outcomes per playbook, as last read (``refresh`` reads again)."""

    error: str  # why the last refresh failed ("" when it did not); the last good counts stay

    def refresh(self) -> None: ...

    def outcomes(self, playbook_id: str) -> tuple[int, int]:
        """(successes, failures) of this playbook's applied fixes on the other sidecars of the group."""
        ...


class FleetHistory:
    """The other sidecars' outcomes per playbook, read from their Parquet exports."""

    def __init__(self, folder: Path, own: str) -> None:
        self.folder = folder
        self.own = own
        self.counts: dict[str, tuple[int, int]] = {}
        self.sidecars: list[str] = []
        self.error = ""

    def refresh(self) -> None:
        files = sorted(p for p in self.folder.glob("*/fixes.parquet") if p.parent.name != self.own)
        self.sidecars = [p.parent.name for p in files]
        if not files:
            self.counts = {}
            return
        side = duckdb.connect(":memory:")
        try:
            listing = ", ".join(f"'{_quote(p)}'" for p in files)
            rows = side.execute(
                f"""SELECT playbook_id,
                           count(*) FILTER (WHERE status IN {sql_list(SUCCESS)}),
                           count(*) FILTER (WHERE status IN {sql_list(FAILURE)})
                    FROM read_parquet([{listing}], union_by_name = true)
                    WHERE decision = 'apply' GROUP BY playbook_id"""
            ).fetchall()
            self.counts = {pid: (int(s), int(f)) for pid, s, f in rows}
            self.error = ""
        except duckdb.Error as exc:  # a half-synced or foreign file: keep the last good counts
            self.error = str(exc).splitlines()[0]
        finally:
            with contextlib.suppress(duckdb.Error):
                side.close()

    def outcomes(self, playbook_id: str) -> tuple[int, int]:
        return self.counts.get(playbook_id, (0, 0))
