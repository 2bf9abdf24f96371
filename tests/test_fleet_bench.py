"""Lease round trips and the outbox's shipping rate on the session's PostgreSQL: printed, never asserted.

    .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/test_fleet_bench.py   # prints the figures

The asserts check what was done (every acquire, every row shipped), not how fast: this machine is
shared and noisy; docs/fleet.md holds the figures of a larger run. The session's server allows 20 connections, so the
contention test uses 12.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from suture.engine.fleet_values import Lease
from suture.sidecar.fleet_leases import Leases
from suture.sidecar.fleet_outbox import Shipper
from suture.sidecar.fleet_schema import migrate

from .fleet_helpers import FleetDb, fleet_db  # noqa: F401 (fixture)
from .test_fleet_outbox import Journal

pytestmark = pytest.mark.slow


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def test_lease_round_trips(fleet_db: FleetDb) -> None:
    """One client: acquire (with max_concurrent: a transaction) and check, 500 times each."""
    fleet = fleet_db.connect()
    migrate(fleet)
    leases = Leases(fleet)
    acquire, check = [], []
    for i in range(500):
        started = time.perf_counter()
        got = leases.acquire("g", "pb", f"k{i % 50}", "me", 30, max_concurrent=100)
        acquire.append(time.perf_counter() - started)
        assert isinstance(got, Lease)
        started = time.perf_counter()
        assert leases.check(got)
        check.append(time.perf_counter() - started)
        leases.release(got)
    print(f"\nacquire p50 {pct(acquire, 50) * 1e3:.2f} ms p99 {pct(acquire, 99) * 1e3:.2f} ms;"
          f" check p50 {pct(check, 50) * 1e3:.2f} ms p99 {pct(check, 99) * 1e3:.2f} ms")
    assert len(acquire) == len(check) > 0


def test_contended_acquire(fleet_db: FleetDb) -> None:
    """12 clients, each its own connection, acquire-or-held on one key 100 times: every attempt answers."""
    fleets = [fleet_db.connect() for _ in range(12)]
    migrate(fleets[0])
    times: list[list[float]] = [[] for _ in fleets]
    barrier = threading.Barrier(len(fleets))

    def run(i: int) -> None:
        leases = Leases(fleets[i])
        barrier.wait()
        for _ in range(100):
            started = time.perf_counter()
            got = leases.acquire("g", "hot", "", f"s{i}", 30)
            times[i].append(time.perf_counter() - started)
            if isinstance(got, Lease):
                leases.release(got)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fleets))]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - started
    every = [x for xs in times for x in xs]
    print(f"\n12 clients on one key: p50 {pct(every, 50) * 1e3:.2f} ms p99 {pct(every, 99) * 1e3:.2f} ms,"
          f" {len(every) / wall:.0f} attempts/s")
    assert len(every) == 1200


def test_shipping_rate(tmp_path: Path, fleet_db: FleetDb) -> None:
    """100 finished fixes of 4 steps each ship, every row once; the rate is printed."""
    fleet = fleet_db.connect()
    migrate(fleet)
    journal = Journal(tmp_path / "suture.duckdb")
    for _ in range(100):
        journal.finish(journal.new_fix(3))
    started = time.perf_counter()
    report = Shipper(journal.store, fleet, group="g", sidecar="s").ship_all()
    took = time.perf_counter() - started
    journal.store.close()
    print(f"\nshipped {report.new_fixes} fixes + {report.new_steps} steps in {took:.2f} s:"
          f" {report.new_fixes / took:.0f} fixes/s, {(report.new_fixes + report.new_steps) / took:.0f} rows/s")
    assert (report.new_fixes, report.new_steps) == (100, 400)
