"""The outbox: the local history shipped to PostgreSQL, none lost while it is down, none twice when it is back."""

from __future__ import annotations

import itertools
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suture.engine.decide import Decision
from suture.engine.errors import FleetUnavailable
from suture.engine.store import Store
from suture.sidecar.fleet_outbox import Shipper, ShipReport
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_schema import migrate

from .fleet_helpers import FleetDb, Proxy, fleet_db, proxy  # noqa: F401 (fixtures)

T0 = 1_790_000_000.0


def decision(playbook_id: str = "rate-limit-backoff", at: float = T0) -> Decision:
    return Decision(playbook_id=playbook_id, key="", verdict="apply", reason="confident", base_confidence=90,
                    adjusted_confidence=90, threshold=85, successes=0, failures=0, decided_at=at)


class Journal:
    """A real local history and the writes a sidecar makes to it."""

    def __init__(self, path: Path) -> None:
        self.store = Store.open(path)
        self.ids = itertools.count(1)
        self.clock = itertools.count(int(T0))

    def new_fix(self, steps: int = 2, *, detail: dict[str, Any] | None = None) -> str:
        fix_id = f"f-{next(self.ids)}"
        self.store.begin_fix(fix_id, decision(at=next(self.clock)), status="matched", playbook_version="v1",
                             fix_types=["adjust"], errors_before=3)
        for i in range(steps):
            self.step(fix_id, f"step-{i}", detail)
        return fix_id

    def step(self, fix_id: str, name: str = "validating", detail: dict[str, Any] | None = None) -> None:
        self.store.step(fix_id, name, next(self.clock), detail)
        self.store.update(fix_id, status="validating")

    def finish(self, fix_id: str, status: str = "succeeded") -> None:
        self.store.finish(fix_id, status, next(self.clock), detail="done")

    def unfinished(self) -> list[str]:
        return [row["id"] for row in self.store.unfinished()]

    def contents(self) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
        fixes = {(r[0], r[1], r[2] is not None) for r in self.store.query("SELECT id, status, finished_at FROM fixes").rows}
        steps = set(self.store.query("SELECT fix_id, seq, step FROM fix_steps").rows)
        return fixes, steps


def group_contents(fleet_db: FleetDb, group: str) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]], int]:
    """What PostgreSQL holds of one group: fix rows, step rows, and the number of step rows (duplicates would show)."""
    with fleet_db.admin() as admin:
        fixes = {tuple(r) for r in admin.execute(
            "SELECT id, status, finished_at IS NOT NULL FROM fleet_fixes WHERE grp = %s", [group]).fetchall()}
        rows = admin.execute("SELECT fix_id, seq, step FROM fleet_steps WHERE grp = %s", [group]).fetchall()
    return fixes, {tuple(r) for r in rows}, len(rows)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "suture.duckdb")
    try:
        yield j
    finally:
        j.store.close()


@pytest.fixture
def fleet(fleet_db: FleetDb) -> FleetConnection:
    connection = fleet_db.connect()
    migrate(connection)
    return connection


def test_every_fix_and_step_is_shipped(journal: Journal, fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """Three fixes, one finished: PostgreSQL holds the same rows and steps, under this sidecar's name."""
    a, _, _ = journal.new_fix(), journal.new_fix(3), journal.new_fix(0)
    journal.finish(a)
    report = Shipper(journal.store, fleet, group="orders", sidecar="orders-1").ship_all()
    assert report == ShipReport(fixes=3, steps=6, new_fixes=3, new_steps=6, pending=0)
    fixes, steps, _ = group_contents(fleet_db, "orders")
    assert (fixes, steps) == journal.contents()
    with fleet_db.admin() as admin:
        assert admin.execute("SELECT DISTINCT sidecar FROM fleet_fixes").fetchall() == [("orders-1",)]


def test_a_second_pass_ships_nothing(journal: Journal, fleet: FleetConnection) -> None:
    """Nothing changed locally: nothing is sent."""
    journal.new_fix()
    shipper = Shipper(journal.store, fleet, group="g", sidecar="s")
    shipper.ship_all()
    assert shipper.ship_all() == ShipReport()
    assert shipper.pending() == 0


def test_a_fix_that_moves_on_is_shipped_again_and_its_new_steps_only(
    journal: Journal, fleet: FleetConnection, fleet_db: FleetDb
) -> None:
    """Status and finished_at follow the local row; steps already shipped are not sent again."""
    fix = journal.new_fix(2)
    shipper = Shipper(journal.store, fleet, group="g", sidecar="s")
    shipper.ship_all()
    journal.step(fix)
    journal.finish(fix, "rolled_back")
    assert shipper.ship_all() == ShipReport(fixes=1, steps=2, new_fixes=0, new_steps=2, pending=0)
    fixes, steps, _ = group_contents(fleet_db, "g")
    assert fixes == {(fix, "rolled_back", True)} and len(steps) == 4


def test_nothing_is_lost_while_postgres_is_unreachable(journal: Journal, fleet_db: FleetDb, proxy: Proxy) -> None:
    """Ship, cut PostgreSQL off, write more (shipping fails, marks stay), reconnect: every row once."""
    fleet = fleet_db.connect(url=fleet_db.url_via(proxy.port))
    migrate(fleet)
    shipper = Shipper(journal.store, fleet, group="g", sidecar="s")
    first = journal.new_fix(2)
    shipper.ship_all()
    proxy.down()
    journal.finish(first)
    later = [journal.new_fix(2) for _ in range(3)]
    for _ in range(2):
        with pytest.raises(FleetUnavailable):
            shipper.ship_all()
    assert shipper.pending() == 4
    proxy.up()
    journal.finish(later[0], "failed")
    report = shipper.ship_all()
    assert (report.new_fixes, report.new_steps) == (3, 1 + 3 * 2 + 1)
    fixes, steps, count = group_contents(fleet_db, "g")
    assert (fixes, steps) == journal.contents() and count == len(steps)


def test_a_crash_after_postgres_committed_ships_again_without_a_duplicate(
    journal: Journal, fleet: FleetConnection, fleet_db: FleetDb
) -> None:
    """The marks are lost (as if killed between PostgreSQL's commit and ours): the re-ship adds no row."""
    for _ in range(3):
        journal.new_fix(2)
    shipper = Shipper(journal.store, fleet, group="g", sidecar="s")
    shipper.ship_all()
    journal.store.query("DELETE FROM fleet_outbox")
    report = shipper.ship_all()
    assert (report.fixes, report.steps, report.new_fixes, report.new_steps) == (3, 6, 0, 0)
    _, steps, count = group_contents(fleet_db, "g")
    assert count == len(steps) == 6


def test_a_final_row_in_postgres_is_never_rewritten(journal: Journal, fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A stale copy shipped later (an older sidecar state restored) does not undo a final status."""
    fix = journal.new_fix(1)
    journal.finish(fix)
    shipper = Shipper(journal.store, fleet, group="g", sidecar="s")
    shipper.ship_all()
    journal.store.query("UPDATE fixes SET status = 'validating', finished_at = NULL WHERE id = ?", [fix])
    assert shipper.ship_all().new_fixes == 0
    assert group_contents(fleet_db, "g")[0] == {(fix, "succeeded", True)}


def test_fencing_tokens_and_nul_characters_ship(journal: Journal, fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """A step's {"fence": N} fills the fence column; NUL (refused by PostgreSQL text) becomes U+FFFD."""
    fix = journal.new_fix(0)
    journal.step(fix, "applied", {"fence": 42, "line": "bad\x00byte"})
    journal.step(fix, "validating", {"fence": "42; DROP TABLE fleet_steps"})
    journal.store.update(fix, reason="quoted \x00 line")
    Shipper(journal.store, fleet, group="g", sidecar="s").ship_all()
    with fleet_db.admin() as admin:
        rows = admin.execute("SELECT seq, fence, detail->>'line' FROM fleet_steps ORDER BY seq").fetchall()
        reason = admin.execute("SELECT reason FROM fleet_fixes").fetchone()
    assert rows == [(1, 42, "bad\ufffdbyte"), (2, None, None)]
    assert reason == ("quoted \ufffd line",)


def test_sidecars_of_one_group_do_not_collide_on_fix_ids(tmp_path: Path, fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """Two sidecars whose ids coincide (f-1) keep two rows each: the key is (group, sidecar, id)."""
    for name in ("a", "b"):
        j = Journal(tmp_path / f"{name}.duckdb")
        j.new_fix(1)
        Shipper(j.store, fleet, group="g", sidecar=name).ship_all()
        j.store.close()
    with fleet_db.admin() as admin:
        assert admin.execute("SELECT sidecar, id FROM fleet_fixes ORDER BY 1").fetchall() == [("a", "f-1"), ("b", "f-1")]


def test_shipping_in_batches_reaches_the_end(journal: Journal, fleet: FleetConnection, fleet_db: FleetDb) -> None:
    """25 fixes, batches of 10: three passes, all shipped."""
    for _ in range(25):
        journal.new_fix(1)
    report = Shipper(journal.store, fleet, group="g", sidecar="s", batch=10).ship_all()
    assert (report.new_fixes, report.new_steps, report.pending) == (25, 25, 0)


# -- a property: any interleaving of writes, outages and shipping ends with one copy of everything --

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(0, 3)),
        st.tuples(st.just("step"), st.integers(0, 5)),
        st.tuples(st.just("finish"), st.integers(0, 5)),
        st.tuples(st.just("down"), st.just(0)),
        st.tuples(st.just("up"), st.just(0)),
        st.tuples(st.just("ship"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_any_interleaving_of_writes_and_outages_ships_everything_once(
    ops: list[tuple[str, int]], fleet_db: FleetDb, proxy: Proxy
) -> None:
    """Against a model (the local history itself): after the last reconnection, PostgreSQL equals it, and
    the rows PostgreSQL reported as new add up to exactly the local rows (nothing inserted twice)."""
    if proxy._listener is None:
        proxy.up()
    group = uuid.uuid4().hex[:10]
    fleet = fleet_db.connect(url=fleet_db.url_via(proxy.port))
    migrate(fleet)
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(Path(folder) / "suture.duckdb")
        shipper = Shipper(journal.store, fleet, group=group, sidecar="s")
        up, new_fixes, new_steps = True, 0, 0
        for op, n in ops:
            open_fixes = journal.unfinished()
            if op == "new":
                journal.new_fix(n)
            elif op == "step" and open_fixes:
                journal.step(open_fixes[n % len(open_fixes)])
            elif op == "finish" and open_fixes:
                journal.finish(open_fixes[n % len(open_fixes)], "succeeded" if n % 2 else "failed")
            elif op == "down" and up:
                proxy.down()
                up = False
            elif op == "up" and not up:
                proxy.up()
                up = True
            elif op == "ship":
                try:
                    report = shipper.ship_all()
                except FleetUnavailable:
                    assert not up
                else:
                    assert up or report == ShipReport()  # nothing to send: PostgreSQL is not asked
                    new_fixes, new_steps = new_fixes + report.new_fixes, new_steps + report.new_steps
        if not up:
            proxy.up()
        report = shipper.ship_all()
        new_fixes, new_steps = new_fixes + report.new_fixes, new_steps + report.new_steps
        local_fixes, local_steps = journal.contents()
        fixes, steps, count = group_contents(fleet_db, group)
        shipper.close()
        journal.store.close()
        fleet.close()  # at most one connection per example (the server allows 20)
    assert (fixes, steps) == (local_fixes, local_steps)
    assert (new_fixes, new_steps, count) == (len(local_fixes), len(local_steps), len(local_steps))
