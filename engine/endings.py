"""Ending a fix: settling its validation window, undoing it, a person's rollback, a step that raised, recovery.

Every way a fix ends goes through :meth:`Endings._final` (the journal's last word, and the
suspension after ``max_attempts`` failures); every undo through :class:`~.undo.Undo`.
:class:`~.executor.Executor` is the one subclass: it starts fixes, this ends them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .actions import EffectRunner, Plan
from .backup import BackupStore, Manifest
from .config import Config
from .fix import Fence, FixRun, Outcome
from .playbook import Playbook
from .steps import Steps, drive
from .store import FAILURE, Store
from .undo import ManualRollback, Restored, RollbackIncomplete, Undo, brief, error_detail
from .validation import Judgement

log = logging.getLogger("suture.executor")

SUSPEND_WINDOW = 24 * 3600.0  # max_attempts counts failures within this


class Endings:
    config: Config
    store: Store
    backups: BackupStore
    effects: EffectRunner | None
    undo: Undo
    hooks: Mapping[str, Callable[..., None]]
    fences: dict[str, Fence]

    def lost(self, fix_id: str) -> str | None:
        """Why ``fix_id`` no longer holds its fleet lease (None: it holds it, or acts under none)."""
        fence = self.fences.get(fix_id)
        if fence is None:
            return None
        why = fence.lost()
        return None if why is None else f"fencing token {fence.token}: {why}"

    def _hook(self, name: str, *args: Any) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook(*args)

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
        lost = self.lost(run.fix_id)
        if lost is not None:  # whatever the window saw, this sidecar may no longer keep a change to a shared target
            verdict = Judgement(state="failed", reason=f"fleet lease lost during the validation window: {lost}")
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
        elif lost is not None:
            final = "failed"
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
        self.fences.pop(fix_id, None)
        row = self.store.fix(fix_id) or {}
        suspended = False
        if status in FAILURE and row.get("decision") == "apply":
            failures = self.store.failures_since(pb.id, now - SUSPEND_WINDOW)
            if failures >= pb.max_attempts:
                reason = f"{failures} failed attempt(s) in 24h (max_attempts {pb.max_attempts}); last: {fix_id}"
                suspended = self.store.suspend(pb.id, now, reason, fix_id=fix_id)
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
