"""The fleet built from suture.yaml, and the worker loop that migrates, ships and refreshes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from suture.engine.config import load_config
from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import Lease
from suture.engine.store import Store
from suture.sidecar.fleet_worker import Fleet, FleetWorker

from .fleet_helpers import NO_BACKOFF, FleetDb, Proxy, fleet_db, proxy  # noqa: F401 (fixtures)
from .test_fleet_outbox import Journal


def fleet_for(tmp_path: Path, url: str, password: str, store: Store, name: str = "orders-1") -> Fleet:
    path = tmp_path / "suture.yaml"
    path.write_text(f"target_root: {tmp_path}\nname: {name}\nfleet: {{postgres: '{url}', group: orders}}\n")
    fleet = Fleet.open(load_config(path, env={"PGPASSWORD": password}), store, backoff=NO_BACKOFF)
    assert fleet is not None
    return fleet


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "suture.duckdb")
    yield j
    j.store.close()


def test_no_fleet_key_no_fleet(tmp_path: Path, journal: Journal) -> None:
    """Without fleet: in suture.yaml, Fleet.open answers None."""
    (tmp_path / "suture.yaml").write_text(f"target_root: {tmp_path}\n")
    assert Fleet.open(load_config(tmp_path / "suture.yaml", env={}), journal.store) is None


def test_one_pass_migrates_ships_and_refreshes(tmp_path: Path, journal: Journal, fleet_db: FleetDb) -> None:
    """On an empty database, the first pass creates the tables and ships the history; leases then work."""
    journal.finish(journal.new_fix(2))
    fleet = fleet_for(tmp_path, fleet_db.url, fleet_db.server.password, journal.store)
    try:
        worker = FleetWorker(fleet)
        worker.step()
        assert (worker.migrated, worker.shipped.new_fixes, worker.shipped.new_steps, worker.last_error) == (
            True, 1, 3, "")
        assert isinstance(fleet.leases.acquire("orders", "pb", "", "orders-1", 30), Lease)
        assert fleet.state.connected
    finally:
        fleet.close()


def test_the_loop_ships_when_poked_and_stops_when_asked(tmp_path: Path, journal: Journal, fleet_db: FleetDb) -> None:
    """A fix journaled, a poke: shipped within a second although the interval is a minute; stop + poke ends it."""
    fleet = fleet_for(tmp_path, fleet_db.url, fleet_db.server.password, journal.store)
    worker = FleetWorker(fleet, interval=60)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="fleet")
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not worker.migrated and time.monotonic() < deadline:
            time.sleep(0.02)
        journal.new_fix(1)
        worker.poke()
        while worker.shipped.new_fixes < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.shipped.new_fixes == 1
    finally:
        stop.set()
        worker.poke()
        thread.join(2)
        fleet.close()
    assert not thread.is_alive()


def test_an_outage_ends_a_pass_not_the_worker(tmp_path: Path, journal: Journal, fleet_db: FleetDb, proxy: Proxy) -> None:
    """PostgreSQL cut off: the pass records why; the decision path's state says disconnected; back: all ships."""
    fleet = fleet_for(tmp_path, fleet_db.url_via(proxy.port), fleet_db.server.password, journal.store)
    try:
        worker = FleetWorker(fleet)
        worker.step()
        proxy.down()
        journal.new_fix(2)
        worker.step()
        assert "fleet database" in worker.last_error
        with pytest.raises(FleetUnavailable, match="fleet database"):
            fleet.leases.acquire("orders", "pb", "", "orders-1", 30)
        assert not fleet.state.connected
        proxy.up()
        worker.step()
        assert (worker.shipped.new_fixes, worker.shipped.new_steps, worker.last_error) == (1, 2, "")
    finally:
        fleet.close()
