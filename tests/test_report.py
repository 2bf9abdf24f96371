"""The incident report of a fix, against real fixes: a real Executor, DuckDB history and backup store drive a fix
to each final state, and every fact the report states is checked against the journal and the files' bytes."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

import pytest
from suture.engine.backup import BackupStore
from suture.engine.decide import Gate, Outcomes, decide
from suture.engine.errors import ActionError
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.playbook import Action, Learning, Playbook
from suture.engine.reads import epoch
from suture.engine.report import UnknownFix, build_report, render_markdown
from suture.engine.store import Store
from suture.engine.validation import Judgement

from .conftest import Clock, playbook

PLAYBOOK = """
    id: rate-limit-backoff
    when: {log: {source: app, pattern: '429', at_least: 1, within: 10s}}
    confidence: 90
    MODE
    fix:
      - adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2}
      - restart: {container: app}
    on_rollback: [{restart: {container: app}}]
    validate: {window: 10s, settle: 2s, expect: [{log: {source: app, pattern: '429', at_most: 0}}]}
    max_attempts: 1
"""
EVIDENCE = {
    "lines": [{"source": "app", "lines": [
        {"at": 1_789_999_998.25, "text": "INFO GET /orders 200", "matched": False},
        {"at": 1_789_999_999.5, "text": "ERROR upstream: 429 Too Many Requests", "matched": True}]}],
    "probes": {"api": {"healthy": False, "latency_ms": 12.5, "detail": "HTTP 503", "at": 1_789_999_999.0}},
    "metrics": {"cpu_percent": 93.2},
    "alerts": [{"name": "HighErrorRate", "labels": {"alertname": "HighErrorRate", "severity": "page"},
                "state": "firing", "fingerprint": "5f1c0e3a9b7d2c41", "at": 1_789_999_990.0}],
}


class Effects:
    """A real EffectRunner that carries nothing out: it answers each action, or refuses one."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse

    def run(self, action: Action, context: Mapping[str, Any]) -> str:
        if self.refuse and self.refuse in action.describe():
            raise ActionError(f"{action.describe()}: the container engine said no")
        return "restarted" if not context.get("rollback") else "restarted after the restore"


class Ids:
    """Fixed ids (the sample report is the same at every run)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str, now: float) -> str:
        self.n += 1
        return f"{prefix}-20260921T141320Z-{self.n:06x}"


def make(config, effects=None, ids=None) -> tuple[Executor, Store, BackupStore]:
    store = Store.open(config.db_path)
    backups = BackupStore(config.state_dir / "backups")
    return Executor(config=config, store=store, backups=backups, effects=effects or Effects(),
                    ids=ids or Ids()), store, backups


def pb_of(mode: str = "") -> Playbook:
    return playbook(PLAYBOOK.replace("MODE", mode))


def start(ex: Executor, store: Store, clock: Clock, pb: Playbook, threshold: float = 85, gate: Gate | None = None,
          **kw: Any) -> FixRun | Outcome:
    decision = decide(pb, key="", labels={"host": "web-1"}, outcomes=store.outcomes(pb.id),
                      gate=gate or store.gate(pb.id, "", clock()), threshold=threshold, learning=Learning(),
                      fixes_per_hour=100, now=clock())
    return ex.start(pb, decision, now=clock(), facts=("log:app:429",), evidence=EVIDENCE, **kw)


def window(ex: Executor, run: FixRun, clock: Clock, bad_after: float | None = None) -> Outcome:
    """One observation a second; a 429 line from ``bad_after`` seconds into the window."""
    signal = run.playbook.validate.expect[0].signal
    opened = clock()
    while True:
        clock.advance(1)
        bad = bad_after is not None and clock() - opened >= bad_after
        run.judge.line("app", {signal} if bad else set(), clock())
        verdict = run.judge.verdict(clock())
        if verdict.final:
            return ex.settle(run, verdict, clock())


def journal(store: Store, fix_id: str) -> list[tuple[str, float, dict[str, Any]]]:
    return [(s["step"], epoch(s["happened_at"]), json.loads(s["detail"] or "{}")) for s in store.steps(fix_id)]


def check_against_journal(store: Store, fix_id: str, backups: BackupStore) -> dict[str, Any]:
    """The report's facts are the journal's: row, steps and their times, confidence numbers."""
    report = build_report(store, fix_id, backups)
    row = store.fix(fix_id)
    assert row is not None
    steps = journal(store, fix_id)
    assert (report.status, report.playbook_id, report.backup_id) == (row["status"], row["playbook_id"],
                                                                     row["backup_id"])
    assert report.started_at == epoch(row["started_at"]) and report.finished_at == epoch(row["finished_at"])
    assert [(s.step, s.at) for s in report.steps] == [(name, at) for name, at, _ in steps]
    for this, nxt in zip(report.steps, report.steps[1:], strict=False):
        assert this.seconds == nxt.at - this.at
    d = report.decided
    assert (d.base_confidence, d.adjusted_confidence, d.threshold, d.successes, d.failures, d.mode) == (
        row["base_confidence"], row["adjusted_confidence"], row["threshold"], row["successes"], row["failures"],
        row["mode"])
    decided = next(detail for name, _, detail in steps if name == "decided")
    assert (d.verdict, d.reason) == (decided["verdict"], decided["reason"])
    data = report.as_json()
    assert json.loads(json.dumps(data)) == data
    text = render_markdown(report)
    assert f"adjusted {row['adjusted_confidence']:g}" in text and f"Threshold: {row['threshold']:g}" in text
    assert report.title() == f"suture: rate-limit-backoff {row['status'].replace('_', ' ')} ({fix_id})"
    assert 2 <= len(report.summary().splitlines()) <= 4
    return {"report": report, "text": text, "json": data, "steps": steps}


def assert_diff_is_the_files(report, before: bytes, after: bytes) -> None:
    """The report's unified diff is difflib's over the file's real bytes before and after the fix."""
    (diff,) = report.diffs
    expected = [line.rstrip("\n") for line in difflib.unified_diff(
        before.decode().splitlines(keepends=True), after.decode().splitlines(keepends=True),
        fromfile="a/config/settings.yaml", tofile="b/config/settings.yaml")]
    assert list(diff.diff) == expected and any(line.startswith("+  request_delay_s") for line in expected)


def applied(config, target, clock, bad_after: float | None = None) -> tuple[Outcome, dict[str, Any], bytes]:
    """A fix applied and settled by its window; its report checked against the journal and the file's bytes."""
    ex, store, backups = make(config)
    settings = target / "config/settings.yaml"
    before = settings.read_bytes()
    run = start(ex, store, clock, pb_of())
    assert isinstance(run, FixRun)
    after = settings.read_bytes()
    outcome = window(ex, run, clock, bad_after)
    got = check_against_journal(store, outcome.fix_id, backups)
    assert_diff_is_the_files(got["report"], before, after)
    return outcome, got, before


def test_succeeded(config, target, clock):
    outcome, got, _ = applied(config, target, clock)
    assert outcome.status == "succeeded"
    report, text = got["report"], got["text"]
    assert [(e.action, e.phase, e.ok, e.result) for e in report.effects] == [
        ("restart container app", "fix", True, "restarted")]
    validating = next(d for n, _, d in got["steps"] if n == "validating")
    verdict = next((at, d) for n, at, d in got["steps"] if n == "verdict")
    v = report.validation
    assert v is not None and (v.opens_at, v.ends_at, v.judged_at, v.state) == (
        validating["settle_until"], validating["until"], verdict[0], "passed")
    ((condition, measured),) = verdict[1]["measured"].items()
    (exp,) = v.expectations
    assert (exp.condition, exp.observations, exp.matches, exp.breach) == (
        condition, measured["observations"], measured["matches"], measured["breach"])
    assert f"`suture rollback {outcome.backup_id}`" in text and "suture approve" not in text
    assert "ERROR upstream: 429 Too Many Requests" in text and "cpu\\_percent" not in text  # a code span
    assert "`cpu_percent`: 93.2" in text and "Probe `api`: unhealthy, 12.5 ms, HTTP 503" in text
    assert "`HighErrorRate` firing" in text and "`severity`=`page`" in text
    assert report.seen.labels == (("host", "web-1"),) and report.seen.facts == ("log:app:429",)
    summary = report.summary().splitlines()
    assert summary[0] == f"rate-limit-backoff: succeeded (fix {outcome.fix_id}, {report.seconds:g} s)"
    assert summary[1] == "Changed: config/settings.yaml upstream.request_delay_s: 0.5 -> 1.0; restart container app"


def test_rolled_back(config, target, clock):
    outcome, got, before = applied(config, target, clock, bad_after=4)
    assert outcome.status == "rolled_back" and (target / "config/settings.yaml").read_bytes() == before
    report, text = got["report"], got["text"]
    assert [(e.phase, e.ok) for e in report.effects] == [("fix", True), ("rollback", True)]
    assert report.validation is not None and report.validation.state == "breached"
    assert report.validation.expectations[0].matches and report.validation.expectations[0].breach
    assert "**breached**" in text and "rolled back (1 file(s) restored, verified by sha256)" in text
    assert "nothing to undo" in text
    # max_attempts 1: this failure suspended the playbook, and the report says how to resume it
    assert report.suspension is not None and outcome.fix_id in report.suspension
    assert "`suture resume rate-limit-backoff`" in text


def test_failed(config, target, clock):
    ex, store, backups = make(config, effects=Effects(refuse="restart"))
    settings = target / "config/settings.yaml"
    before = settings.read_bytes()
    outcome = start(ex, store, clock, pb_of())
    assert isinstance(outcome, Outcome) and outcome.status == "failed" and settings.read_bytes() == before
    got = check_against_journal(store, outcome.fix_id, backups)
    report, text = got["report"], got["text"]
    assert report.validation is None
    (failed,) = [e for e in report.effects if e.phase == "fix"]
    assert failed.ok is False and "the container engine said no" in failed.result
    assert "- Effect restart container app: failed: apply failed: restart container app: the container engine said no" \
        in text
    assert "apply failed" in report.summary()


def test_proposed(config, target, clock):
    ex, store, backups = make(config)
    settings = target / "config/settings.yaml"
    before = settings.read_bytes()
    outcome = start(ex, store, clock, pb_of(), threshold=95)
    assert isinstance(outcome, Outcome) and outcome.status == "proposed" and settings.read_bytes() == before
    got = check_against_journal(store, outcome.fix_id, backups)
    report, text = got["report"], got["text"]
    assert report.diffs == () and report.effects == () and report.validation is None
    assert [(c.file, c.target, c.old, c.new) for c in report.changes] == [
        ("config/settings.yaml", "upstream.request_delay_s", "0.5", "1.0")]
    assert "## What it would change" in text and f"`suture approve {outcome.fix_id}`" in text
    assert "confidence 90.0 \\< threshold 95" in text  # escaped: a '<' from a reason never opens a tag
    assert report.summary().splitlines()[1].startswith("Would change: config/settings.yaml")


def test_shadow(config, target, clock):
    ex, store, backups = make(config)
    outcome = start(ex, store, clock, pb_of("mode: shadow"))
    assert isinstance(outcome, Outcome) and outcome.status == "shadow"
    got = check_against_journal(store, outcome.fix_id, backups)
    assert got["report"].decided.verdict == "shadow" and "set the playbook's mode to ask or auto" in got["text"]
    assert "suture approve" not in got["text"] and "suture rollback" not in got["text"]


def test_an_approved_proposal_says_by_whom(config, target, clock):
    ex, store, backups = make(config)
    proposal = start(ex, store, clock, pb_of(), threshold=95)
    assert isinstance(proposal, Outcome)
    clock.advance(5)
    run = start(ex, store, clock, pb_of(), gate=Gate(), proposal_id=proposal.fix_id, approved_by="alice")
    assert isinstance(run, FixRun)
    text = render_markdown(build_report(store, proposal.fix_id, backups))
    assert f"approved by alice as fix {run.fix_id}" in text and "suture approve" not in text
    report = build_report(store, run.fix_id, backups)
    assert report.decided.proposal_id == proposal.fix_id and not report.final
    assert f"end its validation window now and restore the files: `suture rollback {run.manifest.id}`" in \
        render_markdown(report)


def test_an_old_fix_without_evidence_still_renders(config, target, clock):
    """A fix journaled before evidence was kept: 'not recorded', and the rest as usual."""
    ex, store, _backups = make(config)
    pb = pb_of()
    decision = decide(pb, key="", labels={}, outcomes=Outcomes(), gate=store.gate(pb.id, "", clock()),
                      threshold=95, learning=Learning(), fixes_per_hour=100, now=clock())
    outcome = ex.start(pb, decision, now=clock())
    assert isinstance(outcome, Outcome)
    report = build_report(store, outcome.fix_id)
    assert not report.seen.evidence
    assert "Log lines, probe, metric and alert values: not recorded" in render_markdown(report)


def test_no_backup_store_and_a_missing_object_say_why_there_is_no_diff(config, target, clock):
    ex, store, backups = make(config)
    run = start(ex, store, clock, pb_of())
    assert isinstance(run, FixRun)
    assert "not at hand" in build_report(store, run.fix_id).diffs[0].note
    post = run.plan.files[0].post_sha
    backups.object_path(post).unlink()
    (diff,) = build_report(store, run.fix_id, backups).diffs
    assert diff.diff == () and "missing" in diff.note


def test_an_unknown_fix(config):
    store = Store.open(config.db_path)
    with pytest.raises(UnknownFix, match="no fix f-nope"):
        build_report(store, "f-nope")
    store.close()


def test_a_fix_settled_by_a_fleet_verdict_keeps_the_fleet_words(config, target, clock):
    """The decided step's fleet detail is reported as it is."""
    ex, store, backups = make(config)
    pb = pb_of()
    decision = decide(pb, key="", labels={}, outcomes=Outcomes(), gate=store.gate(pb.id, "", clock()),
                      threshold=85, learning=Learning(), fixes_per_hour=100, now=clock())
    run = ex.start(pb, decision, now=clock(), fleet={"action": "act", "token": 7, "role": "canary"})
    assert isinstance(run, FixRun)
    outcome = ex.settle(run, Judgement(state="failed", reason="stopped by the test"), clock())
    report = build_report(store, outcome.fix_id, backups)
    assert report.decided.fleet == (("action", "act"), ("token", "7"), ("role", "canary"))
    assert "Fleet: `action`=`act`, `token`=`7`, `role`=`canary`" in render_markdown(report)


def test_times_with_milliseconds_stay_exact(config, target, clock):
    clock.now += 0.125
    ex, store, backups = make(config)
    outcome = start(ex, store, clock, pb_of(), threshold=95)
    assert isinstance(outcome, Outcome)
    data = build_report(store, outcome.fix_id, backups).as_json()
    assert data["started_at"].endswith(".125Z") and data["steps"][0]["at"] == data["started_at"]


def test_a_restore_that_failed_says_how_to_restore_by_hand(config, target, clock):
    """The window fails, the restore raises (disk full, a lost mount): the file still holds what suture wrote,
    and the report's next step is the rollback command for its backup, not 'nothing to undo'."""
    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    ex, store, backups = make(config)
    ex.undo.hooks["restore_before_rename"] = disk_full
    settings = target / "config/settings.yaml"
    run = start(ex, store, clock, pb_of())
    assert isinstance(run, FixRun)
    written = settings.read_bytes()
    outcome = window(ex, run, clock, bad_after=2)
    assert settings.read_bytes() == written  # the restore failed: suture's edit is still there
    assert "restore_failed" in [step for step, _, _ in journal(store, outcome.fix_id)]
    report = build_report(store, outcome.fix_id, backups)
    text = render_markdown(report)
    backup = store.fix(outcome.fix_id)["backup_id"]
    assert f"`suture rollback {backup}`" in text and "could not be restored" in text
    assert "nothing to undo" not in text
