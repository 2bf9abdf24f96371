"""The fleet's say on a decided fix: act, skip because another sidecar acts, or propose (fail closed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from suture.engine.fleet_values import Busy, FleetVerdict, Held, Lease, fleet_verdict, pg_text

LEASE = Lease(group="g", playbook_id="pb", key="", holder="me", token=7, expires_at=100.0)


def test_a_replica_fix_acts_without_asking() -> None:
    """scope: replica needs no lease."""
    assert fleet_verdict("replica", None) == FleetVerdict(action="act")


def test_a_replica_fix_acts_while_the_fleet_is_down_and_is_flagged() -> None:
    """Replica fixes continue locally, flagged as decided without the fleet."""
    verdict = fleet_verdict("replica", None, unavailable="cannot reach the fleet database")
    assert (verdict.action, verdict.without_fleet) == ("act", True)
    assert verdict.reason == "decided without the fleet: cannot reach the fleet database"


def test_a_fleet_fix_with_the_lease_acts_under_its_token() -> None:
    """The token goes with the verdict, to be journaled with every step."""
    assert fleet_verdict("fleet", LEASE) == FleetVerdict(action="act", reason="fleet lease token 7", token=7)


def test_a_fleet_fix_held_elsewhere_is_skipped_naming_the_holder() -> None:
    """Another sidecar holds the lease: skip, saying who and until when."""
    verdict = fleet_verdict("fleet", Held(by="orders-2", until=1_790_000_000.0, token=3))
    assert verdict == FleetVerdict(action="skip", reason="lease held by orders-2 until 1790000000")


def test_a_fleet_fix_over_max_concurrent_is_skipped() -> None:
    """max_concurrent reached across the group: skip with the numbers."""
    verdict = fleet_verdict("fleet", Busy(held=2, limit=2))
    assert (verdict.action, verdict.reason) == ("skip", "2 of at most 2 fixes of this playbook in flight across the group")


def test_a_fleet_fix_with_the_fleet_down_is_proposed() -> None:
    """Fail closed: a shared target is never changed without the lease."""
    verdict = fleet_verdict("fleet", None, unavailable="lost the fleet database")
    assert verdict == FleetVerdict(action="propose", reason="the fleet is unavailable: lost the fleet database")


def test_an_unavailable_fleet_wins_over_a_stale_answer() -> None:
    """A lease in hand but the fleet unreachable since: propose (the lease cannot be checked)."""
    assert fleet_verdict("fleet", LEASE, unavailable="down").action == "propose"


@given(st.lists(st.characters() | st.characters(categories=["Cs"]) | st.just("\x00")).map("".join))
def test_pg_text_is_always_storable_and_changes_only_what_postgresql_refuses(text: str) -> None:
    """Any Python string (NUL and lone surrogates included) becomes encodable UTF-8 without NUL, of the same
    length; every other character is kept."""
    out = pg_text(text)
    out.encode("utf-8")
    assert "\x00" not in out and len(out) == len(text)
    for before, after in zip(text, out, strict=True):
        refused = before == "\x00" or "\ud800" <= before <= "\udfff"
        assert after == ("\ufffd" if refused else before)
