"""`suture history --fleet` and `suture resume --fleet`, run as users run them (a subprocess) against a real
PostgreSQL: read-only by PostgreSQL's own refusal, bounded, clear when refused or unreachable, never a traceback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from suture.engine.errors import SutureError
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_schema import migrate
from suture.sidecar.fleet_sql import fleet_query
from suture.sidecar.fleet_suspensions import Suspensions

from .fleet_helpers import FleetDb, fleet_db  # noqa: F401 (fixture)

SUTURE = [sys.executable, "-m", "suture.sidecar.cli"]
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture
def fleet(fleet_db: FleetDb) -> FleetConnection:
    connection = fleet_db.connect()
    migrate(connection)
    return connection


def write_config(folder: Path, url: str | None) -> Path:
    (folder / "playbooks").mkdir(exist_ok=True)
    fleet = f'fleet: {{postgres: "{url}", group: orders}}\n' if url else ""
    path = folder / "suture.yaml"
    path.write_text(f"name: orders-1\ntarget_root: .\nplaybooks: ./playbooks\nstate_dir: ./state\n{fleet}")
    return path


@pytest.fixture
def config(tmp_path: Path, fleet: FleetConnection, fleet_db: FleetDb) -> Path:
    return write_config(tmp_path, fleet_db.url)


def suture(fleet_db: FleetDb, config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": fleet_db.server.password, "USER": "alice"}
    return subprocess.run([*SUTURE, *args, "--config", str(config)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def history(fleet_db: FleetDb, config: Path, sql: str | None = None, *more: str) -> subprocess.CompletedProcess[str]:
    return suture(fleet_db, config, "history", "--fleet", *(("--sql", sql) if sql is not None else ()), *more)


def admin(fleet_db: FleetDb, sql: str, args: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with fleet_db.admin() as conn:
        cur = conn.execute(sql, args or [])
        return cur.fetchall() if cur.description else []


def fix_row(fleet_db: FleetDb, sidecar: str, fix_id: str, status: str, grp: str = "orders", playbook: str = "pb",
            started: str = "now()") -> None:
    admin(fleet_db, f"""INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at, finished_at)
                        VALUES (%s, %s, %s, %s, %s, 'apply', {started}, now())""", [grp, sidecar, fix_id, playbook, status])


def failed_cleanly(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 1 and "Traceback" not in result.stderr and result.stderr.startswith("suture ")


# -- reading --


def test_without_sql_it_prints_the_groups_last_fixes(fleet_db: FleetDb, config: Path) -> None:
    """No --sql: the group's recent fixes as a table, another group's left out."""
    fix_row(fleet_db, "orders-2", "f-1", "succeeded")
    fix_row(fleet_db, "billing-1", "f-2", "failed", grp="billing")
    result = history(fleet_db, config)
    assert result.returncode == 0, result.stderr
    assert "orders-2" in result.stdout and "f-1" in result.stdout and "billing-1" not in result.stdout
    assert result.stdout.splitlines()[0].split() == ["started_at", "sidecar", "id", "playbook_id", "status",
                                                     "decision", "reason"]


def test_a_select_prints_a_table_like_the_local_history(fleet_db: FleetDb, config: Path) -> None:
    """Header, dashes, rows and the row count, as `suture history --sql` prints them."""
    for i in range(3):
        fix_row(fleet_db, f"orders-{i}", f"f-{i}", "succeeded")
    result = history(fleet_db, config, "SELECT playbook_id, successes, sidecars FROM fleet_outcomes")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["playbook_id", "successes", "sidecars"] and set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["pb", "3", "3"] and lines[-1] == "(1 row)"


def test_json_prints_rows_as_objects_with_iso_times(fleet_db: FleetDb, config: Path) -> None:
    """--json: a list of objects; times in ISO 8601 UTC."""
    fix_row(fleet_db, "orders-2", "f-1", "succeeded", started="'2026-01-02 03:04:05+00'")
    result = history(fleet_db, config, "SELECT id, started_at, 1.5::numeric AS n FROM fleet_fixes", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"id": "f-1", "started_at": "2026-01-02T03:04:05Z", "n": "1.5"}]


def test_a_select_with_no_rows_still_names_its_columns(fleet_db: FleetDb, config: Path) -> None:
    """An empty answer prints the header and (0 rows)."""
    result = history(fleet_db, config, "SELECT grp, sidecar FROM fleet_replicas")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["grp", "sidecar"] and "(0 rows)" in result.stdout


def test_the_row_cap_cuts_a_huge_answer_at_once(fleet_db: FleetDb, config: Path) -> None:
    """A billion rows with --max-rows 3: three rows, said on stderr, the rest cancelled on the server."""
    started = time.monotonic()
    result = history(fleet_db, config, "SELECT generate_series(1, 1000000000) AS n", "--max-rows", "3")
    assert result.returncode == 0, result.stderr
    assert "(3 rows)" in result.stdout and "cut at 3 rows" in result.stderr
    assert time.monotonic() - started < 20


def test_an_answer_past_the_byte_cap_is_cut(fleet: FleetConnection) -> None:
    """Rows of a megabyte each, a 5 MB cap: the five rows that fit come back, marked cut by bytes."""
    answer = fleet_query(fleet, "SELECT repeat('x', 1000000) FROM generate_series(1, 100)", max_rows=1000,
                         max_bytes=5_000_000)
    assert answer.truncated == "bytes" and len(answer.rows) == 5


def test_a_query_past_its_time_limit_is_stopped(fleet_db: FleetDb, config: Path) -> None:
    """--timeout 0.5 and a 30 s sleep: exit 1 within seconds, naming the limit."""
    started = time.monotonic()
    result = history(fleet_db, config, "SELECT pg_sleep(30)", "--timeout", "0.5")
    assert failed_cleanly(result) and "longer than 0.5s" in result.stderr
    assert time.monotonic() - started < 15


# -- refused --


WRITES = {
    "insert": "INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason) VALUES ('orders', 'x', 'm', 'r')",
    "update": "UPDATE fleet_fixes SET status = 'failed'",
    "delete": "DELETE FROM fleet_fixes",
    "drop": "DROP TABLE fleet_fixes",
    "create": "CREATE TABLE evil (x int)",
    "nextval": "SELECT nextval('fleet_fence')",
    "cte": "WITH gone AS (DELETE FROM fleet_fixes RETURNING 1) SELECT count(*) FROM gone",
    "read_write": "SELECT set_config('transaction_read_only', 'off', true), (SELECT count(*) FROM fleet_fixes)",
    "do": "DO $$BEGIN SET TRANSACTION READ WRITE; DELETE FROM fleet_fixes; END$$",
    "commit_first": "COMMIT; DELETE FROM fleet_fixes",
}


@pytest.mark.parametrize("sql", WRITES.values(), ids=WRITES.keys())
def test_a_write_is_refused_by_postgresql_and_changes_nothing(fleet_db: FleetDb, config: Path, sql: str) -> None:
    """Each way of writing: exit 1 with PostgreSQL's reason, and the tables, rows and sequence are as they were."""
    fix_row(fleet_db, "orders-2", "f-1", "succeeded")
    fence = admin(fleet_db, "SELECT last_value, is_called FROM fleet_fence")
    result = history(fleet_db, config, sql)
    assert failed_cleanly(result), result
    assert re.search(r"read-only|multiple commands|read-write mode", result.stderr), result.stderr
    assert admin(fleet_db, "SELECT id, status FROM fleet_fixes") == [("f-1", "succeeded")]
    assert admin(fleet_db, "SELECT count(*) FROM fleet_suspensions") == [(0,)]
    assert admin(fleet_db, "SELECT to_regclass('evil')") == [(None,)]
    assert admin(fleet_db, "SELECT last_value, is_called FROM fleet_fence") == fence


def test_a_plain_insert_says_the_command_only_reads(fleet_db: FleetDb, config: Path) -> None:
    """The refusal of a write names what PostgreSQL said and that history --fleet only reads."""
    result = history(fleet_db, config, WRITES["insert"])
    assert "history --fleet only reads" in result.stderr
    assert "cannot execute INSERT in a read-only transaction" in result.stderr


@pytest.mark.parametrize("sql, said", [
    ("SELEC 1", 'syntax error at or near "SELEC"'),
    ("SELECT * FROM nowhere", 'relation "nowhere" does not exist'),
    ("SELECT 1/0", "division by zero"),
    ("SELECT pg_read_file('/etc/passwd')", "permission denied"),
    ("SET statement_timeout = 0", "returns no rows"),
    ("-- only a comment", "no SQL statement"),
    ("   ", "no SQL given"),
])
def test_bad_sql_fails_with_postgresqls_message(fleet_db: FleetDb, config: Path, sql: str, said: str) -> None:
    """exit 1, PostgreSQL's own words (or what is missing), no traceback."""
    result = history(fleet_db, config, sql)
    assert failed_cleanly(result) and said in result.stderr, result.stderr


def test_a_nul_in_the_sql_is_refused_before_sending(fleet: FleetConnection) -> None:
    """PostgreSQL would cut the text at the NUL; the query is refused instead."""
    with pytest.raises(SutureError, match="NUL"):
        fleet_query(fleet, "SELECT 1 \x00; DROP TABLE fleet_fixes", max_rows=10)


def test_without_fleet_configured_it_says_so(tmp_path: Path, fleet_db: FleetDb) -> None:
    """No fleet: in suture.yaml: exit 1 naming the file and the missing section."""
    result = history(fleet_db, write_config(tmp_path, None), "SELECT 1")
    assert failed_cleanly(result) and "no fleet: section" in result.stderr and "suture.yaml" in result.stderr


def test_an_unreachable_fleet_is_a_clear_error_without_the_password(tmp_path: Path, fleet_db: FleetDb) -> None:
    """Nothing listens on the port: exit 1, 'cannot reach', and the password appears nowhere."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = history(fleet_db, write_config(tmp_path, f"postgresql://probe@127.0.0.1:{port}/x"), "SELECT 1")
    assert failed_cleanly(result) and "cannot reach the fleet database" in result.stderr
    assert fleet_db.server.password not in result.stdout + result.stderr


# -- what other sidecars wrote --


def test_hostile_values_print_without_terminal_escapes_or_a_crash(fleet_db: FleetDb, config: Path) -> None:
    """Escape sequences, infinite times and JSON nested 5,000 deep in rows: printed as safe text, exit 0."""
    admin(fleet_db, """INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at, reason)
                       VALUES ('orders', 'evil', 'f', 'pb', 'succeeded', 'apply', 'infinity', %s)""",
          ["\x1b]0;owned\x07\x1b[2J<b>x</b>"])
    deep = "[" * 5000 + "]" * 5000
    admin(fleet_db, """INSERT INTO fleet_steps (grp, sidecar, fix_id, seq, step, happened_at, detail)
                       VALUES ('orders', 'evil', 'f', 1, 'applied', '-infinity', %s::jsonb)""", [deep])
    table = history(fleet_db, config, "SELECT f.started_at, f.reason, s.happened_at, s.detail "
                                      "FROM fleet_fixes f JOIN fleet_steps s ON s.fix_id = f.id")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    assert "infinity" in table.stdout and "?]0;owned??[2J<b>x</b>" in table.stdout
    as_json = history(fleet_db, config, "SELECT started_at, reason FROM fleet_fixes", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert "\x1b" not in as_json.stdout
    assert json.loads(as_json.stdout) == [{"started_at": "infinity", "reason": "\x1b]0;owned\x07\x1b[2J<b>x</b>"}]


def test_the_fleet_queries_in_the_docs_run(fleet_db: FleetDb, config: Path, fleet: FleetConnection) -> None:
    """Every query of the fleet section of docs/history.md runs read-only on a migrated database."""
    fix_row(fleet_db, "orders-2", "f-1", "succeeded")
    text = (DOCS / "history.md").read_text()
    section = text[text.index("## The group's history"):]
    queries = [q.strip() for block in re.findall(r"```sql\n(.*?)```", section, re.S) for q in block.split(";")]
    queries = [q for q in queries if q and not all(line.startswith("--") for line in q.splitlines())]
    assert len(queries) >= 4
    for q in queries:
        fleet_query(fleet, q, max_rows=100)


# -- resume --fleet --


def test_resume_fleet_lifts_the_groups_suspension_and_says_what_it_was(fleet_db: FleetDb, config: Path,
                                                                       fleet: FleetConnection) -> None:
    """A suspended playbook: exit 0, what was lifted (who, why, the canary), recorded as by --by; canaries resumed."""
    Suspensions(fleet).suspend("orders", "pb", by="orders-2", reason="canary f-9 rolled back", cause_fix_id="f-9")
    admin(fleet_db, """INSERT INTO fleet_canaries (grp, playbook_id, playbook_version, fix_id, sidecar, state, expires_at)
                       VALUES ('orders', 'pb', 'v1', 'f-9', 'orders-2', 'failed', now())""")
    result = suture(fleet_db, config, "resume", "pb", "--fleet", "--by", "bob")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("resumed pb for group orders (by bob): suspended ")
    assert "by orders-2 (canary f-9 rolled back, canary fix f-9)" in result.stdout
    assert admin(fleet_db, "SELECT resumed_by FROM fleet_suspensions") == [("bob",)]
    assert admin(fleet_db, "SELECT state FROM fleet_canaries") == [("resumed",)]


def test_resume_fleet_records_the_user_by_default(fleet_db: FleetDb, config: Path, fleet: FleetConnection) -> None:
    """Without --by the suspension is lifted by $USER."""
    Suspensions(fleet).suspend("orders", "pb", by="orders-2", reason="canary failed")
    assert suture(fleet_db, config, "resume", "pb", "--fleet").returncode == 0
    assert admin(fleet_db, "SELECT resumed_by FROM fleet_suspensions") == [("alice",)]


def test_resume_fleet_of_a_playbook_not_suspended_fails(fleet_db: FleetDb, config: Path, fleet: FleetConnection) -> None:
    """Nothing suspended in this group (another group's suspension does not count): exit 1, saying so."""
    Suspensions(fleet).suspend("billing", "pb", by="billing-1", reason="canary failed")
    result = suture(fleet_db, config, "resume", "pb", "--fleet")
    assert result.returncode == 1 and "pb is not suspended in group orders" in result.stderr
    assert admin(fleet_db, "SELECT resumed_at FROM fleet_suspensions") == [(None,)]


def test_resume_fleet_prints_a_hostile_reason_as_plain_text(fleet_db: FleetDb, config: Path,
                                                            fleet: FleetConnection) -> None:
    """A reason holding terminal escapes and SQL is printed without the escapes; the tables stay."""
    Suspensions(fleet).suspend("orders", "pb", by="x\x1b[2J", reason="'); DROP TABLE fleet_fixes; --\x1b]0;t\x07")
    result = suture(fleet_db, config, "resume", "pb", "--fleet")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "DROP TABLE fleet_fixes" in result.stdout
    assert admin(fleet_db, "SELECT to_regclass('fleet_fixes') IS NOT NULL") == [(True,)]


def test_resume_fleet_unreachable_or_unconfigured_fails_clearly(tmp_path: Path, fleet_db: FleetDb) -> None:
    """No fleet: section, or nothing listening: exit 1 with a message, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    unconfigured = suture(fleet_db, write_config(tmp_path / "a", None), "resume", "pb", "--fleet")
    assert failed_cleanly(unconfigured) and "no fleet: section" in unconfigured.stderr
    down = suture(fleet_db, write_config(tmp_path / "b", f"postgresql://probe@127.0.0.1:{port}/x"), "resume", "pb",
                  "--fleet")
    assert failed_cleanly(down) and "cannot reach the fleet database" in down.stderr
