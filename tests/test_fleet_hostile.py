"""Rows written by another (buggy or hostile) sidecar do not crash the reader, and a group suspension holds."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import TEXT_LIMIT, Held, Lease, as_count, as_epoch, clean_text, fence_of
from suture.sidecar.fleet_learning import PgFleetHistory
from suture.sidecar.fleet_leases import Leases
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_suspensions import Suspensions

from .fleet_helpers import FleetDb, fleet, fleet_db  # noqa: F401 (fixtures)

HUGE = "x" * 1_000_000
INJECTION = "pb'); DROP TABLE fleet_fixes; --"


def lease_row(fleet_db: FleetDb, **values: Any) -> None:
    """Write the lease row of (orders, pb, '') by hand, as another sidecar's bug might."""
    row = {"holder": "other", "token": 5, "expires": "now() + interval '1 minute'", **values}
    with fleet_db.admin() as admin:
        admin.execute(
            f"""INSERT INTO fleet_leases VALUES ('orders', 'pb', '', %s, %s, now(), {row['expires']})
                ON CONFLICT (grp, playbook_id, key) DO UPDATE SET holder = EXCLUDED.holder, token = EXCLUDED.token,
                expires_at = EXCLUDED.expires_at""",
            [row["holder"], row["token"]])


def test_a_huge_holder_name_is_cut_when_reported(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A holder of a megabyte: Held names it in at most TEXT_LIMIT printable characters."""
    lease_row(fleet_db, holder=HUGE + "\x1b[2J")
    got = Leases(fleet).acquire("orders", "pb", "", "me", 30)
    assert isinstance(got, Held) and len(got.by) == TEXT_LIMIT and got.by.endswith("…")


def test_a_token_moved_backwards_does_not_move_ours_backwards(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A row's token rewritten to 1: the next lease still gets a token larger than every one given before."""
    leases = Leases(fleet)
    first = leases.acquire("orders", "pb", "", "a", 30)
    assert isinstance(first, Lease)
    leases.release(first)
    lease_row(fleet_db, holder=None, token=1, expires="now()")
    second = leases.acquire("orders", "pb", "", "b", 30)
    assert isinstance(second, Lease) and second.token > first.token
    assert not leases.check(first)


def test_a_token_rewritten_under_the_holder_makes_its_check_fail(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """Someone rewrites the row's token: the holder no longer holds the newest token, so it stops (fail closed)."""
    leases = Leases(fleet)
    got = leases.acquire("orders", "pb", "", "a", 30)
    assert isinstance(got, Lease)
    lease_row(fleet_db, holder="a", token=got.token - 1)
    assert not leases.check(got)


def test_an_expiry_in_the_far_future_does_not_lock_the_target_for_ever(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A lease written to expire in 9999 was no renewal's: it is taken over."""
    lease_row(fleet_db, expires="'9999-01-01'::timestamptz")
    assert isinstance(Leases(fleet).acquire("orders", "pb", "", "me", 30), Lease)


def test_a_released_row_with_a_live_expiry_is_free(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """holder NULL means released, whatever its expiry says."""
    lease_row(fleet_db, holder=None)
    assert isinstance(Leases(fleet).acquire("orders", "pb", "", "me", 30), Lease)


def test_a_token_at_the_end_of_bigint_fails_closed_and_the_connection_lives_on(
    fleet: FleetConnection, fleet_db: FleetDb
) -> None:
    """token = 2^63-1: the next token cannot exist; FleetUnavailable (not a crash), and the next call works."""
    lease_row(fleet_db, holder=None, token=2**63 - 1, expires="now()")
    leases = Leases(fleet)
    with pytest.raises(FleetUnavailable, match="refused a statement"):
        leases.acquire("orders", "pb", "", "me", 30)
    assert isinstance(leases.acquire("orders", "other-pb", "", "me", 30), Lease)


def test_hostile_fix_rows_do_not_stop_pooled_learning(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """SQL in a playbook id, a megabyte of status, NULLs wherever allowed: counts of the sane rows only."""
    with fleet_db.admin() as admin:
        rows = [("s1", "f1", INJECTION, "succeeded"), ("s1", "f2", "ok-pb", HUGE), ("s1", "f3", "ok-pb", "succeeded"),
                ("s2", "f1", "x" * 5000, "succeeded"), ("s2", "f2", "ok-pb", "failed")]
        for sidecar, fix, playbook_id, status in rows:
            admin.execute("""INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at)
                             VALUES ('orders', %s, %s, %s, %s, 'apply', now())""", [sidecar, fix, playbook_id, status])
        admin.execute("""INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at,
                             changes, successes) VALUES ('orders', %s, 'f9', 'ok-pb', 'succeeded', 'apply',
                             '9999-12-31', '"not a list"', -5)""", [HUGE[:10_000]])
    pooled = PgFleetHistory(fleet, group="orders", own="me")
    pooled.refresh()
    assert pooled.error == ""
    assert pooled.counts == {"ok-pb": (2, 1)}
    assert all(len(name) <= 64 for name in pooled.sidecars)
    with fleet_db.admin() as admin:
        assert admin.execute("SELECT count(*) FROM fleet_fixes").fetchone() == (6,)  # nothing was dropped


# -- a group suspension --


def test_a_suspension_is_one_per_playbook_until_resumed(fleet: FleetConnection) -> None:
    """Two canaries failing at once record one suspension; a person's resume lifts it; the next one counts."""
    s = Suspensions(fleet)
    assert s.suspend("orders", "pb", by="orders-1", reason="canary f-1 rolled back", cause_fix_id="f-1")
    assert not s.suspend("orders", "pb", by="orders-2", reason="canary f-2 failed", cause_fix_id="f-2")
    active = s.active("orders", "pb")
    assert active is not None and (active.suspended_by, active.cause_fix_id) == ("orders-1", "f-1")
    assert s.active("billing", "pb") is None
    assert s.resume("orders", "pb", by="alice") and not s.resume("orders", "pb", by="alice")
    assert s.active("orders", "pb") is None
    assert s.suspend("orders", "pb", by="orders-3", reason="again")


def test_names_postgresql_cannot_store_are_stored_replaced_not_refused(fleet: FleetConnection) -> None:
    """NUL and lone surrogates (what JSON's \\u0000 and \\udc36 decode to, e.g. in POST /api/fleet/resume's
    "by") would make PostgreSQL refuse the statement: they are stored as U+FFFD; found by the API fuzzer."""
    s = Suspensions(fleet)
    assert s.suspend("orders", "pb\x00", by="orders-\udc36", reason="canary f-1\x00 failed", cause_fix_id="f\ud800")
    active = s.active("orders", "pb\x00")
    assert active is not None
    assert (active.suspended_by, active.reason, active.cause_fix_id) == (
        "orders-\ufffd", "canary f-1\ufffd failed", "f\ufffd")
    assert s.resume("orders", "pb\x00", by=" \u00ad\udae3\udc36h\x00-")
    assert s.active("orders", "pb\ufffd") is None


def test_a_hostile_suspension_row_is_read_bounded(fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A megabyte of reason, a NULL cause: active() answers with bounded text."""
    with fleet_db.admin() as admin:
        admin.execute("""INSERT INTO fleet_suspensions (grp, playbook_id, suspended_by, reason)
                         VALUES ('orders', 'pb', %s, %s)""", [INJECTION, HUGE])
    active = Suspensions(fleet).active("orders", "pb")
    assert active is not None and len(active.reason) == 1000 and active.cause_fix_id == ""
    assert active.suspended_by == INJECTION


# -- the bounded readers themselves --


@pytest.mark.parametrize(("value", "expected"), [(None, ""), ("ok", "ok"), (12, "12"), ("a\x00b\nc", "a?b?c"),
                                                 (["x"], "['x']")])
def test_clean_text(value: Any, expected: str) -> None:
    """Anything becomes printable text."""
    assert clean_text(value) == expected


@pytest.mark.parametrize(("value", "expected"), [(None, 0), (-3, 0), (7, 7), (2.9, 2), ("9", 0), (True, 0),
                                                 (math.nan, 0), (math.inf, 0)])
def test_as_count(value: Any, expected: int) -> None:
    """Only a sane non-negative number is a count."""
    assert as_count(value) == expected


def test_as_epoch() -> None:
    """Datetimes and numbers are times; anything else is None."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert (as_epoch(at), as_epoch(5), as_epoch("soon"), as_epoch(None), as_epoch(math.nan)) == (
        at.timestamp(), 5.0, None, None, None)
    assert as_epoch(time.time()) is not None


@pytest.mark.parametrize(("detail", "expected"), [({"fence": 42}, 42), ({"fence": "42"}, None), ({"fence": -1}, None),
                                                  ({"fence": True}, None), ({"fence": 2**63}, None), ([42], None),
                                                  ("fence", None), ({}, None)])
def test_fence_of(detail: Any, expected: int | None) -> None:
    """Only a positive bigint in {"fence": N} is a fencing token."""
    assert fence_of(detail) == expected
