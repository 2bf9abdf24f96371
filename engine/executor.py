"""A fix's life: decided -> planned -> backed_up -> applied -> validating -> final.

Every step is journaled in DuckDB *before* the next one starts, so start-up
recovery (:meth:`Executor.recover`) can drive any unfinished fix to a final
state from the journal and the files' hashes alone:

- nothing is written before the plan (targets, pre- and post-image hashes)
  and a verified backup are on record;
- a file is written only if it still holds the pre-image (else: conflict,
  nothing written);
- a rollback restores a file only if it still holds what suture wrote
  (else: conflict, left for a person);
- a validation window cut short by a restart is never a pass.

The executor does not wait: the sidecar calls :meth:`Executor.start`, feeds
the returned :class:`FixRun`'s judge, and calls :meth:`Executor.settle`
when the judge reaches a verdict. Time is always an argument.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .actions import EffectRunner, FilePlan, Plan, plan_fix
from .backup import BackupStore, FileRecord, Manifest, atomic_write, read_nofollow, sha256_bytes
from .config import Config
from .decide import Decision
from .errors import ActionError, AtBound, BackupError, Conflict, PathRefused, SutureError
from .paths import resolve_target
from .playbook import Action, Playbook, action_as_json, action_from_json
from .store import FAILURE, Store
from .validation import Judge, Verdict

log = logging.getLogger("suture.executor")

IdFactory = Callable[[str, float], str]
SUSPEND_WINDOW = 24 * 3600.0  # max_attempts counts failures within this


def new_id(prefix: str, now: float) -> str:
    """``f-20261126T013000Z-3fa2c1``: sortable by time, unique by its random tail."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class FixRun:
    """A fix that has been applied and is being validated."""

    fix_id: str
    playbook: Playbook
    decision: Decision
    plan: Plan
    manifest: Manifest | None
    judge: Judge
    started_at: float
    errors_before: int | None = None
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    fix_id: str
    playbook_id: str
    status: str
    detail: str
    backup_id: str | None = None
    suspended: bool = False  # this outcome suspended the playbook (max_attempts reached)


@dataclass(slots=True)
class Restored:
    """What a rollback did: files put back, files someone else changed, files whose restore raised."""

    restored: int = 0
    conflicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class RollbackIncomplete(SutureError):
    """A restore raised: the file still holds what suture wrote (the fix ends failed, saying which)."""


class Executor:
    """Carries decisions out against the files, the journal and the backup store."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        backups: BackupStore,
        effects: EffectRunner | None = None,
        ids: IdFactory = new_id,
        hooks: Mapping[str, Callable[..., None]] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.backups = backups
        self.effects = effects
        self.ids = ids
        self.hooks = dict(hooks or {})  # kill points for the crash tests

    def _hook(self, name: str, *args: Any) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook(*args)

    # -- starting a fix --

    def record(
        self,
        pb: Playbook,
        decision: Decision,
        *,
        now: float,
        facts: tuple[str, ...] = (),
        errors_before: int | None = None,
        proposal_id: str | None = None,
        approved_by: str | None = None,
    ) -> str:
        """Insert the fix row and its first steps; return the fix id."""
        fix_id = self.ids("f", now)
        types = sorted({type(a).__name__.lower().replace("setvalue", "set") for a in pb.fix})
        self.store.begin_fix(
            fix_id,
            decision,
            status="matched",
            playbook_version=pb.digest[:12],
            fix_types=types,
            errors_before=errors_before,
            proposal_id=proposal_id,
            approved_by=approved_by,
        )
        self.store.step(fix_id, "matched", now, {"facts": list(facts), "labels": dict(decision.labels)})
        self.store.step(
            fix_id,
            "decided",
            now,
            {"verdict": decision.verdict, "reason": decision.reason, "adjusted": decision.adjusted_confidence,
             "threshold": decision.threshold},
        )
        return fix_id

    def start(
        self,
        pb: Playbook,
        decision: Decision,
        *,
        now: float,
        facts: tuple[str, ...] = (),
        errors_before: int | None = None,
        proposal_id: str | None = None,
        approved_by: str | None = None,
    ) -> FixRun | Outcome:
        """Record the decision; for ``apply``, back up, apply and open the validation window."""
        fix_id = self.record(
            pb, decision, now=now, facts=facts, errors_before=errors_before,
            proposal_id=proposal_id, approved_by=approved_by,
        )
        try:
            if decision.verdict != "apply":
                return self._record_only(fix_id, pb, decision, now)
            return self._apply(fix_id, pb, decision, now=now, errors_before=errors_before)
        except Exception as exc:  # a bug, or an input nobody foresaw: it ends this fix, never the sidecar
            return self.crashed(fix_id, pb, "applying the fix", exc, now)

    def _record_only(self, fix_id: str, pb: Playbook, decision: Decision, now: float) -> Outcome:
        """propose / shadow / skip: say what the fix would change, touch nothing."""
        status = {"propose": "proposed", "shadow": "shadow", "skip": "skipped"}[decision.verdict]
        detail = decision.reason
        if decision.verdict in ("propose", "shadow"):
            try:
                plan = self._plan(pb)
                self.store.update(fix_id, changes=[c.as_json() for c in plan.changes])
                detail = f"{decision.reason}; would {_summary(plan)}"
            except ActionError as exc:
                detail = f"{decision.reason}; no fix possible now: {exc}"
            except Exception as exc:  # planning only reads: a failure here changes nothing
                log.exception("%s: planning failed", fix_id)
                self.store.step(fix_id, "error", now, _error_detail("planning the fix", exc))
                detail = f"{decision.reason}; no fix possible now: internal error while planning: {_brief(exc)}"
        self.store.finish(fix_id, status, now, detail=detail)
        return Outcome(fix_id=fix_id, playbook_id=pb.id, status=status, detail=detail)

    def _plan(self, pb: Playbook) -> Plan:
        self._hook("plan", pb.id)
        return plan_fix(pb.fix, target_root=self.config.target_root, allowed=self.config.allowed_paths,
                        last_good=self.last_good)

    def last_good(self, file: str) -> tuple[bytes, str] | None:
        """The last good bytes of ``file``: what the newest succeeded fix left there, else the newest backup."""
        rows = self.store.query(
            """SELECT f.id, s.detail FROM fix_steps s JOIN fixes f ON f.id = s.fix_id
               WHERE s.step = 'planned' AND f.status = 'succeeded' ORDER BY f.finished_at DESC LIMIT 200"""
        ).rows
        for fix_id, detail in rows:
            for entry in json.loads(detail).get("files", []):
                if entry["path"] == file:
                    try:
                        return self.backups.get(entry["post"]), f"as validated by fix {fix_id}"
                    except BackupError:
                        break
        for manifest in self.backups.all():
            for record in manifest.files:
                if record.path == file:
                    try:
                        return self.backups.get(record.sha256), f"backup {manifest.id} (before fix {manifest.fix_id})"
                    except BackupError:
                        break
        return None

    def _apply(self, fix_id: str, pb: Playbook, decision: Decision, *, now: float, errors_before: int | None) -> FixRun | Outcome:
        try:
            plan = self._plan(pb)
        except AtBound as exc:
            return self._final(fix_id, pb, "exhausted", now, str(exc))
        except ActionError as exc:
            return self._final(fix_id, pb, "failed", now, f"cannot plan the fix: {exc}")
        if plan.empty:
            return self._final(fix_id, pb, "exhausted", now, "the fix would change nothing")
        self.store.update(fix_id, status="planned", changes=[c.as_json() for c in plan.changes])
        self.store.step(
            fix_id,
            "planned",
            now,
            {"files": [{"path": f.path, "real": str(f.real), "pre": f.pre_sha, "post": f.post_sha} for f in plan.files],
             "effects": [a.describe() for a in plan.effects],
             # what a rollback runs after the restore, so recovery after a crash can run it too
             "on_rollback": [action_as_json(a) for a in pb.on_rollback]},
        )
        self._hook("after_intent", fix_id)
        manifest = None
        if plan.files:
            backup_id = self.ids("b", now)
            try:
                manifest = self.backups.create(
                    backup_id=backup_id,
                    created_at=now,
                    fix_id=fix_id,
                    playbook_id=pb.id,
                    confidence=decision.adjusted_confidence,
                    reason=decision.reason,
                    files=[(f.path, f.real, f.before, f.stat) for f in plan.files],
                )
            except BackupError as exc:
                return self._final(fix_id, pb, "failed", now, f"not applied: {exc}")
            for fp in plan.files:  # post-images too, so a later `restore` can put a validated version back
                self.backups.put(fp.after)
            self.store.record_backup(manifest.id, fix_id, pb.id, now, [
                {"path": f.path, "sha256": f.sha256, "size": f.size, "mode": f.mode, "uid": f.uid, "gid": f.gid}
                for f in manifest.files])
            self.store.update(fix_id, status="backed_up", backup_id=manifest.id)
            self.store.step(fix_id, "backed_up", now, {"backup_id": manifest.id})
            self._hook("after_backup", fix_id)
        written: list[FilePlan] = []
        attempted = 0  # effects started: one that failed half way may still have changed something
        try:
            for fp in plan.files:
                self._write(fp)
                written.append(fp)
                self.store.step(fix_id, "applied", now, {"path": fp.path, "post": fp.post_sha})
                self._hook("after_apply_file", fix_id, fp.path)
            self.store.update(fix_id, status="applied")
            context = {"fix_id": fix_id, "playbook_id": pb.id, "labels": dict(decision.labels)}
            for action in plan.effects:
                if self.effects is None:
                    raise ActionError(f"cannot {action.describe()}: no effect runner in this context")
                self.store.step(fix_id, "effect_started", now, {"action": action.describe()})
                self._hook("before_effect", fix_id, action)
                attempted += 1
                result = self.effects.run(action, context)
                self.store.step(fix_id, "effect", now, {"action": action.describe(), "result": result})
            judge = Judge(pb.validate, now)
        except Exception as exc:
            expected = isinstance(exc, (ActionError, BackupError, OSError))
            reason = f"apply failed: {exc}" if expected else f"apply failed: internal error: {_brief(exc)}"
            if expected:
                log.warning("%s: %s", fix_id, reason)
            else:
                log.exception("%s: apply failed", fix_id)
                self.store.step(fix_id, "error", now, _error_detail("applying the fix", exc))
            status = self._undo(fix_id, pb, plan, manifest, now, reason, only=[f.path for f in written],
                                touched=bool(written) or attempted > 0)
            return self._final(fix_id, pb, "failed" if status != "conflict" else "conflict", now, reason)
        self.store.update(fix_id, status="validating")
        self.store.step(fix_id, "validating", now, {"until": judge.ends_at, "settle_until": judge.opens_at})
        self._hook("validating", fix_id)
        return FixRun(
            fix_id=fix_id, playbook=pb, decision=decision, plan=plan, manifest=manifest,
            judge=judge, started_at=now, errors_before=errors_before,
        )

    def _write(self, fp: FilePlan) -> None:
        # checked again right before writing: a link swapped in since the plan must not redirect us
        try:
            real = resolve_target(self.config.target_root, self.config.allowed_paths, fp.path)
        except PathRefused as exc:
            raise ActionError(f"{fp.path}: {exc}; nothing written") from exc
        if real != fp.real:
            raise ActionError(f"{fp.path} now resolves to {real} (planned for {fp.real}); nothing written")
        current = read_nofollow(fp.real)
        if sha256_bytes(current) != fp.pre_sha:
            raise ActionError(f"{fp.path} changed since it was backed up; nothing written")
        atomic_write(
            fp.real,
            fp.after,
            mode=fp.stat.st_mode & 0o7777,
            owner=(fp.stat.st_uid, fp.stat.st_gid),
            before_rename=self.hooks.get("before_rename"),
        )
        if sha256_bytes(read_nofollow(fp.real)) != fp.post_sha:
            raise ActionError(f"{fp.path} does not read back as written")

    # -- ending a fix --

    def settle(self, run: FixRun, verdict: Verdict, now: float) -> Outcome:
        """Commit a passed fix; roll back a breached, failed or inconclusive one. Always ends the fix."""
        try:
            self._hook("settle", run.fix_id)
            return self._settle(run, verdict, now)
        except Exception as exc:
            return self.crashed(run.fix_id, run.playbook, "judging or rolling back the fix", exc, now)

    def _settle(self, run: FixRun, verdict: Verdict, now: float) -> Outcome:
        errors_after = run.judge.errors_after()
        measured = run.judge.measured()
        self.store.step(run.fix_id, "verdict", now, {"state": verdict.state, "reason": verdict.reason,
                                                    "measured": measured})
        self.store.record_validation(run.fix_id, opened_at=run.judge.opens_at, judged_at=now, verdict=verdict.state,
                                     reason=verdict.reason, errors_after=errors_after, measured=measured)
        if verdict.state == "passed":
            return self._final(run.fix_id, run.playbook, "succeeded", now, verdict.reason, errors_after=errors_after)
        if verdict.state == "inconclusive" and run.playbook.on_inconclusive == "keep":
            return self._final(run.fix_id, run.playbook, "inconclusive", now, f"{verdict.reason}; kept (on_inconclusive: keep)", errors_after=errors_after)
        status = self._undo(run.fix_id, run.playbook, run.plan, run.manifest, now, verdict.reason)
        if status == "conflict":
            final = "conflict"
        elif verdict.state == "inconclusive":
            final = "inconclusive"
        else:
            final = "rolled_back"
        return self._final(run.fix_id, run.playbook, final, now, f"{verdict.reason}; {status}", errors_after=errors_after)

    def _undo(
        self, fix_id: str, pb: Playbook, plan: Plan, manifest: Manifest | None, now: float, reason: str,
        only: list[str] | None = None, touched: bool = True,
    ) -> str:
        """Restore every written file that still holds what suture wrote; report conflicts.

        ``on_rollback`` runs only if the fix ``touched`` something (wrote a file or started an effect).
        """
        self.store.update(fix_id, status="rolling_back")
        self.store.step(fix_id, "rolling_back", now, {"reason": reason})
        self._hook("rolling_back", fix_id)
        done = Restored()
        if manifest is not None:
            post = {f.path: f.post_sha for f in plan.files}
            done = self._restore_all(fix_id, [r for r in manifest.files if only is None or r.path in only], post, now)
        if touched:
            self._run_on_rollback(fix_id, pb.id, pb.on_rollback, now)
        if done.conflicts:
            return "conflict"
        if done.failed:
            raise RollbackIncomplete("rollback incomplete: " + "; ".join(done.failed))
        return f"rolled back ({done.restored} file(s) restored, verified by sha256)"

    def _restore_all(self, fix_id: str, records: list[FileRecord], post: Mapping[str, str], now: float) -> Restored:
        """Put back each file that holds what suture wrote; say which were changed by others or failed."""
        done = Restored()
        for record in records:
            try:
                state = self._restore_one(record, post.get(record.path))
            except Exception as exc:  # the file still holds one whole image (writes are atomic)
                log.error("%s: restoring %s failed", fix_id, record.path, exc_info=exc)
                self.store.step(fix_id, "restore_failed", now, {"path": record.path, **_error_detail("restoring", exc)})
                done.failed.append(f"{record.path} still holds what suture wrote (restore failed: {_brief(exc)})")
                continue
            if state == "conflict":
                done.conflicts.append(record.path)
            elif state == "restored":
                done.restored += 1
        return done

    def _run_on_rollback(self, fix_id: str, playbook_id: str, actions: tuple[Action, ...], now: float) -> None:
        """Carry out ``on_rollback`` after a restore; each result (or why it could not run) is journaled."""
        for action in actions:
            if self.effects is None:
                self.store.step(fix_id, "effect_failed", now, {"action": action.describe(),
                                                               "error": "no effect runner in this context"})
                continue
            try:
                result = self.effects.run(action, {"fix_id": fix_id, "playbook_id": playbook_id, "rollback": True})
                self.store.step(fix_id, "effect", now, {"action": action.describe(), "result": result})
            except Exception as exc:
                if not isinstance(exc, ActionError):
                    log.exception("%s: on_rollback %s failed", fix_id, action.describe())
                self.store.step(fix_id, "effect_failed", now, {"action": action.describe(), "error": _brief(exc)})

    def _restore_one(self, record: FileRecord, post_sha: str | None) -> str:
        real = Path(record.real)
        try:
            current = sha256_bytes(read_nofollow(real))
        except FileNotFoundError:
            current = None
        if current == record.sha256:
            return "unchanged"
        if post_sha is not None and current == post_sha:
            self.backups.restore(record, before_rename=self.hooks.get("restore_before_rename"))
            return "restored"
        log.error("%s changed after suture wrote it; not rolling back over it", record.path)
        return "conflict"

    def _final(self, fix_id: str, pb: Playbook, status: str, now: float, detail: str, *, errors_after: int | None = None) -> Outcome:
        self.store.finish(fix_id, status, now, detail=detail, errors_after=errors_after)
        row = self.store.fix(fix_id) or {}
        suspended = False
        if status in FAILURE and row.get("decision") == "apply":
            failures = self.store.failures_since(pb.id, now - SUSPEND_WINDOW)
            if failures >= pb.max_attempts:
                reason = f"{failures} failed attempt(s) in 24h (max_attempts {pb.max_attempts}); last: {fix_id}"
                suspended = self.store.suspend(pb.id, now, reason)
        return Outcome(fix_id=fix_id, playbook_id=pb.id, status=status, detail=detail,
                       backup_id=row.get("backup_id"), suspended=suspended)

    def prune_backups(self, now: float) -> list[str]:
        """Apply the retention of the config; keep the post-images a `restore` may need."""
        keep = set()
        for (detail,) in self.store.query(
            """SELECT s.detail FROM fix_steps s JOIN fixes f ON f.id = s.fix_id
               WHERE s.step = 'planned' AND f.status = 'succeeded'"""
        ).rows:
            keep |= {entry["post"] for entry in json.loads(detail).get("files", [])}
        return self.backups.prune(now, keep_last=self.config.backups_keep_last,
                                  keep_days=self.config.backups_keep_days, keep_objects=keep)

    def post_images(self, fix_id: str) -> dict[str, str]:
        """What suture wrote to each file of a fix (from its journal)."""
        for step in self.store.steps(fix_id):
            if step["step"] == "planned":
                return {f["path"]: f["post"] for f in json.loads(step["detail"])["files"]}
        return {}

    def rollback_backup(self, backup_id: str, now: float, *, force: bool = False) -> list[str]:
        """Restore a backup by hand (`suture rollback`); refuse files changed by others unless ``force``."""
        manifest = self.backups.load(backup_id)
        post = self.post_images(manifest.fix_id)
        plans = []
        for record in manifest.files:
            try:
                current: str | None = sha256_bytes(read_nofollow(Path(record.real)))
            except FileNotFoundError:
                current = None
            if current == record.sha256:
                plans.append((record, "unchanged"))
            elif current == post.get(record.path) or force:
                plans.append((record, "restore"))
            else:
                raise Conflict(
                    f"{record.path} was changed after suture wrote it (sha256 {str(current)[:12]}); "
                    "use --force to restore the backup over it"
                )
        done = []
        for record, action in plans:
            if action == "restore":
                self.backups.restore(record)
                done.append(record.path)
        fix = self.store.fix(manifest.fix_id)
        if fix is not None:
            self.store.step(manifest.fix_id, "manual_rollback", now, {"backup_id": backup_id, "restored": done, "force": force})
        return done

    # -- a fix that raised, and start-up recovery: both driven to a final state from the journal --

    def crashed(self, fix_id: str, pb: Playbook, stage: str, exc: Exception, now: float) -> Outcome:
        """End a fix whose step raised: journal the error, restore what it wrote, run on_rollback, mark it failed.

        Whatever raised, every target still holds a whole pre- or post-image (writes are atomic), so the
        journal and the files' hashes say what to put back, exactly as after a crash and restart.
        """
        log.error("%s (%s): internal error while %s", fix_id, pb.id, stage, exc_info=exc)
        why = f"internal error while {stage}: {_brief(exc)}"
        try:
            self.store.step(fix_id, "error", now, _error_detail(stage, exc))
            row = self.store.fix(fix_id)
            if row is None or row.get("finished_at") is not None:
                return Outcome(fix_id=fix_id, playbook_id=pb.id, status=str((row or {}).get("status", "failed")),
                               detail=why)
            status, detail = self._undo_from_journal(row, now, why)
            return self._final(fix_id, pb, status, now, detail)
        except Exception as again:  # the history itself fails (disk full?): say so, keep the sidecar going
            log.error("%s: cannot record the end of the fix: %s", fix_id, _brief(again), exc_info=again)
            with contextlib.suppress(Exception):
                self.store.finish(fix_id, "failed", now, detail=why)
            return Outcome(fix_id=fix_id, playbook_id=pb.id, status="failed", detail=why)

    def recover(self, now: float) -> list[Outcome]:
        """Drive every unfinished fix to a final state (run before sources start)."""
        outcomes = []
        for row in self.store.unfinished():
            fix_id = row["id"]
            steps = {s["step"] for s in self.store.steps(fix_id)}
            was = "validation window cut short" if "validating" in steps else f"interrupted at {row['status']}"
            try:
                self.store.step(fix_id, "recovering", now, {"last_step": row["status"]})
                status, detail = self._undo_from_journal(row, now, was, restarted=True)
            except Exception as exc:
                log.error("%s: recovery failed", fix_id, exc_info=exc)
                status, detail = "conflict", f"{was}; recovery failed ({_brief(exc)}); files left for a person"
            self.store.finish(fix_id, status, now, detail=detail)
            outcomes.append(Outcome(fix_id=fix_id, playbook_id=row["playbook_id"], status=status, detail=detail,
                                    backup_id=row.get("backup_id")))
        return outcomes

    def _undo_from_journal(self, row: Mapping[str, Any], now: float, was: str, *, restarted: bool = False
                           ) -> tuple[str, str]:
        """Put back every file that holds what the journal says suture wrote; run on_rollback. (status, detail)"""
        fix_id = row["id"]
        steps = self.store.steps(fix_id)
        names = {s["step"] for s in steps}
        planned = next((json.loads(s["detail"]) for s in steps if s["step"] == "planned"), None)
        for entry in (planned or {}).get("files", []):
            _remove_stale_temp(Path(entry["real"]))
        touched = bool(names & {"applied", "effect", "effect_started"})
        done = Restored()
        if "backed_up" in names and row.get("backup_id"):
            try:
                manifest = self.backups.load(row["backup_id"])
            except BackupError as exc:
                return "conflict", f"{was}; backup unreadable ({exc}); files left for a person"
            post = {f["path"]: f["post"] for f in (planned or {}).get("files", [])}
            done = self._restore_all(fix_id, list(manifest.files), post, now)
        if touched:
            self._run_on_rollback(fix_id, row["playbook_id"], self._journaled_on_rollback(fix_id, planned, now), now)
        if done.conflicts:
            return "conflict", f"{was}; changed by someone else: {', '.join(done.conflicts)}"
        if done.failed:
            return "failed", f"{was}; rollback incomplete: {'; '.join(done.failed)}"
        restored = done.restored
        if not touched and not restored:
            return "failed", (f"{was}; interrupted before any file was changed" if restarted
                              else f"{was}; nothing was changed")
        return "failed", f"{was}; rolled back{' on restart' if restarted else ''}"

    def _journaled_on_rollback(self, fix_id: str, planned: Mapping[str, Any] | None, now: float) -> tuple[Action, ...]:
        """The on_rollback actions the plan recorded; a step says so when they cannot be known."""
        if planned is None or "on_rollback" not in planned:
            self.store.step(fix_id, "on_rollback_unknown", now,
                            {"reason": "the journal holds no on_rollback actions for this fix (written by an older "
                                       "suture, or interrupted before its plan); none were run"})
            return ()
        actions = []
        for data in planned["on_rollback"]:
            try:
                actions.append(action_from_json(data))
            except ValueError as exc:
                self.store.step(fix_id, "effect_failed", now, {"action": str(data.get("kind")),
                                                               "error": f"cannot read it from the journal: {exc}"})
        return tuple(actions)


def _summary(plan: Plan) -> str:
    parts = [f"change {c.file} {c.target}: {c.old} -> {c.new}" for c in plan.changes]
    parts += [a.describe() for a in plan.effects]
    return "; ".join(parts) if parts else "change nothing"


def _brief(exc: BaseException) -> str:
    """An error in one line: suture's own say what they mean; anything else is named by its type."""
    text = str(exc) if isinstance(exc, SutureError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


def _error_detail(stage: str, exc: BaseException) -> dict[str, Any]:
    """What the journal keeps of an unexpected error: where it happened and what it said."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return {"stage": stage, "error": _brief(exc), "type": type(exc).__name__, "where": where}


def _remove_stale_temp(real: Path) -> None:
    """Remove temp files a killed write left beside ``real`` (named by atomic_write)."""
    for stale in real.parent.glob(f".{real.name}.suture-*.tmp"):
        try:
            stale.unlink()
        except OSError as exc:
            log.warning("cannot remove stale temp file %s: %s", stale, exc)
