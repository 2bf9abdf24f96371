"""What the group lets a decided fix do (issue 15 items 3-6): the pure plan, then the lease's answer.

The plan is checked against a model written out as a person would say it (suspension first, the
hourly budget, then the canary's word), over every combination hypothesis draws.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from suture.engine.fleet_admission import Canary, FleetVerdict, GroupView, canary_end, plan, unreachable, with_lease
from suture.engine.fleet_values import Busy, Held, Lease

LEASE = Lease(group="g", playbook_id="pb", key="", holder="me", token=7, expires_at=100.0)


def ask(view: GroupView, *, scope: str = "replica", canary: int = 1, cap: int = 30) -> FleetVerdict:
    return plan(scope, view, canary=canary, fixes_per_hour=cap, playbook_id="pb")  # type: ignore[arg-type]


def test_the_first_replica_to_match_is_the_canary() -> None:
    verdict = ask(GroupView())
    assert (verdict.action, verdict.canary, verdict.reason) == ("act", True, "canary 1 of 1 for this playbook version")


def test_while_the_canary_runs_the_others_wait_naming_it() -> None:
    view = GroupView(canaries=(Canary(fix_id="f-1", sidecar="orders-2", state="running"),))
    assert ask(view) == FleetVerdict(action="wait", reason="waiting for canary f-1 (orders-2)")


def test_two_canaries_may_run_when_two_are_asked_for() -> None:
    view = GroupView(canaries=(Canary(fix_id="f-1", sidecar="orders-2", state="running"),))
    verdict = ask(view, canary=2)
    assert (verdict.action, verdict.canary, verdict.reason) == ("act", True, "canary 2 of 2 for this playbook version")


def test_after_the_canary_succeeded_the_others_act_and_name_it() -> None:
    view = GroupView(canaries=(Canary(fix_id="f-1", sidecar="orders-2", state="succeeded"),))
    verdict = ask(view)
    assert (verdict.action, verdict.after_canary, verdict.canary) == ("act", "f-1", False)
    assert verdict.detail() == {"action": "act", "reason": "canary f-1 (orders-2) succeeded", "canary": "f-1"}


def test_after_the_canary_failed_nobody_acts() -> None:
    view = GroupView(canaries=(Canary(fix_id="f-1", sidecar="orders-2", state="failed"),
                               Canary(fix_id="f-0", sidecar="orders-3", state="succeeded")))
    verdict = ask(view)
    assert verdict.action == "skip"
    assert verdict.reason.startswith("canary f-1 (orders-2) failed: suspended for the group")
    assert "suture resume --fleet pb" in verdict.reason


def test_an_abandoned_or_resumed_canary_frees_its_slot() -> None:
    view = GroupView(canaries=(Canary(fix_id="f-1", sidecar="a", state="abandoned"),
                               Canary(fix_id="f-2", sidecar="b", state="resumed")))
    assert ask(view).canary is True


def test_a_suspension_wins_over_everything() -> None:
    view = GroupView(suspended="canary f-1 on orders-2 failed", started_last_hour=99,
                     canaries=(Canary(fix_id="f-0", sidecar="x", state="succeeded"),))
    verdict = ask(view, scope="fleet")
    assert verdict.action == "skip" and verdict.reason.startswith("suspended for the group: canary f-1 on orders-2 failed")


def test_the_group_hourly_cap_proposes_instead() -> None:
    verdict = ask(GroupView(started_last_hour=30))
    assert verdict.action == "propose"
    assert verdict.reason == ("group-wide hourly cap: 30 fix(es) started across the group in the last hour "
                              "(fleet.fixes_per_hour 30)")


def test_shared_targets_have_no_canary_only_the_lease() -> None:
    view = GroupView(canaries=(Canary(fix_id="f-1", sidecar="a", state="running"),))
    assert ask(view, scope="fleet") == FleetVerdict(action="act")


def test_the_lease_held_elsewhere_skips_naming_the_holder() -> None:
    verdict = with_lease(FleetVerdict(action="act"), Held(by="orders-2", until=1_790_000_000.0, token=3))
    assert verdict == FleetVerdict(action="skip", reason="lease held by orders-2 until 1790000000")


def test_max_concurrent_reached_waits_with_the_numbers() -> None:
    verdict = with_lease(FleetVerdict(action="act"), Busy(held=2, limit=2))
    assert verdict == FleetVerdict(action="wait",
                                   reason="waiting: 2 of at most 2 fixes of this playbook in flight across the group")


def test_the_lease_taken_carries_its_token_and_keeps_the_canary_role() -> None:
    verdict = with_lease(FleetVerdict(action="act", canary=True, reason="canary 1 of 1"), LEASE)
    assert (verdict.token, verdict.canary, verdict.reason) == (7, True, "canary 1 of 1; fleet lease token 7")


def test_unreachable_fails_closed_for_shared_targets_and_flags_replicas() -> None:
    assert unreachable("fleet", "connection refused").action == "propose"
    replica = unreachable("replica", "connection refused")
    assert (replica.action, replica.without_fleet) == ("act", True)
    assert replica.reason == "decided without the fleet: connection refused"


def test_a_canary_row_ends_as_its_fix() -> None:
    assert [canary_end(s) for s in ("succeeded", "rolled_back", "failed", "inconclusive", "exhausted", "conflict")] == [
        "succeeded", "failed", "failed", "failed", "abandoned", "abandoned"]


STATES = st.sampled_from(["running", "succeeded", "failed", "abandoned", "resumed"])
CANARIES = st.lists(st.builds(Canary, fix_id=st.from_regex(r"f-[0-9]{1,3}", fullmatch=True),
                              sidecar=st.sampled_from(["a", "b", "c"]), state=STATES), max_size=6)


@given(scope=st.sampled_from(["replica", "fleet"]), suspended=st.none() | st.just("why"),
       started=st.integers(0, 40), cap=st.integers(1, 40), canary=st.integers(0, 3), canaries=CANARIES)
def test_the_plan_is_what_a_person_would_say(scope: str, suspended: str | None, started: int, cap: int, canary: int,
                                             canaries: list[Canary]) -> None:
    view = GroupView(suspended=suspended, started_last_hour=started, canaries=tuple(canaries))
    verdict = ask(view, scope=scope, canary=canary, cap=cap)
    states = [c.state for c in canaries]
    if suspended is not None:
        expected = "skip"
    elif started >= cap:
        expected = "propose"
    elif scope == "fleet" or canary == 0:
        expected = "act"
    elif "failed" in states:
        expected = "skip"
    elif "succeeded" in states or states.count("running") < canary:
        expected = "act"
    else:
        expected = "wait"
    assert verdict.action == expected
    # acting as a canary only ever happens with a free slot and no verdict yet
    if verdict.canary:
        assert scope == "replica" and states.count("running") < canary
        assert "failed" not in states and "succeeded" not in states
    assert verdict.token is None  # no token before the lease
