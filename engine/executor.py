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

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .actions import EffectRunner, FilePlan, Plan, plan_fix
from .backup import BackupStore, atomic_write, read_nofollow, sha256_bytes
from .config import Config
from .decide import Decision
from .endings import Endings
from .errors import ActionError, AtBound, BackupError, PathRefused
from .fix import Fence, FixRun, Outcome, new_id
from .paths import resolve_target
from .playbook import Playbook, action_as_json
from .status import DECLINED
from .steps import EffectRequest, Steps, drive
from .store import Store
from .undo import Undo, brief, error_detail
from .validation import Judge

log = logging.getLogger("suture.executor")

IdFactory = Callable[[str, float], str]

__all__ = ["Executor", "FixRun", "IdFactory", "Outcome", "new_id"]

class Executor(Endings):
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
        self.fences: dict[str, Fence] = {}  # fix id -> the fleet lease it acts under, until it ends

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
        fix_id: str | None = None,
        fleet: dict[str, Any] | None = None,
        seen: list[dict[str, Any]] | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> str:
        """Insert the fix row and its first steps; return the fix id (``fix_id`` when given: the fleet
        admitted the fix under it). ``fleet`` is what the group said, kept in the ``decided`` step; ``seen``
        the numbers behind its trend conditions (series, fitted slope, baseline) and ``evidence`` what its
        conditions looked at (lines with context, probe, metric and alert values), both kept in ``matched``."""
        fix_id = fix_id or self.ids("f", now)
        types = sorted({a.keyword for a in pb.fix})
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
        self.store.step(fix_id, "matched", now, {"facts": list(facts), "labels": dict(decision.labels),
                                                 **({"seen": seen} if seen else {}),
                                                 **({"evidence": evidence} if evidence else {})})
        self.store.step(
            fix_id,
            "decided",
            now,
            {"verdict": decision.verdict, "reason": decision.reason, "adjusted": decision.adjusted_confidence,
             "threshold": decision.threshold, "cooldown_s": pb.cooldown, **({"fleet": fleet} if fleet else {})},
        )
        return fix_id

    def start(self, pb: Playbook, decision: Decision, **record: Any) -> FixRun | Outcome:
        """:meth:`begin` (same arguments), with its effects run inline (tests, tools)."""
        return drive(self.begin(pb, decision, **record), self.effects)

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
        fix_id: str | None = None,
        fleet: dict[str, Any] | None = None,
        fence: Fence | None = None,
        seen: list[dict[str, Any]] | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> Steps[FixRun | Outcome]:
        """Record the decision; for ``apply``, back up, apply and open the validation window.

        The fix's effects are yielded (:mod:`.steps`); everything else happens here, journaled.
        With a ``fence`` (a fleet lease), every step carries its token and every step that changes
        something first checks it is still held (:meth:`_guard`).
        """
        fix_id = fix_id or self.ids("f", now)
        if fence is not None:
            self.fences[fix_id] = fence
            self.store.fence(fix_id, fence.token)
        fix_id = self.record(
            pb, decision, now=now, facts=facts, errors_before=errors_before,
            proposal_id=proposal_id, approved_by=approved_by, fix_id=fix_id, fleet=fleet, seen=seen,
            evidence=evidence,
        )
        try:
            if decision.verdict != "apply":
                return self._record_only(fix_id, pb, decision, now)
            return (yield from self._apply(fix_id, pb, decision, now=now, errors_before=errors_before))
        except Exception as exc:  # a bug, or an input nobody foresaw: it ends this fix, never the sidecar
            return (yield from self.crashed_steps(fix_id, pb, "applying the fix", exc, now))

    def _record_only(self, fix_id: str, pb: Playbook, decision: Decision, now: float) -> Outcome:
        """propose / shadow / skip: say what the fix would change, touch nothing."""
        status = DECLINED[decision.verdict]
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
        try:
            self._guard(fix_id, "the backup")
        except ActionError as exc:
            return self._final(fix_id, pb, "failed", now, f"not applied: {exc}")
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
                self._guard(fix_id, f"writing {fp.path}")
                self._write(fp)
                written.append(fp)
                self.store.step(fix_id, "applied", now, {"path": fp.path, "post": fp.post_sha})
                self._hook("after_apply_file", fix_id, fp.path)
            self.store.update(fix_id, status="applied")
            context = {"fix_id": fix_id, "playbook_id": pb.id, "labels": dict(decision.labels)}
            for action in plan.effects:
                if self.effects is None:
                    raise ActionError(f"cannot {action.describe()}: no effect runner in this context")
                self._guard(fix_id, action.describe())
                self.store.step(fix_id, "effect_started", now, {"action": action.describe()})
                self._hook("before_effect", fix_id, action)
                attempted += 1
                reply = yield EffectRequest(fix_id, action, context)
                now = reply.at or now  # the window opens when the effects are done
                self.store.step(fix_id, "effect", now, {"action": action.describe(), "result": reply.result})
                self._guard(fix_id, "going on after " + action.describe())
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

    def _guard(self, fix_id: str, before: str) -> None:
        """Raise ActionError when the fix's fleet lease is no longer its own (a stale token acts on nothing)."""
        why = self.lost(fix_id)
        if why is not None:
            raise ActionError(f"fleet lease lost before {before}: {why}")

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


def _summary(plan: Plan) -> str:
    parts = [f"change {c.file} {c.target}: {c.old} -> {c.new}" for c in plan.changes]
    parts += [a.describe() for a in plan.effects]
    return "; ".join(parts) if parts else "change nothing"


