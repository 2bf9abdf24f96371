"""Leases with fencing tokens on a real PostgreSQL: one winner, expiry, monotonic tokens, stale holders refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from suture.engine.fleet_values import Busy, Held, Lease
from suture.sidecar.fleet_leases import Leases
from suture.sidecar.fleet_schema import migrate

from .fleet_helpers import FleetDb, fleet_db  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def leases(fleet_db: FleetDb) -> Iterator[Leases]:
    fleet = fleet_db.connect()
    migrate(fleet)
    yield Leases(fleet)


def take(leases: Leases, holder: str, ttl: float = 30.0, key: str = "", **kw: int) -> Lease | Held | Busy:
    return leases.acquire("orders", "cache-restart", key, holder, ttl, **kw)


def test_a_free_target_is_leased(leases: Leases) -> None:
    """The first to ask gets a lease with a token, expiring a TTL from now (server time)."""
    got = take(leases, "orders-1", ttl=30)
    assert isinstance(got, Lease) and got.token > 0 and got.holder == "orders-1"
    assert got.expires_at == pytest.approx(time.time() + 30, abs=5)
    assert leases.check(got)


def test_a_held_target_says_who_holds_it_and_until_when(leases: Leases) -> None:
    """The second asker gets Held: the holder's name, its expiry and token (for the skip's reason)."""
    first = take(leases, "orders-1")
    second = take(leases, "orders-2")
    assert isinstance(first, Lease)
    assert second == Held(by="orders-1", until=first.expires_at, token=first.token)
    assert second.reason().startswith("lease held by orders-1 until ")


def test_racing_sidecars_get_exactly_one_lease(fleet_db: FleetDb) -> None:
    """Eight sidecars, each with its own connection, ask at the same instant: one Lease, seven Held by it."""
    fleets = [fleet_db.connect() for _ in range(8)]
    migrate(fleets[0])
    barrier = threading.Barrier(len(fleets))
    results: dict[str, Lease | Held | Busy] = {}

    def race(i: int) -> None:
        barrier.wait()
        results[f"s{i}"] = Leases(fleets[i]).acquire("orders", "cache-restart", "", f"s{i}", 30)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(fleets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    winners = [name for name, got in results.items() if isinstance(got, Lease)]
    assert len(results) == 8 and len(winners) == 1
    assert {got.by for got in results.values() if isinstance(got, Held)} == set(winners)


def test_an_expired_lease_goes_to_the_next_asker_with_a_larger_token(leases: Leases) -> None:
    """A 0.3 s lease not renewed: after it, another sidecar takes it, and the first one's check fails."""
    first = take(leases, "orders-1", ttl=0.3)
    assert isinstance(first, Lease)
    time.sleep(0.4)
    assert not leases.check(first)
    second = take(leases, "orders-2")
    assert isinstance(second, Lease) and second.token > first.token
    assert leases.renew(first, 30) is None


def test_tokens_grow_across_holders_releases_and_keys(leases: Leases) -> None:
    """Acquire, release, acquire again by another: every token is larger than the one before."""
    tokens = []
    for holder in ("a", "b", "a", "c"):
        got = take(leases, holder)
        assert isinstance(got, Lease)
        tokens.append(got.token)
        assert leases.release(got)
        assert not leases.check(got)
    assert tokens == sorted(tokens) and len(set(tokens)) == 4


def test_a_renewed_lease_outlives_its_first_ttl(leases: Leases) -> None:
    """Renewing a 1 s lease keeps it: after 1.2 s it is still checked true, with the same token."""
    got = take(leases, "orders-1", ttl=1.0)
    assert isinstance(got, Lease)
    time.sleep(0.6)
    renewed = leases.renew(got, 1.0)
    assert renewed is not None and renewed.token == got.token and renewed.expires_at > got.expires_at
    time.sleep(0.6)
    assert leases.check(renewed)
    assert isinstance(take(leases, "orders-2"), Held)


def test_releasing_a_lease_taken_over_changes_nothing(leases: Leases) -> None:
    """The old holder's release after expiry does not free the new holder's lease."""
    old = take(leases, "a", ttl=0.2)
    time.sleep(0.3)
    new = take(leases, "b")
    assert isinstance(old, Lease) and isinstance(new, Lease)
    assert not leases.release(old)
    assert leases.check(new)


def test_max_concurrent_caps_leases_held_across_keys(leases: Leases) -> None:
    """max_concurrent 2: keys x and y are leased, z is Busy until one is released."""
    x, y = take(leases, "a", key="x", max_concurrent=2), take(leases, "b", key="y", max_concurrent=2)
    assert isinstance(x, Lease) and isinstance(y, Lease)
    assert take(leases, "c", key="z", max_concurrent=2) == Busy(held=2, limit=2)
    assert leases.held("orders", "cache-restart") == 2
    leases.release(x)
    assert isinstance(take(leases, "c", key="z", max_concurrent=2), Lease)


def test_max_concurrent_holds_under_a_race(fleet_db: FleetDb) -> None:
    """Eight sidecars race for eight keys with max_concurrent 3: exactly three leases."""
    fleets = [fleet_db.connect() for _ in range(8)]
    migrate(fleets[0])
    barrier = threading.Barrier(len(fleets))
    results: list[Lease | Held | Busy] = []

    def race(i: int) -> None:
        barrier.wait()
        results.append(Leases(fleets[i]).acquire("orders", "pb", f"k{i}", f"s{i}", 30, max_concurrent=3))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(type(r).__name__ for r in results) == ["Busy"] * 5 + ["Lease"] * 3


def test_fixes_started_in_the_last_hour_count_the_group(leases: Leases, fleet_db: FleetDb) -> None:
    """The hourly cap counts applied fixes of the group started within the hour, not older, not others'."""
    with fleet_db.admin() as admin:
        for i, (grp, decision, age) in enumerate([("orders", "apply", 60), ("orders", "apply", 3000),
                                                  ("orders", "propose", 60), ("orders", "apply", 4000),
                                                  ("billing", "apply", 60)]):
            admin.execute(
                """INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at)
                   VALUES (%s, 's', %s, 'pb', 'succeeded', %s, now() - make_interval(secs => %s))""",
                [grp, f"f{i}", decision, age])
    assert leases.fixes_last_hour("orders") == 2


# -- a holder paused past its lease --

CHILD = textwrap.dedent("""
    import os, sys, time
    from suture.sidecar.fleet_pg import FleetConnection
    from suture.sidecar.fleet_leases import Leases
    leases = Leases(FleetConnection(os.environ["FLEET_URL"], password=os.environ["FLEET_PASSWORD"]))
    lease = leases.acquire("orders", "cache-restart", "", "child", 1.0)
    print("token", lease.token, flush=True)
    steps = 0
    while True:  # every step re-checks the token first
        if not leases.check(lease):
            print("stale", steps, flush=True)
            break
        steps += 1
        print("step", steps, flush=True)
        time.sleep(0.05)
""")


def test_a_holder_stopped_past_its_lease_finds_its_token_stale(fleet_db: FleetDb, leases: Leases) -> None:
    """A child holding a 1 s lease is SIGSTOPped, another sidecar takes the lease, SIGCONT: its next check fails."""
    env = {**os.environ, "FLEET_URL": fleet_db.url, "FLEET_PASSWORD": fleet_db.server.password}
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        kind, token = child.stdout.readline().split()
        assert kind == "token"
        assert child.stdout.readline().startswith("step")
        child.send_signal(signal.SIGSTOP)
        time.sleep(1.3)
        taken = take(leases, "parent")
        assert isinstance(taken, Lease) and taken.token > int(token)
        child.send_signal(signal.SIGCONT)
        lines = child.stdout.read().split("\n")
        assert child.wait(10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert [line for line in lines if line.startswith("stale")], lines
    assert lines[-2].startswith("stale") and lines[-1] == ""  # no step after it
    assert leases.check(taken)
