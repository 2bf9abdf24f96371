"""Fleet mode with real sidecar processes on a real PostgreSQL 15 (issue 15 item 8).

Each sidecar is ``suture run`` in a process of its own (tests/fleet_procs.py); what is asserted is read from
the rows they wrote: their DuckDB journals (through their API while they run, from the file once they
stopped) and the group's tables in PostgreSQL. The PostgreSQL is this module's own, so a test may stop it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from suture.engine.status import FINAL

from .fleet_procs import GROUP, FleetProcs, Sidecar, dedicated_pg, procs, wait_until  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

BUMP = "adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1, max: 1000}"


def playbook(pb_id: str, pattern: str, *, confidence: int = 90, window: str = "3s", bad: str = "FATAL",
             scope: str = "replica", keyed: bool = False, fix: tuple[str, ...] = (BUMP,)) -> str:
    """A playbook that fires on one line of ``pattern`` (``keyed``: one fix per ``key=...``; each new key is a
    new fix) and is validated by ``bad`` not being logged within ``window``."""
    key = " key=(?P<key>[a-z0-9]+)" if keyed else ""
    group_by = ", group_by: [key]" if keyed else ""
    steps = "".join(f"\n  - {step}" for step in fix)
    return (f"id: {pb_id}\nscope: {scope}\n"
            f"when: {{log: {{source: app, pattern: '{pattern}{key}'{group_by}, at_least: 1, within: 1m}}}}\n"
            f"confidence: {confidence}\nfix:{steps}\n"
            f"validate: {{window: {window}, expect: [{{log: {{source: app, pattern: '{bad}', at_most: 0}}}}]}}\n")


# applied (confidence 90 over the threshold 85), validated in 2 s; proposed (confidence 40), final at once
APPLY = playbook("slow-upstream", "upstream timeout", window="2s", keyed=True)
PROPOSE = playbook("noisy-cache", "cache miss storm", confidence=40, keyed=True,
                   fix=("adjust: {file: config/settings.yaml, key: upstream.request_delay_s, add: 0.1, max: 100}",))


def is_final(fix: dict[str, Any]) -> bool:
    return fix["status"] in FINAL


def settled(sidecar: Sidecar, count: int) -> list[dict[str, Any]] | None:
    """Its fixes once it has ``count`` and every one is final."""
    fixes = sidecar.fixes()
    return fixes if len(fixes) >= count and all(is_final(f) for f in fixes) else None


def shipped(procs: FleetProcs, sidecars: list[Sidecar]) -> bool:
    """Whether PostgreSQL holds every fix of every sidecar in its final status, with every journal step."""
    try:
        fleet = {(r["sidecar"], r["id"]): (r["status"], r["steps"]) for r in procs.rows(
            """SELECT f.sidecar, f.id, f.status, (SELECT count(*) FROM fleet_steps s WHERE s.grp = f.grp
                   AND s.sidecar = f.sidecar AND s.fix_id = f.id) AS steps
               FROM fleet_fixes f WHERE f.grp = %s""", [GROUP])}
    except psycopg.Error:  # the server is down (or just back and not taking connections yet)
        return False
    for s in sidecars:
        for fix in s.fixes():
            detail = s.fix(fix["id"])
            if fleet.get((s.name, fix["id"])) != (fix["status"], len(detail["steps"])):
                return False
    return True


def test_postgres_stopped_mid_run_loses_and_duplicates_nothing(procs: FleetProcs) -> None:
    """3 replicas go on fixing their own targets while the group's PostgreSQL is down; once it is back, it holds
    each of their fixes once, in its final status, with exactly the journal steps of the local DuckDB."""
    procs.playbook(APPLY)
    procs.playbook(PROPOSE)
    sidecars = procs.start(3, canary=0, max_concurrent=100)
    procs.keep_logging()

    def round_of(key: str, count: int) -> None:
        for s in sidecars:
            s.trigger(f"ERROR upstream timeout key={key}")
            s.trigger(f"WARN cache miss storm key={key}")
        for s in sidecars:
            wait_until(f"{s.name}: {count} final fixes", lambda s=s: settled(s, count), 30,
                       explain=lambda s=s: f"{s.summary()}\n{s.output()[-2000:]}")

    round_of("a1", 2)
    wait_until("the first round shipped", lambda: shipped(procs, sidecars), 30, every=0.5, explain=procs.logs)
    before = procs.rows("SELECT count(*) AS n FROM fleet_fixes")[0]["n"]
    assert before == 6

    procs.pg.stop()
    round_of("a2", 4)  # decided, applied and validated locally with the fleet down
    round_of("a3", 6)
    for s in sidecars:  # one more fix each, still validating when the server comes back
        s.trigger("ERROR upstream timeout key=a4")
    for s in sidecars:  # decided with the fleet down (its 2 s window is usually still open at the restart)
        s.wait_fix(lambda f: f["group_key"] == "key=a4" and f["status"] in FINAL | {"validating"}, 15, "a4 applied")
    for s in sidecars:
        state = s.get_json("/api/fleet")["state"]
        assert state is not None and state["connected"] is False, state
    procs.pg.start()

    for s in sidecars:
        wait_until(f"{s.name}: 7 final fixes", lambda s=s: settled(s, 7), 30, explain=lambda s=s: str(s.summary()))
    wait_until("everything shipped after the restart", lambda: shipped(procs, sidecars), 60, every=0.5,
               explain=procs.logs)
    procs.stop_all()
    assert [s.proc.returncode for s in sidecars if s.proc] == [0, 0, 0]

    fleet_fixes = procs.rows("SELECT sidecar, id, playbook_id, group_key, status, decision FROM fleet_fixes "
                             "WHERE grp = %s", [GROUP])
    fleet_steps = procs.rows("SELECT sidecar, fix_id, seq, step FROM fleet_steps WHERE grp = %s", [GROUP])
    local_fixes: dict[tuple[str, str], tuple[str, str, str, str]] = {}
    local_steps: Counter[tuple[str, str]] = Counter()
    local_seqs: set[tuple[str, str, int, str]] = set()
    for s in sidecars:
        fixes, steps = s.history()
        assert len(fixes) == 7, fixes
        for f in fixes:
            local_fixes[(s.name, f["id"])] = (f["playbook_id"], f["group_key"], f["status"], f["decision"])
        for st in steps:
            local_steps[(s.name, st["fix_id"])] += 1
            local_seqs.add((s.name, st["fix_id"], st["seq"], st["step"]))
        # the applies decided while the fleet was down say so in their decided step; the first round's do not
        keys = {f["id"]: f["group_key"] for f in fixes if f["decision"] == "apply"}
        flagged = {keys[st["fix_id"]]: bool(json.loads(st["detail"]).get("fleet", {}).get("without_fleet"))
                   for st in steps if st["step"] == "decided" and st["fix_id"] in keys}
        assert flagged == {"key=a1": False, "key=a2": True, "key=a3": True, "key=a4": True}, (s.name, flagged)
    remote = {(r["sidecar"], r["id"]): (r["playbook_id"], r["group_key"], r["status"], r["decision"])
              for r in fleet_fixes}
    assert len(fleet_fixes) == len(remote) == 21
    assert remote == local_fixes  # the same fixes, none lost, none extra, the same final statuses
    assert Counter((r["sidecar"], r["fix_id"]) for r in fleet_steps) == local_steps
    assert {(r["sidecar"], r["fix_id"], r["seq"], r["step"]) for r in fleet_steps} == local_seqs
    statuses = Counter(v[2] for v in local_fixes.values())
    assert statuses == {"succeeded": 12, "proposed": 9}, statuses  # a1-a4 applied, three proposals, per replica
    for s in sidecars:  # each target was healed by its own four fixes: 5 + 4 * 1
        assert "timeout_s: 9" in (s.target / "config" / "settings.yaml").read_text()


HUGE = "x" * 1_000_000
SQL_NAME = "'; DROP TABLE fleet_fixes; --"
ODD_NAME = "r\u00e9plica \u202e\x1b[2J\u2603"


def hostile_rows(procs: FleetProcs, tag: str) -> None:
    """Rows a buggy or hostile sidecar of the group could write, in every fleet table."""
    with procs.pg.admin(procs.database) as conn:
        # another sidecar's fixes: absurd numbers, text where a status or a name belongs, odd JSON (decision is
        # indexed: PostgreSQL itself refuses a megabyte there)
        for i, (sidecar, status, decision) in enumerate([
            (SQL_NAME, "failed", "apply"), (ODD_NAME, "succeeded", "apply"), ("evil", HUGE, "x" * 3000),
            ("evil", "succeeded", SQL_NAME), ("x" * 2000, "rolled_back", "apply"),
        ]):
            conn.execute(
                """INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, playbook_version, group_key, status, decision,
                       reason, mode, started_at, finished_at, base_confidence, adjusted_confidence, threshold,
                       successes, failures, fleet_successes, fleet_failures, errors_before, errors_after, changes,
                       detail, fix_types)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz, %s, %s, %s,
                           %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)""",
                [GROUP, sidecar, f"{tag}-{i}-{SQL_NAME}", "slow-upstream" if i % 2 else SQL_NAME, HUGE, HUGE,
                 status, decision, HUGE, SQL_NAME, "-infinity" if i % 2 else "1970-01-01",
                 "infinity" if i % 2 else "9999-12-31", -1e308, float("nan"), 1e308, -2**31, 2**31 - 1, -7,
                 2**31 - 1, -1, 2**31 - 1, ['"not a list"', '{"a": [1, {"b": null}]}', "[1, 2, 3]", "null",
                                            "[{}]"][i], HUGE, HUGE],
            )
            conn.execute(
                """INSERT INTO fleet_steps (grp, sidecar, fix_id, seq, step, happened_at, detail, fence)
                   VALUES (%s, %s, %s, %s, %s, %s::timestamptz, %s::jsonb, %s)""",
                [GROUP, sidecar, f"{tag}-{i}-{SQL_NAME}", -i, HUGE, "infinity",
                 ['{"fence": "NaN"}', '{"fence": -1}', '[]', '"fence"', '{"fence": 9223372036854775807}'][i],
                 [-(2**63), None, 0, 2**63 - 1, -1][i]],
            )
        # leases: a far-future expiry, a megabyte holder, negative and maximal tokens
        for playbook_id, key, holder, token, expires in [
            ("slow-upstream", "", HUGE, -5, "'9999-12-31'"), ("slow-upstream", SQL_NAME, SQL_NAME, 2**63 - 1,
                                                               "'infinity'"),
            (SQL_NAME, HUGE[:2000], ODD_NAME, 0, "'-infinity'"), (f"{tag}-{HUGE[:100]}", "k", None, -(2**63), "now()"),
        ]:
            conn.execute(
                f"""INSERT INTO fleet_leases (grp, playbook_id, key, holder, token, acquired_at, expires_at)
                    VALUES (%s, %s, %s, %s, %s, 'infinity', {expires}::timestamptz)
                    ON CONFLICT (grp, playbook_id, key) DO UPDATE SET holder = EXCLUDED.holder,
                        token = EXCLUDED.token, expires_at = EXCLUDED.expires_at""",
                [GROUP, playbook_id, key, holder, token],
            )
        # suspensions and canaries of playbooks no sidecar has (suspending a real one is a denial of service the
        # docs name: it is what a suspension is for), with megabyte reasons and impossible times
        conn.execute(
            """INSERT INTO fleet_suspensions (grp, playbook_id, suspended_at, suspended_by, reason, cause_fix_id)
               VALUES (%s, %s, 'infinity', %s, %s, %s), (%s, %s, '-infinity', %s, %s, NULL)
               ON CONFLICT DO NOTHING""",
            [GROUP, f"{tag}{SQL_NAME}", HUGE, HUGE, HUGE, GROUP, f"{tag}-{HUGE[:3000]}", ODD_NAME, SQL_NAME],
        )
        for i, state in enumerate(["running", "failed", "succeeded"]):
            conn.execute(
                """INSERT INTO fleet_canaries (grp, playbook_id, playbook_version, fix_id, sidecar, state, detail,
                       started_at, expires_at, ended_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, '-infinity', 'infinity', %s::timestamptz)""",
                [GROUP, f"{tag}-{i}{SQL_NAME}", "x" * 3000, f"{tag}-{i}-{SQL_NAME}", HUGE, state, HUGE,
                 None if state == "running" else "1970-01-01"],
            )
            conn.execute(
                "INSERT INTO fleet_starts (grp, playbook_id, fix_id, sidecar, started_at) VALUES (%s, %s, %s, %s, %s)",
                [GROUP, SQL_NAME, f"{tag}-{i}", f"{SQL_NAME}{i}", ["infinity", "-infinity", "9999-12-31"][i]],
            )
        # replicas with weird names, negative and maximal counts, times at infinity
        for i, name in enumerate([SQL_NAME, ODD_NAME, "x" * 2500, "", "\u0001\u0002"]):
            conn.execute(
                """INSERT INTO fleet_replicas (grp, sidecar, suture_version, playbooks, in_flight, started_at, seen_at)
                   VALUES (%s, %s, %s, %s, %s, %s::timestamptz, %s::timestamptz)
                   ON CONFLICT (grp, sidecar) DO UPDATE SET seen_at = EXCLUDED.seen_at""",
                [GROUP, f"{tag}{name}", HUGE, [-1, 2**31 - 1, 0, -(2**31), 7][i], [2**31 - 1, -1, 0, 3, -(2**31)][i],
                 ["-infinity", "infinity", None, "1970-01-01", "9999-12-31"][i],
                 ["infinity", "-infinity", "1970-01-01", "9999-12-31", "now()"][i]],
            )


def test_a_hostile_fleet_row_does_not_stop_a_running_sidecar(procs: FleetProcs) -> None:
    """Rows of a buggy or hostile sidecar in every fleet table, written before the sidecar starts (so its first
    reads see them) and again while it runs: it keeps running, /metrics and /api/fleet answer, and its fixes go on
    shipping, each once."""
    from suture.sidecar.fleet_pg import FleetConnection
    from suture.sidecar.fleet_schema import migrate

    procs.playbook(APPLY)
    procs.playbook(PROPOSE)
    migrator = FleetConnection(procs.url, password=procs.pg.password)
    try:
        migrate(migrator)  # the tables exist before the sidecar starts, so the hostile rows can be there first
    finally:
        migrator.close()
    hostile_rows(procs, "before")
    [sidecar] = procs.start(1, canary=0)
    procs.keep_logging()
    sidecar.trigger("ERROR upstream timeout key=b1")
    first = sidecar.wait_fix(lambda f: f["group_key"] == "key=b1" and is_final(f), 20, "b1 final")
    hostile_rows(procs, "during")
    sidecar.trigger("WARN cache miss storm key=b2")
    sidecar.trigger("ERROR upstream timeout key=b3")
    later = sidecar.wait_fix(lambda f: f["group_key"] == "key=b3" and is_final(f), 20, "b3 final")
    proposal = sidecar.wait_fix(lambda f: f["group_key"] == "key=b2" and is_final(f), 5, "b2 final")

    def read_during() -> bool:  # a worker pass has read the group since the rows of "during" were written
        overview = sidecar.get_json("/api/fleet")["overview"] or {}
        return any(r["sidecar"].startswith("during") for r in overview.get("replicas", []))

    wait_until("the fleet worker read the hostile rows", read_during, 15, every=0.3, explain=sidecar.output)
    overview = sidecar.get_json("/api/fleet")["overview"]
    assert overview["replicas"] and all(len(r["sidecar"]) <= 256 for r in overview["replicas"]), overview["replicas"]
    assert sidecar.alive(), sidecar.output()[-3000:]

    status, metrics = sidecar.get("/metrics")
    assert status == 200
    assert b"suture_fleet_connected 1.0" in metrics, metrics.decode()[-2000:]
    status, body = sidecar.get("/api/fleet")
    assert status == 200, body[:1000]
    assert len(body) < 2_000_000  # the megabyte texts were not passed on whole (one would be 1 MB)

    wait_until("the fixes shipped", lambda: shipped(procs, [sidecar]), 20, every=0.5, explain=procs.logs)
    ours = procs.rows("SELECT id, status, decision FROM fleet_fixes WHERE grp = %s AND sidecar = %s ORDER BY id",
                      [GROUP, sidecar.name])
    assert {(r["id"], r["status"]) for r in ours} == {(f["id"], f["status"]) for f in (first, later, proposal)}
    assert first["status"] == later["status"] == "succeeded" and proposal["status"] == "proposed"
    tables = procs.rows("SELECT count(*) AS n FROM pg_tables WHERE tablename LIKE 'fleet_%%'")
    assert tables[0]["n"] >= 7  # and no name dropped a table
    procs.stop_all()
    assert sidecar.proc is not None and sidecar.proc.returncode == 0, sidecar.output()[-3000:]
    assert "Traceback" not in sidecar.output(), sidecar.output()[-5000:]


# -- the group's say on a fix (sidecar/fleet_gate.py) --

SHARED = playbook("shared-cache", "shared cache stale", window="4s", scope="fleet")


def steps_of(procs: FleetProcs, sidecar: str, fix_id: str) -> list[dict[str, Any]]:
    return procs.rows("SELECT seq, step, detail, fence FROM fleet_steps WHERE grp = %s AND sidecar = %s AND fix_id = %s "
                      "ORDER BY seq", [GROUP, sidecar, fix_id])


def test_five_sidecars_sharing_one_target_exactly_one_applies(procs: FleetProcs) -> None:
    """scope: fleet on one target_root: one sidecar takes the lease and applies under its fencing token (every
    journal step carries it); the four others record a skipped fix naming the holder."""
    procs.playbook(SHARED)
    sidecars = procs.start(5, shared_target=True, canary=0, max_concurrent=1, lease="30s")
    procs.keep_logging()
    procs.trigger_all("ERROR shared cache stale")
    for s in sidecars:
        wait_until(f"{s.name}: a final fix", lambda s=s: settled(s, 1), 30, explain=lambda s=s: str(s.summary()))
    wait_until("shipped", lambda: shipped(procs, sidecars), 30, every=0.5, explain=procs.logs)
    procs.stop_all()

    journals = {s.name: s.history() for s in sidecars}
    fixes = [(name, f) for name, (rows, _) in journals.items() for f in rows]
    applied = [(name, f) for name, f in fixes if f["decision"] == "apply"]
    assert len(applied) == 1, [(n, f["decision"], f["status"], f["reason"]) for n, f in fixes]
    holder, fix = applied[0]
    assert fix["status"] == "succeeded", fix
    others = [(name, f) for name, f in fixes if name != holder]
    assert len(others) == 4 and {n for n, _ in others} == {s.name for s in sidecars} - {holder}
    for name, f in others:
        assert (f["status"], f["decision"]) == ("skipped", "skip"), (name, f)
        assert f["reason"].startswith(f"lease held by {holder}"), (name, f["reason"])

    steps = journals[holder][1]
    own = [st for st in steps if st["fix_id"] == fix["id"]]
    fences = {json.loads(st["detail"] or "{}").get("fence") for st in own}
    assert len(fences) == 1 and isinstance(token := fences.pop(), int), own
    remote = steps_of(procs, holder, fix["id"])
    assert len(remote) == len(own) and {r["fence"] for r in remote} == {token}
    [lease] = procs.rows("SELECT holder, token FROM fleet_leases WHERE grp = %s AND playbook_id = 'shared-cache'",
                         [GROUP])
    assert lease == {"holder": None, "token": token}  # released at the end, its token kept
    target = sidecars[0].target
    assert all(s.target == target for s in sidecars)
    assert "timeout_s: 6" in (target / "config" / "settings.yaml").read_text()  # changed once, not five times


CANARY_OK = playbook("slow-upstream", "upstream timeout")


def decided_fleet(sidecar: Sidecar, fix_id: str) -> dict[str, Any]:
    """What the group said, as the fix's ``decided`` journal step keeps it."""
    step = next(st for st in sidecar.fix(fix_id)["steps"] if st["step"] == "decided")
    return dict(step["detail"].get("fleet") or {})


def test_canary_succeeds_then_every_replica_heals(procs: FleetProcs) -> None:
    """canary: 1 on 5 replicas: one applies first, the four others wait for it (a skipped row and a waiting event
    each); after its validated success each of them applies, its decision naming the canary."""
    procs.playbook(CANARY_OK)
    sidecars = procs.start(5, canary=1, max_concurrent=100)
    procs.keep_logging()
    procs.trigger_all("ERROR upstream timeout")
    running = wait_until("a running canary", lambda: procs.rows(
        "SELECT fix_id, sidecar, state FROM fleet_canaries WHERE grp = %s", [GROUP]), 20, every=0.1,
        explain=procs.logs)
    assert [r["state"] for r in running] == ["running"], running
    canary_fix, canary_name = running[0]["fix_id"], running[0]["sidecar"]
    for s in sidecars:
        wait_until(f"{s.name}: its last fix succeeded", lambda s=s: (f := s.fixes()) and f[-1]["status"] == "succeeded"
                   and all(is_final(x) for x in f), 40, explain=lambda s=s: f"{s.summary()}\n{s.output()[-1500:]}")
    canaries = procs.rows("SELECT fix_id, sidecar, state FROM fleet_canaries WHERE grp = %s", [GROUP])
    assert canaries == [{"fix_id": canary_fix, "sidecar": canary_name, "state": "succeeded"}]
    canary_done = _epoch(next(s for s in sidecars if s.name == canary_name).fix(canary_fix)["finished_at"])
    for s in sidecars:
        fixes = s.fixes()
        applied = [f for f in fixes if f["decision"] == "apply"]
        assert len(applied) == 1 and applied[0]["status"] == "succeeded", (s.name, fixes)
        if s.name == canary_name:
            assert [f["id"] for f in fixes] == [canary_fix]
            assert decided_fleet(s, canary_fix).get("role") == "canary"
            continue
        waited = [f for f in fixes if f["status"] == "skipped"]
        assert waited and all(f["reason"].startswith(f"waiting for canary {canary_fix}") for f in waited), fixes
        assert fixes[0]["status"] == "skipped" and fixes[-1] is applied[0]  # waited first, applied after
        assert decided_fleet(s, applied[0]["id"]).get("canary") == canary_fix
        assert _epoch(applied[0]["started_at"]) >= canary_done - 0.01, (applied[0], canary_done)  # not before it
        assert re.search(r"\bwaiting +slow-upstream: waiting for canary " + re.escape(canary_fix), s.output())
    for s in sidecars:
        assert "timeout_s: 6" in (s.target / "config" / "settings.yaml").read_text(), s.name


CANARY_BAD = playbook("slow-upstream", "upstream timeout", bad="upstream timeout")  # the error goes on


def test_canary_fails_no_other_replica_applies_and_the_group_is_suspended(procs: FleetProcs) -> None:
    """The canary's validation fails (the error goes on): its fix is rolled back, the playbook is suspended for
    the group, no other replica applies it, and `suture resume --fleet` lifts the suspension."""
    procs.playbook(CANARY_BAD)
    sidecars = procs.start(5, canary=1, max_concurrent=100)
    procs.keep_logging("ERROR upstream timeout", every=0.3)  # the trouble goes on, whatever the fix does
    failed = wait_until("the canary failed", lambda: procs.rows(
        "SELECT fix_id, sidecar, state FROM fleet_canaries WHERE grp = %s AND state = 'failed'", [GROUP]), 30,
        explain=procs.logs)
    canary_fix, canary_name = failed[0]["fix_id"], failed[0]["sidecar"]
    others = [s for s in sidecars if s.name != canary_name]
    for s in others:  # each one hears of the suspension at its next admission
        s.wait_fix(lambda f: f["status"] == "skipped" and "suspended for the group" in (f["reason"] or ""), 15,
                   "a skip naming the group's suspension")
    suspensions = procs.rows("SELECT playbook_id, cause_fix_id, reason, resumed_at FROM fleet_suspensions "
                             "WHERE grp = %s", [GROUP])
    assert len(suspensions) == 1 and suspensions[0]["resumed_at"] is None, suspensions
    assert (suspensions[0]["playbook_id"], suspensions[0]["cause_fix_id"]) == ("slow-upstream", canary_fix)
    canary = next(s for s in sidecars if s.name == canary_name)
    [own] = [f for f in canary.fixes() if f["decision"] == "apply"]
    assert own["id"] == canary_fix and own["status"] in {"rolled_back", "failed"}, own
    assert "timeout_s: 5" in (canary.target / "config" / "settings.yaml").read_text()  # rolled back
    for s in others:
        fixes = s.fixes()
        assert not [f for f in fixes if f["decision"] == "apply"], (s.name, fixes)
        assert "timeout_s: 5" in (s.target / "config" / "settings.yaml").read_text()
    assert not procs.rows("SELECT id FROM fleet_fixes WHERE grp = %s AND decision = 'apply' AND id <> %s",
                          [GROUP, canary_fix])

    procs.quiet()
    resumed = procs.suture(sidecars[0], "resume", "--fleet", "slow-upstream", "--by", "alice")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed slow-upstream for group orders (by alice)" in resumed.stdout and canary_fix in resumed.stdout
    [row] = procs.rows("SELECT resumed_at, resumed_by FROM fleet_suspensions WHERE grp = %s", [GROUP])
    assert row["resumed_at"] is not None and row["resumed_by"] == "alice"
    assert procs.rows("SELECT state FROM fleet_canaries WHERE grp = %s", [GROUP]) == [{"state": "resumed"}]
    again = procs.suture(sidecars[0], "resume", "--fleet", "slow-upstream")
    assert again.returncode == 1 and "is not suspended" in again.stderr


STALE = playbook("shared-restart", "shared cache stale", window="6s", scope="fleet",
                 fix=(BUMP, f"exec: {{argv: [{shutil.which('sleep') or '/bin/sleep'}, '1']}}"))


@pytest.mark.parametrize("paused_in", ["applied", "validating"])  # during its exec effect, in its window
def test_a_sigstopped_lease_holder_resuming_after_expiry_is_refused(procs: FleetProcs, paused_in: str) -> None:
    """The lease holder is stopped (SIGSTOP) past its 2 s lease while its fix runs, and another sidecar takes
    the lease meanwhile; resumed, its stale token is refused: the fix ends failed, its file rolled back."""
    from suture.engine.fleet_values import Lease
    from suture.sidecar.fleet_leases import Leases
    from suture.sidecar.fleet_pg import FleetConnection

    procs.playbook(STALE)
    [holder] = procs.start(1, shared_target=True, canary=0, max_concurrent=1, lease="2s")
    settings = holder.target / "config" / "settings.yaml"
    original = settings.read_bytes()
    procs.keep_logging()
    holder.trigger("ERROR shared cache stale")
    fix = holder.wait_fix(lambda f: f["status"] == paused_in, 15, paused_in)
    holder.pause()
    paused_at = time.time()
    [before] = procs.rows("SELECT holder, token FROM fleet_leases WHERE grp = %s", [GROUP])
    assert before["holder"] == holder.name, before
    time.sleep(3.5)  # past the 2 s lease: no renewal came
    other = FleetConnection(procs.url, password=procs.pg.password)
    try:
        taken = Leases(other).acquire(GROUP, "shared-restart", "", holder="replica-9", ttl=60)
    finally:
        other.close()
    assert isinstance(taken, Lease) and taken.token > before["token"], taken
    holder.resume()

    ended = holder.wait_fix(lambda f: f["id"] == fix["id"] and is_final(f), 20, "the fix ended")
    assert ended["status"] == "failed", ended
    assert f"fencing token {before['token']}: a newer lease (token {taken.token}, held by replica-9)" in (
        ended["detail"] or ""), ended["detail"]
    assert settings.read_bytes() == original  # rolled back
    [after] = procs.rows("SELECT holder, token FROM fleet_leases WHERE grp = %s", [GROUP])
    assert after == {"holder": "replica-9", "token": taken.token}  # its release did not free the newer lease
    journal = holder.fix(fix["id"])["steps"]
    assert {st["detail"].get("fence") for st in journal} == {before["token"]}, journal
    changed_after = [st for st in journal if st["step"] in {"applied", "effect_started"}
                     and _epoch(st["at"]) > paused_at]
    assert not changed_after, changed_after  # nothing was changed under the stale token
    assert holder.alive()


def _epoch(value: Any) -> float:
    from datetime import UTC, datetime

    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()
