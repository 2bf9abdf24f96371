"""The fleet gate against a real PostgreSQL (issue 15 items 3-6): replicas as gates, each on its own connection.

Each test plays several sidecars of one group through their own FleetGate and checks the rows
they leave: leases and tokens, canary rows, the starts the hourly cap counts, suspensions.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from suture.engine.config import FleetConfig
from suture.engine.fix import Outcome
from suture.engine.fleet_values import Backoff
from suture.sidecar.fleet_gate import FleetGate
from suture.sidecar.fleet_leases import Leases
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_suspensions import Suspensions

from .conftest import playbook
from .fleet_helpers import FleetDb, Proxy, fleet, fleet_db  # noqa: F401 (fixtures)

SHARED = playbook("""
    id: cache-flush
    scope: fleet
    when: {log: {source: app, pattern: 'cache stale', at_least: 1, within: 1m}}
    confidence: 90
    fix: [{set: {file: config/settings.yaml, key: cache.flush, value: true}}]
    validate: {window: 10s, expect: [{log: {source: app, pattern: 'cache stale', at_most: 0}}]}
""")
OWN = playbook("""
    id: slow-upstream
    when: {log: {source: app, pattern: 'upstream timeout', at_least: 1, within: 1m}}
    confidence: 90
    fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 5, max: 60}}]
    validate: {window: 10s, expect: [{log: {source: app, pattern: 'upstream timeout', at_most: 0}}]}
""")


def replicas(fleet_db: FleetDb, n: int, **options: Any) -> list[FleetGate]:
    config = FleetConfig(postgres=fleet_db.url, group="orders", **({"lease": 30.0} | options))
    return [FleetGate(config, name=f"orders-{i + 1}", decisions=fleet_db.connect()) for i in range(n)]


def outcome(fix_id: str, status: str, pb_id: str = "slow-upstream") -> Outcome:
    return Outcome(fix_id=fix_id, playbook_id=pb_id, status=status, detail=f"{status} in the test")


def rows(fleet_db: FleetDb, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with fleet_db.admin() as conn:
        return conn.execute(sql, list(args)).fetchall()


def test_one_replica_of_five_takes_a_shared_target_the_others_hear_who(fleet: FleetConnection, fleet_db: FleetDb):
    """Five sidecars ask at once for the same shared target: one acts under a token, four skip naming it."""
    gates = replicas(fleet_db, 5)
    answers: dict[str, Any] = {}
    start = threading.Barrier(5)

    def ask(gate: FleetGate) -> None:
        start.wait()
        answers[gate.own] = gate.admit(SHARED, "", f"f-{gate.own}")

    threads = [threading.Thread(target=ask, args=(g,)) for g in gates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acting = [name for name, v in answers.items() if v.action == "act"]
    assert len(acting) == 1
    winner = acting[0]
    token = answers[winner].token
    assert token is not None and answers[winner].reason == f"fleet lease token {token}"
    for name, verdict in answers.items():
        if name != winner:
            assert verdict.action == "skip" and verdict.reason.startswith(f"lease held by {winner} until ")
    assert rows(fleet_db, "SELECT holder, token FROM fleet_leases") == [(winner, token)]
    assert rows(fleet_db, "SELECT sidecar FROM fleet_starts") == [(winner,)]


def test_a_shared_fix_is_fenced_and_its_end_frees_the_target(fleet: FleetConnection, fleet_db: FleetDb):
    a, b = replicas(fleet_db, 2)
    assert a.admit(SHARED, "", "f-a").action == "act"
    fence = a.fence("f-a", SHARED)
    assert fence is not None and fence.lost() is None
    assert a.fence("f-a", OWN) is None  # a replica's own copy is not fenced: its lease only counts max_concurrent
    a.ended(outcome("f-a", "succeeded", "cache-flush"))
    assert rows(fleet_db, "SELECT holder FROM fleet_leases") == [(None,)]
    later = b.admit(SHARED, "", "f-b")
    assert later.action == "act" and later.token is not None and later.token > fence.token
    assert fence.lost() is not None and "newer lease" in str(fence.lost())


def test_a_stale_token_is_refused_after_expiry_and_takeover(fleet: FleetConnection, fleet_db: FleetDb):
    """A holder that stopped renewing (paused past its lease) finds its token refused at its next step."""
    a, b = replicas(fleet_db, 2, lease=1.0)
    assert a.admit(SHARED, "", "f-a").action == "act"
    fence = a.fence("f-a", SHARED)
    assert fence is not None
    time.sleep(1.3)
    assert fence.lost() == "the lease expired before it was renewed"
    taken = b.admit(SHARED, "", "f-b")
    assert taken.action == "act"
    assert fence.lost() == f"a newer lease (token {taken.token}, held by orders-2) replaced it"


def test_keep_up_renews_a_held_lease_past_its_ttl(fleet: FleetConnection, fleet_db: FleetDb):
    (a,) = replicas(fleet_db, 1, lease=1.0)
    assert a.admit(SHARED, "", "f-a").action == "act"
    fence = a.fence("f-a", SHARED)
    assert fence is not None and a.renew_every == 1.0 / 3
    background = fleet_db.connect()
    for _ in range(6):
        time.sleep(0.3)
        a.keep_up(background)
    assert fence.lost() is None  # 1.8 s after a 1 s lease


def test_the_canary_goes_first_and_the_others_act_on_its_success(fleet: FleetConnection, fleet_db: FleetDb):
    gates = replicas(fleet_db, 3, canary=1, max_concurrent=5)
    first = gates[0].admit(OWN, "", "f-1")
    assert (first.action, first.canary) == ("act", True)
    version = OWN.digest[:12]
    assert rows(fleet_db, "SELECT fix_id, sidecar, state, playbook_version FROM fleet_canaries") == [
        ("f-1", "orders-1", "running", version)]
    waiting = gates[1].admit(OWN, "", "f-2")
    assert (waiting.action, waiting.reason) == ("wait", "waiting for canary f-1 (orders-1)")
    gates[0].ended(outcome("f-1", "succeeded"))
    after = gates[1].admit(OWN, "", "f-2")
    assert (after.action, after.after_canary, after.canary) == ("act", "f-1", False)
    assert after.detail()["canary"] == "f-1"
    assert rows(fleet_db, "SELECT state FROM fleet_canaries") == [("succeeded",)]


def test_a_failed_canary_suspends_the_group_until_a_person_resumes(fleet: FleetConnection, fleet_db: FleetDb):
    gates = replicas(fleet_db, 3, canary=1, max_concurrent=5)
    assert gates[0].admit(OWN, "", "f-1").canary
    gates[0].ended(outcome("f-1", "rolled_back"))
    assert rows(fleet_db, "SELECT state FROM fleet_canaries") == [("failed",)]
    assert rows(fleet_db, "SELECT cause_fix_id, suspended_by FROM fleet_suspensions WHERE resumed_at IS NULL") == [
        ("f-1", "orders-1")]
    for gate in gates[1:]:
        verdict = gate.admit(OWN, "", f"f-{gate.own}")
        assert verdict.action == "skip" and verdict.reason.startswith("suspended for the group: canary f-1 on orders-1")
        assert "suture resume --fleet slow-upstream" in verdict.reason
    assert Suspensions(fleet).resume("orders", "slow-upstream", by="alice")
    again = gates[1].admit(OWN, "", "f-new")
    assert (again.action, again.canary) == ("act", True)  # a new canary round


def test_a_canary_whose_sidecar_vanished_is_judged_by_what_it_shipped(fleet: FleetConnection, fleet_db: FleetDb):
    """Expired running canaries: a shipped failure suspends; no outcome at all frees the slot."""
    gates = replicas(fleet_db, 2, canary=1, max_concurrent=5, lease=1.0)
    assert gates[0].admit(OWN, "", "f-1").canary  # and orders-1 is never heard from again
    time.sleep(1.2)
    taken = gates[1].admit(OWN, "", "f-2")
    assert (taken.action, taken.canary) == ("act", True)
    assert rows(fleet_db, "SELECT fix_id, state FROM fleet_canaries ORDER BY fix_id") == [
        ("f-1", "abandoned"), ("f-2", "running")]
    with fleet_db.admin() as conn:  # orders-2's outbox shipped its failure, then it vanished too
        conn.execute("""INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at)
                        VALUES ('orders', 'orders-2', 'f-2', 'slow-upstream', 'rolled_back', 'apply', now())""")
    time.sleep(1.2)
    verdict = gates[0].admit(OWN, "", "f-3")
    assert verdict.action == "skip" and "suspended for the group" in verdict.reason
    assert rows(fleet_db, "SELECT cause_fix_id FROM fleet_suspensions") == [("f-2",)]


def test_max_concurrent_counts_replicas_in_flight(fleet: FleetConnection, fleet_db: FleetDb):
    gates = replicas(fleet_db, 3, canary=0, max_concurrent=2)
    assert [g.admit(OWN, "", f"f-{g.own}").action for g in gates] == ["act", "act", "wait"]
    assert gates[2].admit(OWN, "", "f-x").reason == (
        "waiting: 2 of at most 2 fixes of this playbook in flight across the group")
    gates[0].ended(outcome("f-orders-1", "succeeded"))
    assert gates[2].admit(OWN, "", "f-y").action == "act"


def test_the_group_hourly_cap_proposes(fleet: FleetConnection, fleet_db: FleetDb):
    gates = replicas(fleet_db, 3, canary=0, max_concurrent=10, fixes_per_hour=2)
    assert gates[0].admit(OWN, "", "f-1").action == "act"
    assert gates[1].admit(SHARED, "", "f-2").action == "act"
    capped = gates[2].admit(OWN, "", "f-3")
    assert capped.action == "propose" and capped.reason.startswith("group-wide hourly cap: 2 fix(es)")


def test_unreachable_fails_closed_and_the_end_is_heard_later(fleet: FleetConnection, fleet_db: FleetDb):
    proxy = Proxy(fleet_db.server.host, fleet_db.server.port)
    try:
        config = FleetConfig(postgres=fleet_db.url_via(proxy.port), group="orders", canary=1, max_concurrent=5)
        gate = FleetGate(config, name="orders-1", decisions=fleet_db.connect(
            url=fleet_db.url_via(proxy.port), backoff=Backoff(base=0.0, cap=0.0, jitter=0.0)))
        assert gate.admit(OWN, "", "f-1").canary
        proxy.down()
        shared = gate.admit(SHARED, "", "f-2")
        assert shared.action == "propose" and "proposed, never applied" in shared.reason
        own = gate.admit(OWN, "", "f-3")
        assert own.action == "act" and own.without_fleet and own.reason.startswith("decided without the fleet: ")
        gate.ended(outcome("f-1", "failed"))  # the group cannot hear it now
        assert gate.renew_every is not None
        proxy.up()
        gate.keep_up(fleet_db.connect())
        assert rows(fleet_db, "SELECT state FROM fleet_canaries") == [("failed",)]
        assert rows(fleet_db, "SELECT count(*) FROM fleet_suspensions") == [(1,)]
        assert gate.renew_every is None
    finally:
        proxy.close()


def test_hostile_canary_and_suspension_rows_do_not_stop_admission(fleet: FleetConnection, fleet_db: FleetDb):
    (gate,) = replicas(fleet_db, 1, canary=1, max_concurrent=5)
    with fleet_db.admin() as conn:
        conn.execute("""INSERT INTO fleet_canaries (grp, playbook_id, playbook_version, fix_id, sidecar, state,
                            expires_at)
                        VALUES ('orders', 'slow-upstream', %s, %s, %s, 'running', 'infinity')""",
                     [OWN.digest[:12], "x" * 2_000, "'); DROP TABLE fleet_fixes; --"])
    verdict = gate.admit(OWN, "", "f-1")
    assert verdict.action == "wait" and len(verdict.reason) < 700 and "DROP TABLE" in verdict.reason
    with fleet_db.admin() as conn:
        conn.execute("""INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason)
                        VALUES ('orders', 'slow-upstream', %s, %s)""", ["\u202e" * 10, "r" * 2_000_000])
    verdict = gate.admit(OWN, "", "f-2")
    assert verdict.action == "skip" and len(verdict.reason) < 700
    assert Leases(fleet).held("orders", "slow-upstream") == 0


def test_explain_shows_the_caps_the_canaries_and_what_the_group_would_say(fleet: FleetConnection,
                                                                          fleet_db: FleetDb):
    gates = replicas(fleet_db, 3, canary=1, max_concurrent=1, fixes_per_hour=7)
    assert gates[0].admit(OWN, "", "f-1").canary
    answer = gates[1].explain(fleet_db.connect(), OWN)
    assert answer == {"group": "orders", "scope": "replica", "canary": 1, "max_concurrent": 1, "fixes_per_hour": 7,
                      "lease_seconds": 30.0, "reachable": True, "in_flight": 1, "started_last_hour": 1,
                      "suspended": None, "canaries": [{"fix_id": "f-1", "sidecar": "orders-1", "state": "running"}],
                      "would": {"action": "wait", "reason": "waiting for canary f-1 (orders-1)"}}
    shared = gates[1].explain(fleet_db.connect(), SHARED)
    assert (shared["in_flight"], shared["would"]["action"]) == (0, "act")
    gates[0].ended(outcome("f-1", "succeeded"))
    assert gates[1].explain(fleet_db.connect(), OWN)["would"] == {
        "action": "act", "reason": "canary f-1 (orders-1) succeeded", "canary": "f-1"}


def test_explain_with_the_fleet_down_says_what_fails_closed(fleet_db: FleetDb):
    (gate,) = replicas(fleet_db, 1)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    answer = gate.explain(fleet_db.connect(url=fleet_db.url_via(port)), SHARED)
    assert answer["reachable"] is False and answer["error"]
    assert answer["would"]["action"] == "propose"


def test_a_canary_cut_short_by_its_sidecar_stopping_frees_the_slot(fleet: FleetConnection, fleet_db: FleetDb):
    """A deploy stops the canary's sidecar mid-window: the rollback says nothing about the fix, no suspension."""
    gates = replicas(fleet_db, 2, canary=1, max_concurrent=5)
    assert gates[0].admit(OWN, "", "f-1").canary
    gates[0].ended(outcome("f-1", "rolled_back"), interrupted=True)
    assert rows(fleet_db, "SELECT state FROM fleet_canaries") == [("abandoned",)]
    assert rows(fleet_db, "SELECT count(*) FROM fleet_suspensions") == [(0,)]
    assert gates[1].admit(OWN, "", "f-2").canary


def test_starts_dated_in_the_future_do_not_hold_the_hourly_cap_for_ever(fleet: FleetConnection, fleet_db: FleetDb):
    """Rows no start wrote (dated 'infinity' or next year, by a buggy or hostile sidecar) are not counted."""
    (gate,) = replicas(fleet_db, 1, canary=0, max_concurrent=10, fixes_per_hour=2)
    with fleet_db.admin() as conn:
        for i, when in enumerate(("infinity", "2099-01-01", "now() + interval '2 hours'")):
            conn.execute(f"INSERT INTO fleet_starts (grp, playbook_id, fix_id, sidecar, started_at) "
                         f"VALUES ('orders', 'x', 'f-h{i}', 'evil', {when if 'now' in when else repr(when)})")
    assert gate.admit(OWN, "", "f-1").action == "act"
    assert gate.explain(fleet_db.connect(), OWN)["started_last_hour"] == 1
