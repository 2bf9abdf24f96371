"""The journal and the learning stay true: what the history says happened is what happened to the files."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from suture.engine.actions import plan_fix
from suture.engine.backup import BackupStore, read_target
from suture.engine.decide import decide
from suture.engine.errors import PathRefused
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.playbook import Action, Learning
from suture.engine.store import Store
from suture.engine.validation import Judgement
from suture.sidecar import operations as ops

from .conftest import SETTINGS, dedent, playbook, write_config

WITH_ON_ROLLBACK = """
    id: delay-with-reload
    when: {log: {source: app, pattern: '429', at_least: 1, within: 10s}}
    confidence: 90
    fix: [{adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2}}]
    on_rollback: [{restart: {container: app}}]
    validate: {window: 10s, expect: [{log: {source: app, pattern: '429', at_most: 0}}]}
"""


class Crash(BaseException):
    """Stands for SIGKILL at a kill point: nothing after it runs."""


class RecordingEffects:
    """A real EffectRunner that carries nothing out: it records each action it is asked to run."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, bool]] = []

    def run(self, action: Action, context: Mapping[str, Any]) -> str:
        self.ran.append((action.describe(), bool(context.get("rollback"))))
        return "recorded"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def parts(config, clock):
    store = Store.open(config.db_path)
    yield config, store, BackupStore(config.state_dir / "backups")
    store.close()


def start(ex: Executor, store: Store, clock, text: str = WITH_ON_ROLLBACK) -> FixRun | Outcome:
    pb = playbook(text)
    decision = decide(pb, key="", labels={}, outcomes=store.outcomes(pb.id), gate=store.gate(pb.id, "", clock()),
                      threshold=85, learning=Learning(), fixes_per_hour=100, now=clock())
    return ex.start(pb, decision, now=clock())


# --- a person's rollback during the validation window ------------------------------------------------


def test_a_person_rolling_back_a_fix_in_its_window_ends_it_rolled_back(parts, target, clock):
    """`suture rollback` of a backup whose fix is validating: the fix ends rolled_back by that person, on_rollback
    runs, and learning counts a failure, not the success the window would later have reported."""
    config, store, backups = parts
    effects = RecordingEffects()
    ex = Executor(config=config, store=store, backups=backups, effects=effects)
    run = start(ex, store, clock)
    assert isinstance(run, FixRun) and run.manifest is not None
    result, outcome = ex.rollback_backup(run.manifest.id, clock(), by="alice", playbook=run.playbook)
    assert result.restored == ("config/settings.yaml",)
    assert (target / "config/settings.yaml").read_text() == SETTINGS
    assert outcome is not None and outcome.status == "rolled_back" and "by alice" in outcome.detail
    row = store.fix(run.fix_id)
    assert (row["status"], row["finished_at"] is not None) == ("rolled_back", True)
    assert effects.ran == [("restart container app", True)]
    outcomes = store.outcomes(run.playbook.id)
    assert (outcomes.successes, outcomes.failures) == (0, 1)
    # the window the sidecar was watching can no longer say otherwise: the row is final
    ex.settle(run, Judgement(state="passed"), clock())
    assert store.fix(run.fix_id)["status"] == "rolled_back"


def test_a_person_rolling_back_through_a_running_sidecar_stops_its_validation(tmp_path, target, running):
    """Through the running sidecar (the API's path): the fix leaves the validation window as rolled_back by the
    person and is never reported succeeded afterwards."""
    config = write_config(tmp_path, target)
    (config.playbooks / "pb.yaml").write_text(dedent("""
        id: delay
        when: {log: {source: app, pattern: '429', at_least: 1, within: 10s}}
        confidence: 90
        fix: [{adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2}}]
        validate: {window: 2s, expect: [{log: {source: app, pattern: '429', at_most: 0}}]}
        """))
    log = target / "logs" / "app.log"
    log.write_text("")
    r = running(config)
    with open(log, "a") as fh:
        fh.write("429 Too Many Requests\n")
    backed = r.wait_for(lambda e: e.kind == "backed_up", timeout=10)
    answer = r.sidecar.call(lambda: ops.rollback(r.sidecar, backed.data["backup_id"], by="bob"))
    assert (answer["restored"], answer["fix_status"], answer["by"]) == (["config/settings.yaml"], "rolled_back", "bob")
    assert r.sidecar.call(lambda: len(r.sidecar.runs)) == 0
    with open(log, "a") as fh:
        fh.write("all quiet\n")
    r.wait_for(lambda e: e.kind == "manual_rollback", timeout=5)
    fix = r.sidecar.call(lambda: r.sidecar.store.fix(backed.data["fix_id"]))
    assert fix["status"] == "rolled_back" and "by bob" in fix["detail"]
    assert "succeeded" not in r.kinds()


# --- on_rollback ----------------------------------------------------------------------------------


def test_recovery_after_a_crash_runs_on_rollback_from_the_journal(parts, target, clock):
    """Killed while validating: the restart restores the file and runs the on_rollback the plan recorded."""
    config, store, backups = parts

    def crash(*_args):
        raise Crash("validating")

    with pytest.raises(Crash):
        start(Executor(config=config, store=store, backups=backups, effects=RecordingEffects(),
                       hooks={"validating": crash}), store, clock)
    effects = RecordingEffects()
    (outcome,) = Executor(config=config, store=store, backups=backups, effects=effects).recover(clock())
    assert outcome.status == "failed" and "rolled back on restart" in outcome.detail
    assert (target / "config/settings.yaml").read_text() == SETTINGS
    assert effects.ran == [("restart container app", True)]
    assert "effect" in [s["step"] for s in store.steps(outcome.fix_id)]


def test_recovery_says_plainly_when_it_cannot_know_on_rollback(parts, target, clock):
    """A journal without on_rollback records (an older suture wrote it) gets a step saying none were run."""
    config, store, backups = parts

    def crash(*_args):
        raise Crash("validating")

    with pytest.raises(Crash):
        start(Executor(config=config, store=store, backups=backups, hooks={"validating": crash}), store, clock)
    (fix_id,) = [r["id"] for r in store.unfinished()]
    store._exec("UPDATE fix_steps SET detail = json_object('files', json_extract(detail, '$.files')) "
                "WHERE fix_id = ? AND step = 'planned'", [fix_id])
    Executor(config=config, store=store, backups=backups, effects=RecordingEffects()).recover(clock())
    assert "on_rollback_unknown" in [s["step"] for s in store.steps(fix_id)]


def test_on_rollback_does_not_run_when_nothing_was_written(parts, target, clock):
    """The file changed between backup and write, so nothing was written and no effect ran: no on_rollback."""
    config, store, backups = parts
    path = target / "config/settings.yaml"
    effects = RecordingEffects()
    ex = Executor(config=config, store=store, backups=backups, effects=effects,
                  hooks={"after_backup": lambda *_: path.write_text(SETTINGS + "# edited by a person\n")})
    outcome = start(ex, store, clock)
    assert isinstance(outcome, Outcome) and outcome.status == "failed"
    assert "changed since it was backed up; nothing written" in outcome.detail
    assert effects.ran == []


# --- file metadata and the plan-time read -------------------------------------------------------------


def test_writes_and_restores_keep_setuid_and_setgid(parts, target, clock):
    """A setuid/setgid file (owned by another user, when root) keeps 6755 and its owner through the fix and the
    rollback: a chown clears those bits, so the mode is set after it."""
    config, store, backups = parts
    path = target / "config/settings.yaml"
    owner = 1000 if os.geteuid() == 0 else os.getuid()
    os.chown(path, owner, owner if os.geteuid() == 0 else os.getgid())
    os.chmod(path, 0o6755)
    ex = Executor(config=config, store=store, backups=backups, effects=RecordingEffects())
    run = start(ex, store, clock)
    assert isinstance(run, FixRun)
    st = os.stat(path)
    assert (oct(st.st_mode & 0o7777), st.st_uid) == ("0o6755", owner)
    assert run.manifest is not None
    ex.rollback_backup(run.manifest.id, clock(), by="test")
    st = os.stat(path)
    assert (path.read_text(), oct(st.st_mode & 0o7777), st.st_uid) == (SETTINGS, "0o6755", owner)


def test_a_folder_swapped_for_a_link_before_the_plan_reads_is_refused(config, target, tmp_path):
    """The plan-time read walks the folders without following links, like the write: a folder swapped for a link
    to outside after the path was checked cannot pull outside bytes into the plan (and so into a backup)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "settings.yaml").write_text("secret: from outside\nupstream: {request_delay_s: 1}\n")
    pb = playbook(WITH_ON_ROLLBACK)

    def swap_then_read(real: Path):
        shutil.move(target / "config", tmp_path / "config-moved")
        (target / "config").symlink_to(outside)
        return read_target(real)

    with pytest.raises(PathRefused, match="symlink"):
        plan_fix(pb.fix, target_root=config.target_root, allowed=config.allowed_paths, read=swap_then_read)
