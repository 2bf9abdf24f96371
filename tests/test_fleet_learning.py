"""Pooled learning: the group's outcomes per playbook from PostgreSQL or the Parquet folder, one interface."""

from __future__ import annotations

from pathlib import Path

import pytest
from suture.engine.errors import FleetUnavailable
from suture.engine.fleet import FleetHistory, GroupOutcomes, export_history
from suture.sidecar.fleet_learning import PgFleetHistory
from suture.sidecar.fleet_outbox import Shipper
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_schema import migrate
from suture.sidecar.history import LiveHistory

from .fleet_helpers import FleetDb, Proxy, fleet_db, proxy  # noqa: F401 (fixtures)
from .test_fleet_outbox import Journal

PB = "rate-limit-backoff"


def history_of(path: Path, outcomes: list[str], playbook_id: str = PB) -> Journal:
    """A sidecar's local history with one applied fix per outcome."""
    journal = Journal(path)
    for status in outcomes:
        fix = journal.new_fix(1)
        journal.store.update(fix, status="validating")
        journal.store.query("UPDATE fixes SET playbook_id = ? WHERE id = ?", [playbook_id, fix])
        journal.finish(fix, status)
    return journal


@pytest.fixture
def fleet(fleet_db: FleetDb) -> FleetConnection:
    connection = fleet_db.connect()
    migrate(connection)
    return connection


def ship(journal: Journal, fleet: FleetConnection, name: str, group: str = "orders") -> None:
    Shipper(journal.store, fleet, group=group, sidecar=name).ship_all()


def test_the_other_sidecars_outcomes_are_counted(tmp_path: Path, fleet: FleetConnection) -> None:
    """a: 3 successes, 1 failure; b: 2 successes; c asks: 5 and 1 (its own are not counted here)."""
    for name, outcomes in {"a": ["succeeded"] * 3 + ["rolled_back"], "b": ["succeeded"] * 2,
                           "c": ["failed"] * 7}.items():
        journal = history_of(tmp_path / f"{name}.duckdb", outcomes)
        ship(journal, fleet, name)
        journal.store.close()
    pooled = PgFleetHistory(fleet, group="orders", own="c")
    pooled.refresh()
    assert (pooled.outcomes(PB), pooled.outcomes("other"), pooled.sidecars, pooled.error) == ((5, 1), (0, 0), ["a", "b"], "")


def test_other_groups_do_not_count(tmp_path: Path, fleet: FleetConnection) -> None:
    """A success in group billing is not a success in group orders."""
    journal = history_of(tmp_path / "a.duckdb", ["succeeded"])
    ship(journal, fleet, "a", group="billing")
    journal.store.close()
    pooled = PgFleetHistory(fleet, group="orders", own="c")
    pooled.refresh()
    assert pooled.outcomes(PB) == (0, 0)


def test_live_history_takes_either_backend(tmp_path: Path, fleet: FleetConnection) -> None:
    """LiveHistory adds the pooled counts to its own, from PostgreSQL as from the Parquet folder."""
    other = history_of(tmp_path / "a.duckdb", ["succeeded"] * 4)
    ship(other, fleet, "a")
    export_history(other.store, tmp_path / "shared", "a")
    other.store.close()
    own = history_of(tmp_path / "c.duckdb", ["succeeded"])
    backends: list[GroupOutcomes] = [PgFleetHistory(fleet, group="orders", own="c"),
                                     FleetHistory(tmp_path / "shared", "c")]
    for backend in backends:
        backend.refresh()
        outcomes = LiveHistory(own.store, backend).outcomes(PB)
        assert (outcomes.successes, outcomes.fleet_successes, outcomes.fleet_failures) == (1, 4, 0)
    own.store.close()


def test_a_failed_refresh_keeps_the_last_counts(tmp_path: Path, fleet_db: FleetDb, proxy: Proxy) -> None:
    """PostgreSQL cut off: refresh says why in .error, outcomes answer what was read before, nothing raises."""
    fleet = fleet_db.connect(url=fleet_db.url_via(proxy.port))
    migrate(fleet)
    journal = history_of(tmp_path / "a.duckdb", ["succeeded"] * 2)
    ship(journal, fleet, "a")
    journal.store.close()
    pooled = PgFleetHistory(fleet, group="orders", own="c")
    pooled.refresh()
    proxy.down()
    pooled.refresh()
    assert pooled.outcomes(PB) == (2, 0) and "fleet database" in pooled.error
    proxy.up()
    pooled.refresh()
    assert pooled.error == ""


def test_one_flooding_sidecar_counts_at_most_its_cap(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """5,000 succeeded rows from one sidecar count as per_sidecar (100 here), not 5,000."""
    with fleet_db.admin() as admin:
        admin.execute(
            """INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at)
               SELECT 'orders', 'flood', 'f' || i, %s, 'succeeded', 'apply', now() FROM generate_series(1, 5000) i""",
            [PB])
    pooled = PgFleetHistory(fleet, group="orders", own="c", per_sidecar=100)
    pooled.refresh()
    assert pooled.outcomes(PB) == (100, 0)


def test_refresh_never_raises_fleet_unavailable(fleet_db: FleetDb, proxy: Proxy) -> None:
    """Never connected at all: the error is kept, the counts are empty."""
    proxy.down()
    pooled = PgFleetHistory(fleet_db.connect(url=fleet_db.url_via(proxy.port)), group="g", own="c")
    try:
        pooled.refresh()
    except FleetUnavailable:  # pragma: no cover (the assertion says it)
        pytest.fail("refresh raised")
    assert pooled.outcomes(PB) == (0, 0) and pooled.error
