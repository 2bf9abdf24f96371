"""A fix's life against real files, a real DuckDB history and a real backup store."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import pytest
from suture.engine.backup import BackupStore
from suture.engine.decide import Decision, decide
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.store import Store
from suture.engine.validation import Judgement

from .conftest import RATE_LIMIT, SETTINGS, playbook

ERROR = "ERROR upstream: 429 Client Error: Too Many Requests"
OK = "INFO GET /orders 200"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Crash(BaseException):
    """Stands for SIGKILL at a kill point: nothing after it runs."""


@pytest.fixture
def parts(config, clock):
    store = Store.open(config.db_path)
    backups = BackupStore(config.state_dir / "backups")
    yield config, store, backups
    store.close()


def _executor(parts, **kw) -> Executor:
    config, store, backups = parts
    return Executor(config=config, store=store, backups=backups, **kw)


def _decision(pb, store, clock, threshold=85.0) -> Decision:
    return decide(pb, key="", labels={}, outcomes=store.outcomes(pb.id), gate=store.gate(pb.id, "", clock()),
                  threshold=threshold, learning=parts_learning(), fixes_per_hour=100, now=clock())


def parts_learning():
    from suture.engine.playbook import Learning

    return Learning()


def _run_window(run: FixRun, executor: Executor, clock, lines) -> Outcome:
    """Feed one line per second through the window, then settle on the verdict."""
    judge = run.judge
    while True:
        clock.advance(1)
        for text in lines(clock()):
            judge.line("app", {run.playbook.validate.expect[0].signal} if "429" in text else set(), clock())
        verdict = judge.verdict(clock())
        if verdict.final:
            return executor.settle(run, verdict, clock())


def test_a_fix_that_works_is_committed(parts, target, clock):
    """Clean window: the file keeps the new value, the outcome is succeeded, steps are journaled."""
    _config, store, _ = parts
    pb = playbook(RATE_LIMIT)
    ex = _executor(parts)
    run = ex.start(pb, _decision(pb, store, clock), now=clock(), errors_before=7)
    assert isinstance(run, FixRun)
    assert "request_delay_s:   1.0    # seconds" in (target / "config/settings.yaml").read_text()
    outcome = _run_window(run, ex, clock, lambda now: [OK])
    assert outcome.status == "succeeded"
    row = store.fix(outcome.fix_id)
    assert (row["status"], row["errors_before"], row["errors_after"], row["backup_id"]) == ("succeeded", 7, 0, outcome.backup_id)
    steps = [s["step"] for s in store.steps(outcome.fix_id)]
    assert steps == ["matched", "decided", "planned", "backed_up", "applied", "validating", "verdict", "succeeded"]
    assert store.query("SELECT verdict, errors_after FROM validations WHERE fix_id = ?", [outcome.fix_id]).rows == (
        ("passed", 0),)
    assert store.query("SELECT id FROM backups WHERE fix_id = ?", [outcome.fix_id]).rows == ((outcome.backup_id,),)


def test_a_breach_after_settle_rolls_back_byte_identical(parts, target, clock):
    """One error after settle: rolled back at once; the file's sha256 equals the original."""
    _config, store, _ = parts
    before = sha(target / "config/settings.yaml")
    pb = playbook(RATE_LIMIT)
    ex = _executor(parts)
    run = ex.start(pb, _decision(pb, store, clock), now=clock())
    start = clock()
    outcome = _run_window(run, ex, clock, lambda now: [ERROR] if now - start > 4 else [OK])
    assert outcome.status == "rolled_back"
    assert clock() - start == 5  # at once, not at the end of the 10s window
    assert sha(target / "config/settings.yaml") == before


def test_errors_during_settle_are_ignored(parts, target, clock):
    """Lines inside the settle period do not count against the fix."""
    _, store, _ = parts
    pb = playbook(RATE_LIMIT)  # settle 2s
    ex = _executor(parts)
    run = ex.start(pb, _decision(pb, store, clock), now=clock())
    start = clock()
    outcome = _run_window(run, ex, clock, lambda now: [ERROR] if now - start < 2 else [OK])
    assert outcome.status == "succeeded"


def test_below_threshold_proposes_and_touches_nothing(parts, target, clock):
    """Proposed: the file is untouched and the would-be edit is recorded."""
    _, store, _ = parts
    before = (target / "config/settings.yaml").read_bytes()
    pb = playbook(RATE_LIMIT)
    ex = _executor(parts)
    outcome = ex.start(pb, _decision(pb, store, clock, threshold=95), now=clock())
    assert isinstance(outcome, Outcome) and outcome.status == "proposed"
    assert (target / "config/settings.yaml").read_bytes() == before
    assert "request_delay_s: 0.5 -> 1.0" in store.fix(outcome.fix_id)["detail"]
    assert store.query("SELECT id, approved_fix_id FROM proposals").rows == ((outcome.fix_id, None),)


def test_recorded_successes_lift_a_base_70_playbook_over_the_threshold(parts, target, clock):
    """Ten approved successes later, the same playbook applies on its own."""
    _, store, _ = parts
    pb = playbook(RATE_LIMIT.replace("confidence: 90", "confidence: 70").replace("max: 5", "max: 100000"))
    ex = _executor(parts)
    first = _decision(pb, store, clock)
    assert first.verdict == "propose"
    for _ in range(10):
        approved = _approve(first, clock())
        run = ex.start(pb, approved, now=clock(), approved_by="test")
        assert _run_window(run, ex, clock, lambda now: [OK]).status == "succeeded"
        clock.advance(120)
    later = _decision(pb, store, clock)
    assert (later.verdict, later.successes, round(later.adjusted_confidence, 1)) == ("apply", 10, 85.0)


def _approve(d: Decision, now: float) -> Decision:
    from dataclasses import replace

    return replace(d, verdict="apply", reason="approved by a person", decided_at=now)


def test_rollback_never_overwrites_a_file_someone_changed(parts, target, clock):
    """The file changed after suture wrote it: conflict, and the person's bytes stay."""
    _, store, _ = parts
    pb = playbook(RATE_LIMIT)
    ex = _executor(parts)
    run = ex.start(pb, _decision(pb, store, clock), now=clock())
    (target / "config/settings.yaml").write_text("# edited by a person\n")
    outcome = ex.settle(run, Judgement(state="breached", reason="test"), clock())
    assert outcome.status == "conflict"
    assert (target / "config/settings.yaml").read_text() == "# edited by a person\n"


def test_a_file_changed_between_backup_and_apply_is_not_written(parts, target, clock):
    """The pre-image hash no longer matches at write time: nothing is written."""
    _, store, _ = parts
    pb = playbook(RATE_LIMIT)
    path = target / "config/settings.yaml"
    ex = _executor(parts, hooks={"after_backup": lambda fix_id: path.write_text(SETTINGS + "# meanwhile\n")})
    outcome = ex.start(pb, _decision(pb, store, clock), now=clock())
    assert isinstance(outcome, Outcome) and outcome.status == "failed"
    assert "changed since it was backed up" in outcome.detail
    assert path.read_text() == SETTINGS + "# meanwhile\n"


def test_no_data_in_the_window_is_inconclusive_and_rolled_back(parts, target, clock):
    """A silent source is never success."""
    _, store, _ = parts
    before = sha(target / "config/settings.yaml")
    pb = playbook(RATE_LIMIT)
    ex = _executor(parts)
    run = ex.start(pb, _decision(pb, store, clock), now=clock())
    outcome = _run_window(run, ex, clock, lambda now: [])
    assert outcome.status == "inconclusive"
    assert sha(target / "config/settings.yaml") == before


def test_a_fix_at_its_bound_is_exhausted(parts, target, clock):
    """The value already sits at max: nothing is written, outcome exhausted."""
    _, store, _ = parts
    path = target / "config/settings.yaml"
    path.write_text(SETTINGS.replace("0.5", "5"))
    pb = playbook(RATE_LIMIT)
    outcome = _executor(parts).start(pb, _decision(pb, store, clock), now=clock())
    assert outcome.status == "exhausted"
    assert path.read_text() == SETTINGS.replace("0.5", "5")


def test_mode_and_symlink_are_kept(parts, target, clock):
    """A target reached through a symlink is edited in its real file; link and mode stay."""
    _, store, _ = parts
    real = target / "config" / "real-settings.yaml"
    (target / "config/settings.yaml").rename(real)
    os.symlink("real-settings.yaml", target / "config/settings.yaml")
    real.chmod(0o640)
    pb = playbook(RATE_LIMIT)
    run = _executor(parts).start(pb, _decision(pb, store, clock), now=clock())
    assert isinstance(run, FixRun)
    assert os.path.islink(target / "config/settings.yaml")
    assert oct(real.stat().st_mode & 0o777) == "0o640"
    assert "1.0" in real.read_text()


def test_backup_that_cannot_be_written_means_no_fix(parts, target, clock):
    """The backup store cannot be created (a file stands where its folder should): not applied."""
    config, store, _ = parts
    blocker = config.state_dir / "blocked"
    blocker.write_text("not a folder")
    before = sha(target / "config/settings.yaml")
    ex = Executor(config=config, store=store, backups=BackupStore(blocker / "backups"))
    pb = playbook(RATE_LIMIT)
    outcome = ex.start(pb, _decision(pb, store, clock), now=clock())
    assert outcome.status == "failed" and "not applied" in outcome.detail
    assert sha(target / "config/settings.yaml") == before


@pytest.mark.parametrize("point", ["after_intent", "after_backup", "before_rename", "after_apply_file", "validating", "rolling_back"])
def test_recovery_after_a_crash_restores_the_pre_image(parts, target, clock, point):
    """Killed at any step, the next start leaves the file as it was and no fix unfinished."""
    config, store, backups = parts
    path = target / "config/settings.yaml"
    before = sha(path)

    def crash(*_args):
        raise Crash(point)

    pb = playbook(RATE_LIMIT)
    ex = _executor(parts, hooks={point: crash})
    with pytest.raises(Crash):
        run = ex.start(pb, _decision(pb, store, clock), now=clock())
        ex.settle(run, Judgement(state="breached", reason="test"), clock())  # reaches rolling_back
    outcomes = Executor(config=config, store=store, backups=backups).recover(clock())
    assert [o.status for o in outcomes] == ["failed"]
    assert sha(path) == before
    assert store.unfinished() == []
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")] or point == "before_rename"


def test_restore_puts_back_what_the_last_succeeded_fix_validated(parts, target, clock):
    """After a validated fix, a bad hand edit is undone by `restore` to the validated bytes."""
    _, store, _ = parts
    path = target / "config/settings.yaml"
    ex = _executor(parts)
    pb = playbook(RATE_LIMIT)
    run = ex.start(pb, _decision(pb, store, clock), now=clock())
    assert _run_window(run, ex, clock, lambda now: [OK]).status == "succeeded"
    validated = path.read_bytes()
    path.write_text("upstream: {request_delay_s: oops\n")  # a broken hand edit
    restorer = playbook(
        """
        id: restore-config
        when: {log: {source: app, pattern: 'config .* unreadable'}}
        confidence: 90
        fix: [{restore: {file: config/settings.yaml}}]
        validate: {window: 5s, expect: [{log: {source: app, pattern: 'unreadable', at_most: 0}}]}
        """
    )
    clock.advance(10)
    run = ex.start(restorer, _decision(restorer, store, clock), now=clock())
    assert isinstance(run, FixRun)
    assert path.read_bytes() == validated
    assert "as validated by fix" in run.plan.changes[0].target


def test_restore_without_any_known_good_version_is_not_possible(parts, target, clock):
    """No validated fix and no backup of the file: the fix fails to plan, nothing is written."""
    _, store, _ = parts
    restorer = playbook(
        """
        id: restore-config
        when: {log: {source: app, pattern: 'unreadable'}}
        confidence: 90
        fix: [{restore: {file: config/settings.yaml}}]
        validate: {window: 5s, expect: [{log: {source: app, pattern: 'unreadable', at_most: 0}}]}
        """
    )
    outcome = _executor(parts).start(restorer, _decision(restorer, store, clock), now=clock())
    assert outcome.status == "failed" and "no good version is known" in outcome.detail


def test_max_attempts_failures_in_a_day_suspend_the_playbook_until_a_person_resumes(parts, target, clock):
    """Three rollbacks within 24h suspend it (persisted); resume lets it decide again."""
    _, store, _ = parts
    pb = playbook(RATE_LIMIT.replace("cooldown: 1m", "cooldown: 1s").replace("max: 5", "max: 1000"))
    ex = _executor(parts)
    outcomes = []
    for _ in range(3):
        run = ex.start(pb, _decision(pb, store, clock, threshold=50), now=clock())
        outcomes.append(ex.settle(run, Judgement(state="breached", reason="still failing"), clock()))
        clock.advance(3600)
    assert [o.suspended for o in outcomes] == [False, False, True]
    decision = _decision(pb, store, clock, threshold=50)
    assert decision.verdict == "skip" and "3 failed attempt(s) in 24h" in decision.reason
    assert store.resume(pb.id, clock(), by="alice")
    assert _decision(pb, store, clock, threshold=50).verdict == "apply"


def test_a_link_swapped_into_the_path_after_the_plan_is_refused(parts, target, clock, tmp_path):
    """config/ replaced by a link to a folder outside allowed_paths between backup and write: nothing written."""
    _, store, _ = parts
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "settings.yaml").write_text(SETTINGS)

    def swap(_fix_id):
        (target / "config").rename(target / "config-real")
        os.symlink(outside, target / "config")

    pb = playbook(RATE_LIMIT)
    outcome = _executor(parts, hooks={"after_backup": swap}).start(pb, _decision(pb, store, clock), now=clock())
    assert outcome.status == "failed" and "outside allowed_paths" in outcome.detail, outcome.detail
    assert (outside / "settings.yaml").read_text() == SETTINGS
    assert (target / "config-real" / "settings.yaml").read_text() == SETTINGS


def test_atomic_write_refuses_a_symlink_anywhere_in_the_folder_path(tmp_path):
    """Writes go through folder fds opened without following links."""
    from suture.engine.backup import atomic_write
    from suture.engine.errors import BackupError

    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    with pytest.raises(BackupError, match="'link' is a symlink"):
        atomic_write(tmp_path / "link" / "x.yaml", b"x: 1\n")
    assert not (real / "x.yaml").exists()


def test_owner_mode_and_a_missing_trailing_newline_are_kept(parts, target, clock):
    """A file owned by another user, mode 0640, no final newline: all kept after the edit."""
    _, store, _ = parts
    path = target / "config/settings.yaml"
    path.write_bytes(SETTINGS.rstrip("\n").encode())
    os.chown(path, 4321, 4321)
    path.chmod(0o640)
    pb = playbook(RATE_LIMIT)
    run = _executor(parts).start(pb, _decision(pb, store, clock), now=clock())
    assert isinstance(run, FixRun)
    st = path.stat()
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o777)) == (4321, 4321, "0o640")
    assert path.read_bytes() == SETTINGS.rstrip("\n").replace("0.5", "1.0").encode()


def test_a_no_op_edit_writes_nothing(parts, target, clock):
    """set to the value already there: nothing is written (mtime unchanged), outcome exhausted."""
    _, store, _ = parts
    path = target / "config/settings.yaml"
    before = path.stat().st_mtime_ns
    pb = playbook(RATE_LIMIT.replace("multiply: 2, max: 5", "set: 0.5"))
    outcome = _executor(parts).start(pb, _decision(pb, store, clock), now=clock())
    assert outcome.status == "exhausted"
    assert path.stat().st_mtime_ns == before


def test_backup_retention_keeps_the_newest_and_the_recent(tmp_path, clock):
    """keep_last 2, keep_days 1: of five backups, the two newest and any younger than a day stay."""
    from suture.engine.backup import BackupStore

    store = BackupStore(tmp_path / "backups")
    f = tmp_path / "f.txt"
    ids = []
    for i, age_days in enumerate([10, 9, 8, 0.5, 0.2]):
        f.write_text(f"version {i}\n")
        at = clock() - age_days * 86400
        bid = f"b-2026010{i}T000000Z-00000{i}"
        store.create(backup_id=bid, created_at=at, fix_id=f"f-{i}", playbook_id="p", confidence=90, reason="r",
                     files=[("f.txt", f, f.read_bytes(), f.stat())])
        ids.append(bid)
    for obj in store.objects.glob("??/*"):  # objects as old as their backups
        os.utime(obj, (clock() - 11 * 86400, clock() - 11 * 86400))
    removed = store.prune(clock(), keep_last=2, keep_days=1)
    assert sorted(removed) == ids[:3]
    assert [m.id for m in store.all()] == [ids[4], ids[3]]
    assert len(list(store.objects.glob("??/*"))) == 2


def test_a_full_disk_under_the_backups_means_no_fix(parts, target, clock, tmp_path):
    """The backup store sits on a full filesystem (a real 64 KiB tmpfs): ENOSPC, nothing applied."""
    import subprocess

    config, store, _ = parts
    full = tmp_path / "full"
    full.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)]).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        (full / "filler").write_bytes(b"\0" * 60 * 1024)
        with contextlib.suppress(OSError), open(full / "filler2", "wb") as fh:
            fh.write(b"\0" * 64 * 1024)
        before = sha(target / "config/settings.yaml")
        ex = Executor(config=config, store=store, backups=BackupStore(full / "backups"))
        pb = playbook(RATE_LIMIT)
        outcome = ex.start(pb, _decision(pb, store, clock), now=clock())
        assert outcome.status == "failed" and "disk full" in outcome.detail, outcome.detail
        assert sha(target / "config/settings.yaml") == before
    finally:
        subprocess.run(["umount", str(full)], check=False)
