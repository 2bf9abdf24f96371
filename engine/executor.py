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
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .actions import EffectRunner, FilePlan, Plan, plan_fix
from .backup import BackupStore, Manifest, atomic_write, read_nofollow, sha256_bytes
from .config import Config
from .decide import Decision
from .errors import ActionError, AtBound, BackupError, PathRefused
from .paths import resolve_target
from .playbook import Playbook, action_as_json
from .steps import EffectRequest, Steps, drive
from .store import FAILURE, Store
from .undo import ManualRollback, Restored, RollbackIncomplete, Undo, brief, error_detail
from .validation import Judge, Judgement

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
        self.undo = Undo(store=store, backups=backups, effects=effects, hooks=self.hooks)

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
        """:meth:`begin`, with its effects run inline (tests, tools)."""
        return drive(self.begin(pb, decision, now=now, facts=facts, errors_before=errors_before,
                                proposal_id=proposal_id, approved_by=approved_by), self.effects)

    def begin(
        self,
        pb: Playbook,
        decision: Decision,
        *,
        now: float,
        facts: tuple[str, ...] = (),
        errors_before: int | None = None,
        proposal_id: str | None = None,
        approved_by: str | None = None,
    ) -> Steps[FixRun | Outcome]:
        """Record the decision; for ``apply``, back up, apply and open the validation window.

        The fix's effects are yielded (:mod:`.steps`); everything else happens here, journaled.
        """
        fix_id = self.record(
            pb, decision, now=now, facts=facts, errors_before=errors_before,
            proposal_id=proposal_id, approved_by=approved_by,
        )
        try:
            if decision.verdict != "apply":
                return self._record_only(fix_id, pb, decision, now)
            return (yield from self._apply(fix_id, pb, decision, now=now, errors_before=errors_before))
        except Exception as exc:  # a bug, or an input nobody foresaw: it ends this fix, never the sidecar
            return (yield from self.crashed_steps(fix_id, pb, "applying the fix", exc, now))

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
                self.store.step(fix_id, "error", now, error_detail("planning the fix", exc))
                detail = f"{decision.reason}; no fix possible now: internal error while planning: {brief(exc)}"
        self.store.finish(fix_id, status, now, detail=detail)
        return Outcome(fix_id=fix_id, playbook_id=pb.id, status=status, detail=detail)

    def _plan(self, pb: Playbook) -> Plan:
        self._hook("plan", pb.id)
        return plan_fix(pb.fix, target_root=self.config.target_root, allowed=self.config.allowed_paths,
                        last_good=self.last_good)

    def last_good(self, file: str) -> tuple[bytes, str] | None:
        """The last good bytes of ``file``: what the newest succeeded fix left there, else the newest backup."""
        for validated in self.store.last_validated_files(limit=200):
            post = validated.files.get(file)
            if post is not None:
                try:
                    return self.backups.get(post), f"as validated by fix {validated.fix_id}"
                except BackupError:
                    break
        for manifest in self.backups.all():
            for record in manifest.files:
                if record.path == file:
                    try:
                        what = ("the baseline suture init took" if manifest.fix_id == "baseline"
                                else f"before fix {manifest.fix_id}")
                        return self.backups.get(record.sha256), f"backup {manifest.id} ({what})"
                    except BackupError:
                        break
        return None

    def _apply(self, fix_id: str, pb: Playbook, decision: Decision, *, now: float, errors_before: int | None
               ) -> Steps[FixRun | Outcome]:
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
        started = now
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
                reply = yield EffectRequest(fix_id, action, context)
                now = reply.at or now  # the window opens when the effects are done
                self.store.step(fix_id, "effect", now, {"action": action.describe(), "result": reply.result})
            judge = Judge(pb.validate, now)
        except Exception as exc:
            expected = isinstance(exc, (ActionError, BackupError, OSError))
            reason = f"apply failed: {exc}" if expected else f"apply failed: internal error: {brief(exc)}"
            if expected:
                log.warning("%s: %s", fix_id, reason)
            else:
                log.exception("%s: apply failed", fix_id)
                self.store.step(fix_id, "error", now, error_detail("applying the fix", exc))
            status = yield from self._undo(fix_id, pb, plan, manifest, now, reason, only=[f.path for f in written],
                                           touched=bool(written) or attempted > 0)
            return self._final(fix_id, pb, "failed" if status != "conflict" else "conflict", now, reason)
        self.store.update(fix_id, status="validating")
        self.store.step(fix_id, "validating", now, {"until": judge.ends_at, "settle_until": judge.opens_at})
        self._hook("validating", fix_id)
        return FixRun(
            fix_id=fix_id, playbook=pb, decision=decision, plan=plan, manifest=manifest,
            judge=judge, started_at=started, errors_before=errors_before,
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

    def settle(self, run: FixRun, verdict: Judgement, now: float) -> Outcome:
        """:meth:`settle_steps`, with on_rollback's effects run inline."""
        return drive(self.settle_steps(run, verdict, now), self.effects)

    def settle_steps(self, run: FixRun, verdict: Judgement, now: float) -> Steps[Outcome]:
        """Commit a passed fix; roll back a breached, failed or inconclusive one. Always ends the fix."""
        try:
            self._hook("settle", run.fix_id)
            return (yield from self._settle(run, verdict, now))
        except Exception as exc:
            return (yield from self.crashed_steps(run.fix_id, run.playbook, "judging or rolling back the fix", exc, now))

    def _settle(self, run: FixRun, verdict: Judgement, now: float) -> Steps[Outcome]:
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
        status = yield from self._undo(run.fix_id, run.playbook, run.plan, run.manifest, now, verdict.reason)
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
    ) -> Steps[str]:
        """Restore every written file that still holds what suture wrote; report conflicts.

        ``on_rollback`` runs only if the fix ``touched`` something (wrote a file or started an effect).
        """
        self.store.update(fix_id, status="rolling_back")
        self.store.step(fix_id, "rolling_back", now, {"reason": reason})
        self._hook("rolling_back", fix_id)
        done = Restored()
        if manifest is not None:
            post = {f.path: f.post_sha for f in plan.files}
            done = self.undo.restore_all(fix_id, [r for r in manifest.files if only is None or r.path in only], post, now)
        if touched:
            yield from self.undo.on_rollback(fix_id, pb.id, pb.on_rollback, now)
        if done.conflicts:
            return "conflict"
        if done.failed:
            raise RollbackIncomplete("rollback incomplete: " + "; ".join(done.failed))
        return f"rolled back ({done.restored} file(s) restored, verified by sha256)"

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
        return self.backups.prune(now, keep_last=self.config.backups_keep_last,
                                  keep_days=self.config.backups_keep_days,
                                  keep_objects=set(self.store.validated_post_images()))

    def post_images(self, fix_id: str) -> dict[str, str]:
        """What suture wrote to each file of a fix (from its journal)."""
        return self.undo.post_images(fix_id)

    def rollback_backup(self, backup_id: str, now: float, *, force: bool = False, by: str = "a person",
                        playbook: Playbook | None = None) -> tuple[ManualRollback, Outcome | None]:
        """:meth:`rollback_steps`, with on_rollback's effects run inline."""
        return drive(self.rollback_steps(backup_id, now, force=force, by=by, playbook=playbook), self.effects)

    def rollback_steps(self, backup_id: str, now: float, *, force: bool = False, by: str = "a person",
                       playbook: Playbook | None = None) -> Steps[tuple[ManualRollback, Outcome | None]]:
        """Restore a backup by hand (`suture rollback`); refuse files changed by others unless ``force``.

        A fix still in its validation window ends here as ``rolled_back`` (by ``by``): its Outcome is
        returned for the caller to report and to stop validating. ``playbook`` (when loaded) lets a
        person's rollback count towards ``max_attempts`` like any failed attempt.
        """
        result = yield from self.undo.manual_steps(backup_id, now, force=force, by=by)
        if result.ended is None:
            return result, None
        status, detail = result.ended
        if playbook is None:
            self.store.finish(result.fix_id, status, now, detail=detail)
            row = self.store.fix(result.fix_id) or {}
            return result, Outcome(fix_id=result.fix_id, playbook_id=str(row.get("playbook_id", "")), status=status,
                                   detail=detail, backup_id=backup_id)
        return result, self._final(result.fix_id, playbook, status, now, detail)

    # -- a fix that raised, and start-up recovery: both driven to a final state from the journal --

    def crashed(self, fix_id: str, pb: Playbook, stage: str, exc: Exception, now: float) -> Outcome:
        """:meth:`crashed_steps`, with on_rollback's effects run inline."""
        return drive(self.crashed_steps(fix_id, pb, stage, exc, now), self.effects)

    def crashed_steps(self, fix_id: str, pb: Playbook, stage: str, exc: Exception, now: float) -> Steps[Outcome]:
        """End a fix whose step raised: journal the error, restore what it wrote, run on_rollback, mark it failed.

        Whatever raised, every target still holds a whole pre- or post-image (writes are atomic), so the
        journal and the files' hashes say what to put back, exactly as after a crash and restart.
        """
        log.error("%s (%s): internal error while %s", fix_id, pb.id, stage, exc_info=exc)
        why = f"internal error while {stage}: {brief(exc)}"
        try:
            self.store.step(fix_id, "error", now, error_detail(stage, exc))
            row = self.store.fix(fix_id)
            if row is None or row.get("finished_at") is not None:
                return Outcome(fix_id=fix_id, playbook_id=pb.id, status=str((row or {}).get("status", "failed")),
                               detail=why)
            status, detail = yield from self.undo.from_journal_steps(row, now, why)
            return self._final(fix_id, pb, status, now, detail)
        except Exception as again:  # the history itself fails (disk full?): say so, keep the sidecar going
            log.error("%s: cannot record the end of the fix: %s", fix_id, brief(again), exc_info=again)
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
                status, detail = self.undo.from_journal(row, now, was, restarted=True)
            except Exception as exc:
                log.error("%s: recovery failed", fix_id, exc_info=exc)
                status, detail = "conflict", f"{was}; recovery failed ({brief(exc)}); files left for a person"
            self.store.finish(fix_id, status, now, detail=detail)
            outcomes.append(Outcome(fix_id=fix_id, playbook_id=row["playbook_id"], status=status, detail=detail,
                                    backup_id=row.get("backup_id")))
        return outcomes

def _summary(plan: Plan) -> str:
    parts = [f"change {c.file} {c.target}: {c.old} -> {c.new}" for c in plan.changes]
    parts += [a.describe() for a in plan.effects]
    return "; ".join(parts) if parts else "change nothing"


