"""The store's named reads, on a real DuckDB file: each answers its one question, with typed parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
from suture.engine.decide import Decision, Verdict
from suture.engine.sql import SqlRefused
from suture.engine.store import RECENT_FIXES_SQL, Store, TypeTally, ValidatedFix, epoch

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
DAY = 86400.0


def decision(playbook: str, at: float, *, verdict: Verdict = "apply", confidence: float = 80.0) -> Decision:
    return Decision(playbook_id=playbook, key="", verdict=verdict, reason="test", base_confidence=confidence,
                    adjusted_confidence=confidence, threshold=70.0, successes=0, failures=0, decided_at=at)


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "history.duckdb")
    yield s
    s.close()


def fix(store: Store, fix_id: str, playbook: str, at: float, status: str | None, *, verdict: Verdict = "apply",
        fix_types: tuple[str, ...] = ("adjust",), files: dict[str, str] | None = None, seconds: float = 10.0,
        changes: list[dict[str, str]] | None = None, proposal_id: str | None = None) -> None:
    """A fix started at ``at`` that ends ``status`` after ``seconds`` (None: still running)."""
    store.begin_fix(fix_id, decision(playbook, at, verdict=verdict), status="matched", playbook_version="v1",
                    fix_types=fix_types, errors_before=3, proposal_id=proposal_id)
    if changes is not None:
        store.update(fix_id, changes=changes)
    if files is not None:
        store.step(fix_id, "planned", at, {"files": [{"path": p, "post": sha} for p, sha in files.items()]})
    if status is not None:
        store.finish(fix_id, status, at + seconds)


def test_recent_fixes_are_newest_first_and_filtered(store: Store) -> None:
    """Newest first, cut at the limit, of one status or playbook when named; changes come out decoded."""
    fix(store, "f-1", "a", T0, "succeeded", changes=[{"file": "x"}])
    fix(store, "f-2", "b", T0 + 1, "failed")
    fix(store, "f-3", "a", T0 + 2, "failed")
    assert [r["id"] for r in store.recent_fixes(limit=2)] == ["f-3", "f-2"]
    assert [r["id"] for r in store.recent_fixes(limit=10, status="failed", playbook="a")] == ["f-3"]
    assert store.recent_fixes(limit=10, status="succeeded")[0]["changes"] == [{"file": "x"}]


def test_pending_proposals_leave_out_the_approved(store: Store) -> None:
    """A proposal a fix was started from is no longer pending; was_approved says so."""
    fix(store, "p-1", "a", T0, "proposed", verdict="propose")
    fix(store, "p-2", "a", T0 + 1, "proposed", verdict="propose")
    fix(store, "f-1", "a", T0 + 2, "succeeded", proposal_id="p-1")
    assert ([r["id"] for r in store.pending_proposals()], store.was_approved("p-1"), store.was_approved("p-2")) == (
        ["p-2"], True, False)


def test_the_timeline_carries_the_verdict_duration_and_approval(store: Store) -> None:
    """Each fix since the start, its last validation verdict, seconds taken; in_progress means not finished."""
    fix(store, "f-old", "a", T0 - 40 * DAY, "succeeded")
    fix(store, "f-1", "a", T0, "rolled_back", seconds=12.5)
    store.record_validation("f-1", opened_at=T0, judged_at=T0 + 12, verdict="failed", reason="errors went on",
                            errors_after=4, measured={})
    fix(store, "f-2", "b", T0 + 60, None)
    rows = store.timeline(since=T0 - 30 * DAY, playbook=None, outcome=None, limit=10)
    assert [(r["id"], r["verdict"], r["seconds"], r["approved"]) for r in rows] == [
        ("f-2", None, None, False), ("f-1", "failed", 12.5, False)]
    assert [r["id"] for r in store.timeline(since=T0 - DAY, playbook=None, outcome="in_progress", limit=10)] == ["f-2"]


def test_counts_by_status_playbook_and_type(store: Store) -> None:
    """Per status; the playbooks and statuses seen; applied fixes that ended per fix type, with their successes."""
    fix(store, "f-1", "a", T0, "succeeded", fix_types=("adjust", "restart"))
    fix(store, "f-2", "b", T0 + 1, "failed", fix_types=("adjust", "restart"))
    fix(store, "f-3", "b", T0 + 2, "shadow", verdict="shadow")
    assert store.count_by_status() == {"failed": 1, "shadow": 1, "succeeded": 1}
    assert (store.playbook_ids(), store.statuses()) == (["a", "b"], ["failed", "shadow", "succeeded"])
    assert store.applied_by_type() == [TypeTally(fix_types="adjust,restart", total=2, succeeded=1)]


def test_the_last_fix_of_each_playbook(store: Store) -> None:
    """The status of a playbook's newest fix and when it started."""
    fix(store, "f-1", "a", T0, "failed")
    fix(store, "f-2", "a", T0 + 5, "succeeded")
    status, at = store.last_fix_by_playbook()["a"]
    assert (status, epoch(at)) == ("succeeded", T0 + 5)


def test_trends_count_days_successes_and_recoveries(store: Store) -> None:
    """Per day and status; per playbook the success rate and mean time to recovery; each recovery; each decision."""
    fix(store, "f-1", "a", T0, "succeeded", seconds=10)
    fix(store, "f-2", "a", T0 + DAY, "succeeded", seconds=20)
    fix(store, "f-3", "a", T0 + DAY + 1, "failed")
    since = T0 - DAY
    assert store.fixes_per_day(since=since) == [{"day": "2026-09-21", "status": "succeeded", "fixes": 1},
                                                {"day": "2026-09-22", "status": "failed", "fixes": 1},
                                                {"day": "2026-09-22", "status": "succeeded", "fixes": 1}]
    assert store.success_by_playbook(since=since) == [
        {"playbook_id": "a", "fixes": 3, "succeeded": 2, "success_rate": 0.6667, "mttr_s": 15.0}]
    assert [r["seconds"] for r in store.recoveries(since=since)] == [10.0, 20.0]
    assert [r["adjusted"] for r in store.confidence_history(since=since)] == [80.0, 80.0, 80.0]


def test_what_succeeded_fixes_wrote(store: Store) -> None:
    """The post-images of succeeded fixes only: newest finish first per fix, and all of them as a set."""
    fix(store, "f-1", "a", T0, "succeeded", files={"config/app.yaml": "sha-1"})
    fix(store, "f-2", "a", T0 + 60, "succeeded", files={"config/app.yaml": "sha-2", "config/b.yaml": "sha-3"})
    fix(store, "f-3", "a", T0 + 120, "rolled_back", files={"config/app.yaml": "sha-4"})
    assert store.last_validated_files(limit=5) == [
        ValidatedFix(fix_id="f-2", files={"config/app.yaml": "sha-2", "config/b.yaml": "sha-3"}),
        ValidatedFix(fix_id="f-1", files={"config/app.yaml": "sha-1"})]
    assert store.validated_post_images() == frozenset({"sha-1", "sha-2", "sha-3"})


def test_the_default_history_query_is_a_read_a_person_may_send(store: Store) -> None:
    """RECENT_FIXES_SQL goes through user_query like a person's query; a write does not."""
    fix(store, "f-1", "a", T0, "succeeded")
    result, truncated = store.user_query(RECENT_FIXES_SQL, max_rows=10)
    assert (result.rows[0][:3], truncated) == (("f-1", "a", "succeeded"), False)
    with pytest.raises(SqlRefused, match="only SELECT"):
        store.user_query("DELETE FROM fixes", max_rows=10)
