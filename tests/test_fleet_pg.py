"""The fleet connection (fail closed, bounded waits, backoff, state) and the group's schema, on a real PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from psycopg import sql
from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import Backoff
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_schema import LATEST, MIGRATIONS, migrate, schema_version

from .conftest import Clock
from .fleet_helpers import FleetDb, Proxy, fleet_db, proxy  # noqa: F401 (fixtures)
from .servers import PostgresServer

TABLES = ["fleet_canaries", "fleet_fixes", "fleet_leases", "fleet_replicas", "fleet_schema_version", "fleet_starts",
          "fleet_steps", "fleet_suspensions"]


def test_a_new_database_is_migrated_to_the_latest_version(fleet_db: FleetDb) -> None:
    """migrate creates every table and records each migration once."""
    fleet = fleet_db.connect()
    assert schema_version(fleet) == 0
    assert migrate(fleet) == [v for v, _, _ in MIGRATIONS]
    assert schema_version(fleet) == LATEST
    with fleet_db.admin() as admin:
        tables = [r[0] for r in admin.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            " ORDER BY 1").fetchall()]
    assert tables == TABLES


def test_migrating_again_changes_nothing(fleet_db: FleetDb) -> None:
    """A second migrate (the next start) applies nothing."""
    fleet = fleet_db.connect()
    migrate(fleet)
    assert migrate(fleet) == []


def test_sidecars_migrating_at_once_apply_each_migration_once(fleet_db: FleetDb) -> None:
    """Six sidecars start together on an empty database: none fails, every migration is applied once."""
    connections = [fleet_db.connect() for _ in range(6)]
    results: list[list[int] | BaseException] = []
    barrier = threading.Barrier(len(connections))

    def start(fleet: FleetConnection) -> None:
        barrier.wait()
        try:
            results.append(migrate(fleet))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=start, args=(c,)) for c in connections]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(map(str, results)) == sorted(["[]"] * 5 + [str([v for v, _, _ in MIGRATIONS])])
    with fleet_db.admin() as admin:
        assert admin.execute("SELECT count(*) FROM fleet_schema_version").fetchone() == (len(MIGRATIONS),)


def test_a_database_newer_than_this_suture_is_refused(fleet_db: FleetDb) -> None:
    """A schema version from the future fails closed rather than writing into tables it does not know."""
    fleet = fleet_db.connect()
    migrate(fleet)
    with fleet_db.admin() as admin:
        admin.execute("INSERT INTO fleet_schema_version (version, name) VALUES (%s, 'from the future')", [LATEST + 1])
    with pytest.raises(FleetUnavailable, match="newer than this suture knows"):
        migrate(fleet)


def test_a_select_only_role_reads_and_cannot_write(fleet_db: FleetDb) -> None:
    """The reader role of docs/fleet.md: SELECT works on every table, INSERT, UPDATE, DELETE are refused."""
    fleet = fleet_db.connect()
    migrate(fleet)
    role, password = f"reader_{uuid.uuid4().hex[:8]}", "reader-password"
    with fleet_db.admin() as admin:  # the statements docs/fleet.md gives
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), password))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(fleet_db.database),
                                                                          sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    server = fleet_db.server
    try:
        with psycopg.connect(host=server.host, port=server.port, user=role, password=password,
                             dbname=fleet_db.database, autocommit=True) as reader:
            assert reader.execute("SELECT count(*) FROM fleet_fixes").fetchone() == (0,)
            assert reader.execute("SELECT count(*) FROM fleet_outcomes").fetchone() == (0,)
            for statement in ("INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason) VALUES ('g','p','x','y')",
                              "UPDATE fleet_leases SET holder = 'me'", "DELETE FROM fleet_steps",
                              "SELECT nextval('fleet_fence')", "CREATE TABLE mine (x int)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    reader.execute(statement)
    finally:
        with fleet_db.admin() as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# -- fail closed --


def test_a_refused_connection_raises_fleet_unavailable_at_once(fleet_db: FleetDb, proxy: Proxy) -> None:
    """Nothing listens: FleetUnavailable within the connect timeout, and the state says disconnected."""
    proxy.down()
    fleet = fleet_db.connect(url=fleet_db.url_via(proxy.port))
    started = time.monotonic()
    with pytest.raises(FleetUnavailable, match="cannot reach the fleet database"), fleet.transaction():
        pass
    assert time.monotonic() - started < 2.5
    assert not fleet.state.connected and fleet.state.failures == 1 and "refused" in fleet.state.last_error


def test_a_hung_server_does_not_hang_the_caller(fleet_db: FleetDb, silent_server: tuple[str, int]) -> None:
    """A server that accepts and never answers: FleetUnavailable after the connect timeout, not later."""
    host, port = silent_server
    fleet = fleet_db.track(FleetConnection(f"postgresql://probe@{host}:{port}/app", connect_timeout=2.0))
    started = time.monotonic()
    with pytest.raises(FleetUnavailable), fleet.transaction():
        pass
    assert time.monotonic() - started < 4.0


def test_a_slow_statement_is_stopped_by_the_statement_timeout(fleet_db: FleetDb) -> None:
    """pg_sleep(5) with a 0.3 s statement timeout: FleetUnavailable in well under a second; still connected."""
    fleet = fleet_db.connect(statement_timeout=0.3)
    started = time.monotonic()
    timeout = "refused a statement: canceling statement due to statement timeout"
    with pytest.raises(FleetUnavailable, match=timeout), fleet.transaction() as pg:
        pg.execute("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 1.5
    with fleet.transaction() as pg:
        assert pg.execute("SELECT 1").fetchone() == (1,)


def test_the_connection_comes_back_after_an_outage(fleet_db: FleetDb, proxy: Proxy) -> None:
    """Up, down (the open connection is cut), up: the next call reconnects; the state follows each step."""
    clock = Clock()
    fleet = fleet_db.connect(url=fleet_db.url_via(proxy.port), clock=clock)
    with fleet.transaction() as pg:
        pg.execute("SELECT 1")
    assert fleet.state.connected and fleet.state.since == clock.now
    proxy.down()
    with pytest.raises(FleetUnavailable, match=r"cannot reach the fleet database: .*refused"), fleet.transaction() as pg:
        pg.execute("SELECT 1")
    down_at = clock.now
    clock.advance(5)
    with pytest.raises(FleetUnavailable), fleet.transaction():
        pass
    assert (fleet.state.connected, fleet.state.since, fleet.state.failures) == (False, down_at, 2)
    proxy.up()
    clock.advance(5)
    with fleet.transaction() as pg:
        assert pg.execute("SELECT 1").fetchone() == (1,)
    assert fleet.state.connected and fleet.state.since == clock.now and fleet.state.failures == 0


def test_during_the_backoff_no_attempt_is_made(fleet_db: FleetDb, proxy: Proxy) -> None:
    """After a failure, calls before the backoff ends raise at once without touching the network."""
    clock = Clock()
    proxy.down()
    fleet = fleet_db.connect(url=fleet_db.url_via(proxy.port), clock=clock, backoff=Backoff(base=1.0, cap=8.0, jitter=0))
    delays = []
    for _ in range(6):
        with pytest.raises(FleetUnavailable), fleet.transaction():
            pass
        assert fleet.state.next_attempt_at is not None
        delays.append(fleet.state.next_attempt_at - clock.now)
        proxy.up()  # up again, but the backoff is not over: still refused, and the failure count stays
        with pytest.raises(FleetUnavailable, match="next attempt in"), fleet.transaction():
            pass
        proxy.down()
        clock.advance(delays[-1])
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize(("failures", "u", "expected"), [(0, 0.5, 0.0), (1, 0.0, 0.5), (3, 0.0, 2.0), (99, 0.0, 30.0),
                                                         (99, 1.0, 24.0)])
def test_backoff_doubles_up_to_its_cap_less_its_jitter(failures: int, u: float, expected: float) -> None:
    """0.5 s, 1 s, 2 s ... 30 s; the jitter shortens a delay by at most 20 %."""
    assert Backoff().delay(failures, u) == pytest.approx(expected)


def test_the_password_never_appears_in_errors_or_state(postgres_server: PostgresServer, fleet_db: FleetDb) -> None:
    """A wrong password: the error and the state say authentication failed, and hold neither password."""
    wrong = "Wrong-Secret-123"
    fleet = fleet_db.connect(password=wrong)
    with pytest.raises(FleetUnavailable) as caught, fleet.transaction():
        pass
    shown = f"{caught.value} {fleet.state} {fleet!r}"
    assert "password authentication failed" in shown
    assert wrong not in shown and postgres_server.password not in shown
    good = fleet_db.connect()
    with good.transaction():
        pass
    assert postgres_server.password not in f"{good!r} {good.state}"
