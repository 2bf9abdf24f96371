"""The Fleet view against a real PostgreSQL: heartbeats, and the overview of a group read back bounded and cleaned,
whatever the rows hold (huge text, NULLs, SQL in names, control characters, infinite times, negative counts)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import TEXT_LIMIT, Lease
from suture.sidecar.fleet_leases import Leases
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_suspensions import Suspensions
from suture.sidecar.fleet_view import LIMIT, REASON_LIMIT, STALE_AFTER, FleetOverview, heartbeat, read_overview

from .fleet_helpers import NO_BACKOFF, FleetDb, fleet, fleet_db  # noqa: F401 (fixtures)

HUGE = "x" * 1_000_000  # in columns of no index
LONG = "y" * 2_000  # in key columns: a btree entry holds at most a third of a page
INJECTION = "pb'); DROP TABLE fleet_fixes; --"
MARKUP = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def beat(fleet: FleetConnection, sidecar: str = "orders-1", group: str = "orders", **kw: Any) -> None:
    values: dict[str, Any] = {"version": "1.2.3", "playbooks": 4, "in_flight": 1, "started_at": time.time() - 60}
    heartbeat(fleet, group=group, sidecar=sidecar, **(values | kw))


def admin(fleet_db: FleetDb, sql: str, args: list[Any] | None = None) -> None:
    with fleet_db.admin() as conn:
        conn.execute(sql, args or [])


def fix_row(fleet_db: FleetDb, sidecar: str, fix_id: str, playbook: str, status: str, grp: str = "orders") -> None:
    admin(fleet_db, """INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at, finished_at)
                       VALUES (%s, %s, %s, %s, %s, 'apply', now(), now())""", [grp, sidecar, fix_id, playbook, status])


def canary_row(fleet_db: FleetDb, fix_id: str, state: str, *, version: str = "v1", started: str = "now()",
               expires: str = "now() + interval '1 minute'", playbook: str = "pb", sidecar: str = "orders-2") -> None:
    admin(fleet_db, f"""INSERT INTO fleet_canaries (grp, playbook_id, playbook_version, fix_id, sidecar, state,
                                                    started_at, expires_at)
                        VALUES ('orders', %s, %s, %s, %s, %s, {started}, {expires})""",
          [playbook, version, fix_id, sidecar, state])


# -- heartbeats and replicas --


def test_a_heartbeat_shows_this_sidecar_as_a_fresh_replica(fleet: FleetConnection) -> None:
    """After one heartbeat the overview lists this sidecar, marked own, seen just now, not stale."""
    beat(fleet)
    view = read_overview(fleet, "orders", own="orders-1")
    [replica] = view.replicas
    assert (replica.sidecar, replica.version, replica.playbooks, replica.in_flight) == ("orders-1", "1.2.3", 4, 1)
    assert replica.own and not replica.stale
    assert replica.age is not None and replica.age < 5
    assert view.at is not None and abs(view.at - time.time()) < 60
    assert view.errors == () and view.cut == ()


def test_heartbeats_update_one_row_per_sidecar(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A second heartbeat rewrites the sidecar's row instead of adding one."""
    beat(fleet, in_flight=1)
    beat(fleet, in_flight=3, version="1.2.4")
    [replica] = read_overview(fleet, "orders", own="orders-1").replicas
    assert (replica.in_flight, replica.version) == (3, "1.2.4")


def test_a_replica_not_seen_for_three_intervals_is_stale(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """seen_at older than STALE_AFTER (server clock): stale; this sidecar, just seen, is not."""
    beat(fleet, sidecar="orders-1")
    beat(fleet, sidecar="orders-2")
    admin(fleet_db, "UPDATE fleet_replicas SET seen_at = now() - make_interval(secs => %s) WHERE sidecar = 'orders-2'",
          [STALE_AFTER + 5])
    replicas = {r.sidecar: r for r in read_overview(fleet, "orders", own="orders-1").replicas}
    assert replicas["orders-2"].stale and not replicas["orders-1"].stale


def test_a_heartbeat_with_odd_values_of_its_own_is_stored_sanely(fleet: FleetConnection) -> None:
    """A NUL in the version, negative counts, an unknown start: stored as text, 0 and NULL."""
    beat(fleet, version="1.0\x00rc", playbooks=-3, in_flight=2**40, started_at=float("nan"))
    [replica] = read_overview(fleet, "orders", own="orders-1").replicas
    assert replica.version == "1.0\ufffdrc" and replica.playbooks == 0 and replica.in_flight == 2**31 - 1
    assert replica.started_at is None


def test_only_the_groups_own_rows_are_shown(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """Replicas, suspensions and outcomes of another group stay out of the overview."""
    beat(fleet, group="billing", sidecar="billing-1")
    Suspensions(fleet).suspend("billing", "pb", by="billing-1", reason="canary failed")
    fix_row(fleet_db, "billing-1", "f-1", "pb", "succeeded", grp="billing")
    view = read_overview(fleet, "orders", own="orders-1")
    assert (view.replicas, view.suspensions, view.outcomes) == ((), (), ())


# -- leases, canaries, suspensions, outcomes --


def test_leases_held_now_are_listed_with_holder_and_token(fleet: FleetConnection) -> None:
    """A held lease is shown; a released one is not."""
    leases = Leases(fleet)
    held = leases.acquire("orders", "cache-restart", "redis-1", "orders-2", 30)
    gone = leases.acquire("orders", "cache-restart", "redis-2", "orders-3", 30)
    assert isinstance(held, Lease) and isinstance(gone, Lease)
    leases.release(gone)
    [lease] = read_overview(fleet, "orders", own="orders-1").leases
    assert (lease.playbook_id, lease.key, lease.holder, lease.token) == ("cache-restart", "redis-1", "orders-2",
                                                                         held.token)
    assert lease.expires_at is not None and abs(lease.expires_at - held.expires_at) < 0.01


def test_an_expired_lease_is_not_held(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A lease row past its expiry is not listed, whoever it names."""
    admin(fleet_db, "INSERT INTO fleet_leases VALUES ('orders', 'pb', '', 'orders-2', 7, now(), now() - interval '1 s')")
    assert read_overview(fleet, "orders", own="orders-1").leases == ()


def test_each_playbook_version_shows_its_running_canary_else_its_last(fleet: FleetConnection,
                                                                      fleet_db: FleetDb) -> None:
    """v1: a failed canary then a running one -> running; v2: two ended -> the later; an expired 'running' is flagged."""
    canary_row(fleet_db, "f-1", "failed", started="now() - interval '10 min'")
    canary_row(fleet_db, "f-2", "running")
    canary_row(fleet_db, "f-3", "succeeded", version="v2", started="now() - interval '5 min'")
    canary_row(fleet_db, "f-4", "failed", version="v2", started="now() - interval '1 min'")
    canary_row(fleet_db, "f-5", "running", version="v3", expires="now() - interval '1 s'")
    canaries = {c.version: c for c in read_overview(fleet, "orders", own="orders-1").canaries}
    assert (canaries["v1"].fix_id, canaries["v1"].state, canaries["v1"].expired) == ("f-2", "running", False)
    assert (canaries["v2"].fix_id, canaries["v2"].state) == ("f-4", "failed")
    assert canaries["v3"].expired and canaries["v3"].sidecar == "orders-2"


def test_active_suspensions_are_listed_and_resumed_ones_are_not(fleet: FleetConnection) -> None:
    """Suspend two playbooks, resume one: the other is listed with its reason, who, since and cause."""
    suspensions = Suspensions(fleet)
    suspensions.suspend("orders", "pb-a", by="orders-2", reason="canary f-9 rolled back", cause_fix_id="f-9")
    suspensions.suspend("orders", "pb-b", by="orders-3", reason="canary f-8 rolled back", cause_fix_id="f-8")
    suspensions.resume("orders", "pb-b", by="alice")
    [s] = read_overview(fleet, "orders", own="orders-1").suspensions
    assert (s.playbook_id, s.reason, s.by, s.cause_fix_id) == ("pb-a", "canary f-9 rolled back", "orders-2", "f-9")
    assert s.since is not None and abs(s.since - time.time()) < 60


def test_the_success_rate_per_playbook_counts_the_whole_group(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """3 succeeded and 1 rolled back on two sidecars: rate 0.75, 2 sidecars; a playbook never judged has no rate."""
    for i, (sidecar, status) in enumerate([("a", "succeeded"), ("a", "succeeded"), ("b", "succeeded"),
                                           ("b", "rolled_back"), ("b", "proposed")]):
        fix_row(fleet_db, sidecar, f"f-{i}", "pb", status)
    fix_row(fleet_db, "a", "f-9", "pb-new", "applying")
    rates = {o.playbook_id: o for o in read_overview(fleet, "orders", own="a").outcomes}
    assert (rates["pb"].successes, rates["pb"].failures, rates["pb"].sidecars, rates["pb"].rate) == (3, 1, 2, 0.75)
    assert rates["pb-new"].rate is None


# -- hostile rows --


def test_huge_text_is_cut_in_every_list(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A megabyte in a version, a holder, a reason (2,000 characters in names that are keys): at most TEXT_LIMIT
    (REASON_LIMIT for reasons) printable characters."""
    admin(fleet_db, "INSERT INTO fleet_replicas (grp, sidecar, suture_version) VALUES ('orders', %s, %s)", [LONG, HUGE])
    admin(fleet_db, "INSERT INTO fleet_leases VALUES ('orders', %s, %s, %s, 1, now(), now() + interval '1 min')",
          [LONG, LONG, HUGE])
    admin(fleet_db, "INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason) VALUES ('orders', %s, %s, %s)",
          [LONG, HUGE, HUGE])
    view = read_overview(fleet, "orders", own="orders-1")
    texts = [view.replicas[0].sidecar, view.replicas[0].version, view.leases[0].holder, view.leases[0].key,
             view.suspensions[0].playbook_id, view.suspensions[0].by]
    assert all(len(t) == TEXT_LIMIT and t.endswith("…") for t in texts)
    assert len(view.suspensions[0].reason) == REASON_LIMIT


def test_sql_markup_and_control_characters_in_names_are_plain_text(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """SQL, HTML and terminal escapes in a row come back as text (controls replaced); the tables are intact."""
    name = INJECTION + MARKUP + "\x1b[2J\r\n"
    admin(fleet_db, "INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason) VALUES ('orders', %s, %s, %s)",
          [name, name, name])
    [s] = read_overview(fleet, "orders", own="orders-1").suspensions
    assert s.playbook_id == INJECTION + MARKUP + "?[2J??"
    with fleet_db.admin() as conn:
        assert conn.execute("SELECT to_regclass('fleet_fixes') IS NOT NULL").fetchone() == (True,)


def test_nulls_negative_counts_and_infinite_times_do_not_stop_the_reader(fleet: FleetConnection,
                                                                         fleet_db: FleetDb) -> None:
    """NULL start and cause, in_flight -5, seen 'infinity', expiry 'infinity', finished '-infinity': read as
    unknown or 0; a replica whose time cannot be read is stale."""
    admin(fleet_db, """INSERT INTO fleet_replicas (grp, sidecar, playbooks, in_flight, started_at, seen_at)
                       VALUES ('orders', 'odd', -1, -5, NULL, 'infinity')""")
    admin(fleet_db, "INSERT INTO fleet_leases VALUES ('orders', 'pb', '', 'odd', -3, '-infinity', 'infinity')")
    admin(fleet_db, """INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason, suspended_at, cause_fix_id)
                       VALUES ('orders', 'pb', '', '', 'infinity', NULL)""")
    admin(fleet_db, """INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at, finished_at)
                       VALUES ('orders', 'odd', 'f', 'pb', 'succeeded', 'apply', '-infinity', '-infinity')""")
    view = read_overview(fleet, "orders", own="orders-1")
    assert view.errors == (), view.errors
    [replica], [lease], [suspension], [rate] = view.replicas, view.leases, view.suspensions, view.outcomes
    assert (replica.in_flight, replica.playbooks, replica.started_at, replica.seen_at, replica.age) == (0, 0, None,
                                                                                                        None, None)
    assert replica.stale
    assert (lease.token, lease.acquired_at, lease.expires_at) == (0, None, None)
    assert (suspension.since, suspension.cause_fix_id, rate.last_finished_at) == (None, "", None)
    json.dumps(view.as_json(), allow_nan=False)


def test_a_replica_seen_in_the_future_is_stale(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A seen_at an hour ahead was written by no heartbeat of ours (they use the server clock): stale."""
    admin(fleet_db, "INSERT INTO fleet_replicas (grp, sidecar, seen_at) VALUES ('orders', 'ahead', now() + interval '1 h')")
    [replica] = read_overview(fleet, "orders", own="orders-1").replicas
    assert replica.stale


def test_every_list_is_bounded_and_says_so_and_this_sidecar_stays_first(fleet: FleetConnection,
                                                                        fleet_db: FleetDb) -> None:
    """LIMIT + 50 replicas, all seen after this one: LIMIT are shown, this sidecar first, 'replicas' is cut."""
    beat(fleet, sidecar="orders-1")
    admin(fleet_db, """INSERT INTO fleet_replicas (grp, sidecar, seen_at)
                       SELECT 'orders', 'flood-' || i, now() + interval '1 s' FROM generate_series(1, %s) AS i""",
          [LIMIT + 50])
    admin(fleet_db, """INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason)
                       SELECT 'orders', 'pb-' || i, 'x', 'y' FROM generate_series(1, %s) AS i""", [LIMIT + 1])
    view = read_overview(fleet, "orders", own="orders-1")
    assert len(view.replicas) == LIMIT and view.replicas[0].sidecar == "orders-1"
    assert len(view.suspensions) == LIMIT
    assert set(view.cut) == {"replicas", "suspensions"}


def test_a_list_the_server_refuses_is_empty_and_named_the_rest_is_read(fleet: FleetConnection,
                                                                       fleet_db: FleetDb) -> None:
    """With the fleet_outcomes view gone, the outcomes are empty and named in errors; the replicas still come."""
    beat(fleet)
    admin(fleet_db, "DROP VIEW fleet_outcomes")
    view = read_overview(fleet, "orders", own="orders-1")
    assert len(view.replicas) == 1 and view.outcomes == ()
    assert len(view.errors) == 1 and view.errors[0].startswith("outcomes: ") and "fleet_outcomes" in view.errors[0]


def test_an_unreachable_fleet_raises_fleet_unavailable() -> None:
    """Nothing listens: FleetUnavailable, within the connect timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fleet = FleetConnection(f"postgresql://suture@127.0.0.1:{port}/suture", password="pw", backoff=NO_BACKOFF)
    started = time.monotonic()
    with pytest.raises(FleetUnavailable, match="cannot reach"):
        read_overview(fleet, "orders", own="orders-1")
    with pytest.raises(FleetUnavailable):
        beat(fleet)
    assert time.monotonic() - started < 10


def test_the_overview_as_json_has_iso_times_and_plain_values(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """as_json: every list present, times as ISO 8601 with Z, the rate a number, valid strict JSON."""
    beat(fleet)
    Suspensions(fleet).suspend("orders", "pb", by="orders-2", reason=MARKUP, cause_fix_id="f-1")
    fix_row(fleet_db, "orders-2", "f-1", "pb", "rolled_back")
    data = read_overview(fleet, "orders", own="orders-1").as_json()
    assert set(data) >= {"group", "own", "at", "replicas", "leases", "canaries", "suspensions", "outcomes", "cut",
                         "errors"}
    assert data["replicas"][0]["seen_at"].endswith("Z") and data["suspensions"][0]["reason"] == MARKUP
    assert data["outcomes"][0]["rate"] == 0.0
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_an_empty_overview_is_a_valid_value() -> None:
    """A FleetOverview with nothing read yet renders as JSON with empty lists."""
    data = FleetOverview(group="orders", own="orders-1", at=None).as_json()
    assert data["replicas"] == [] and data["at"] is None
