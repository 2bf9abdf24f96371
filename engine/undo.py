"""Undoing a fix: putting files back, running ``on_rollback``, and reading from the journal what to undo.

Three callers, one way of doing it:

- the executor, when validation fails or applying raised (it knows the plan);
- a fix whose step raised, and start-up recovery after a crash (only the journal is known:
  :meth:`Undo.from_journal`);
- a person's rollback of a backup (:meth:`Undo.manual`), which ends the fix as ``rolled_back``
  when it was still in its validation window, so learning never counts a success over files a
  person put back.

A file is put back only if it still holds what suture wrote (SAFETY 9); anything else is a
conflict for a person. ``on_rollback`` runs only when the fix touched something: wrote a file or
started an effect. Its actions are read from the journal (the plan records them), so a restart
runs what the fix was planned with, not what the playbook says now.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actions import EffectRunner
from .backup import BackupStore, FileRecord, read_nofollow, sha256_bytes
from .errors import ActionError, BackupError, Conflict, SutureError
from .playbook import Action, action_from_json
from .status import FixStatus
from .steps import EffectRequest, Steps, drive
from .store import Store

log = logging.getLogger("suture.executor")

TOUCHING_STEPS = frozenset({"applied", "effect", "effect_started"})  # a fix with one of these changed something


@dataclass(slots=True)
class Restored:
    """What a rollback did: files put back, files someone else changed, files whose restore raised."""

    restored: int = 0
    conflicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualRollback:
    """A person's rollback of a backup: the files restored and, if the fix had not ended yet, how it ended."""

    fix_id: str
    restored: tuple[str, ...]
    ended: tuple[str, str] | None = None  # (status, detail) when this rollback ended an unfinished fix


class RollbackIncomplete(SutureError):
    """A restore raised: the file still holds what suture wrote (the fix ends failed, saying which)."""


class Undo:
    """Restores and on_rollback, against the backup store and the journal."""

    def __init__(self, *, store: Store, backups: BackupStore, effects: EffectRunner | None,
                 hooks: Mapping[str, Callable[..., None]]) -> None:
        self.store = store
        self.backups = backups
        self.effects = effects
        self.hooks = hooks

    # -- files --

    def restore_one(self, record: FileRecord, post_sha: str | None) -> str:
        """``unchanged``, ``restored`` (it held ``post_sha``) or ``conflict`` (someone else changed it)."""
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

    def restore_all(self, fix_id: str, records: list[FileRecord], post: Mapping[str, str], now: float) -> Restored:
        """Put back each file that holds what suture wrote; say which were changed by others or failed."""
        done = Restored()
        for record in records:
            try:
                state = self.restore_one(record, post.get(record.path))
            except Exception as exc:  # the file still holds one whole image (writes are atomic)
                log.error("%s: restoring %s failed", fix_id, record.path, exc_info=exc)
                self.store.step(fix_id, "restore_failed", now, {"path": record.path, **error_detail("restoring", exc)})
                done.failed.append(f"{record.path} still holds what suture wrote (restore failed: {brief(exc)})")
                continue
            if state == "conflict":
                done.conflicts.append(record.path)
            elif state == "restored":
                done.restored += 1
        return done

    # -- on_rollback --

    def on_rollback(self, fix_id: str, playbook_id: str, actions: tuple[Action, ...], now: float) -> Steps[None]:
        """Carry out ``on_rollback`` after a restore; each result (or why it could not run) is journaled."""
        for action in actions:
            if self.effects is None:
                self.store.step(fix_id, "effect_failed", now, {"action": action.describe(),
                                                               "error": "no effect runner in this context"})
                continue
            try:
                reply = yield EffectRequest(fix_id, action, {"fix_id": fix_id, "playbook_id": playbook_id,
                                                             "rollback": True})
                self.store.step(fix_id, "effect", reply.at or now, {"action": action.describe(), "result": reply.result})
            except Exception as exc:
                if not isinstance(exc, ActionError):
                    log.error("%s: on_rollback %s failed", fix_id, action.describe(), exc_info=exc)
                self.store.step(fix_id, "effect_failed", now, {"action": action.describe(), "error": brief(exc)})

    def journaled_on_rollback(self, fix_id: str, planned: Mapping[str, Any] | None, now: float) -> tuple[Action, ...]:
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

    # -- from the journal alone --

    def planned(self, fix_id: str) -> dict[str, Any] | None:
        """The plan a fix recorded before touching anything (targets, hashes, effects, on_rollback)."""
        for step in self.store.steps(fix_id):
            if step["step"] == "planned":
                plan: dict[str, Any] = json.loads(step["detail"])
                return plan
        return None

    def post_images(self, fix_id: str) -> dict[str, str]:
        """What suture wrote to each file of a fix (from its journal)."""
        return {f["path"]: f["post"] for f in (self.planned(fix_id) or {}).get("files", [])}

    def from_journal(self, row: Mapping[str, Any], now: float, was: str, *, restarted: bool = False
                     ) -> tuple[str, str]:
        """:meth:`from_journal_steps` with on_rollback's effects run inline (start-up recovery)."""
        return drive(self.from_journal_steps(row, now, was, restarted=restarted), self.effects)

    def from_journal_steps(self, row: Mapping[str, Any], now: float, was: str, *, restarted: bool = False
                           ) -> Steps[tuple[str, str]]:
        """Put back every file that holds what the journal says suture wrote; run on_rollback. (status, detail)"""
        fix_id = row["id"]
        names = {s["step"] for s in self.store.steps(fix_id)}
        planned = self.planned(fix_id)
        for entry in (planned or {}).get("files", []):
            remove_stale_temp(Path(entry["real"]))
        touched = bool(names & TOUCHING_STEPS)
        done = Restored()
        if "backed_up" in names and row.get("backup_id"):
            try:
                manifest = self.backups.load(row["backup_id"])
            except BackupError as exc:
                return FixStatus.CONFLICT, f"{was}; backup unreadable ({exc}); files left for a person"
            post = {f["path"]: f["post"] for f in (planned or {}).get("files", [])}
            done = self.restore_all(fix_id, list(manifest.files), post, now)
        if touched:
            yield from self.on_rollback(fix_id, row["playbook_id"], self.journaled_on_rollback(fix_id, planned, now), now)
        if done.conflicts:
            return FixStatus.CONFLICT, f"{was}; changed by someone else: {', '.join(done.conflicts)}"
        if done.failed:
            return FixStatus.FAILED, f"{was}; rollback incomplete: {'; '.join(done.failed)}"
        if not touched and not done.restored:
            nothing = "interrupted before any file was changed" if restarted else "nothing was changed"
            return FixStatus.FAILED, f"{was}; {nothing}"
        return FixStatus.FAILED, f"{was}; rolled back{' on restart' if restarted else ''}"

    # -- a person's rollback --

    def manual(self, backup_id: str, now: float, *, force: bool, by: str) -> ManualRollback:
        """:meth:`manual_steps` with on_rollback's effects run inline."""
        return drive(self.manual_steps(backup_id, now, force=force, by=by), self.effects)

    def manual_steps(self, backup_id: str, now: float, *, force: bool, by: str) -> Steps[ManualRollback]:
        """Restore a backup by hand; refuse files changed by others unless ``force`` (Conflict).

        If the backup's fix has not ended (it is in its validation window), this rollback is its
        verdict: on_rollback runs and the fix is reported ended as ``rolled_back`` by ``by``.
        """
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
        if fix is None:
            return ManualRollback(fix_id=manifest.fix_id, restored=tuple(done))
        self.store.step(manifest.fix_id, "manual_rollback", now,
                        {"backup_id": backup_id, "restored": done, "force": force, "by": by})
        if fix["finished_at"] is not None:
            return ManualRollback(fix_id=manifest.fix_id, restored=tuple(done))
        planned = self.planned(manifest.fix_id)
        yield from self.on_rollback(manifest.fix_id, fix["playbook_id"],
                                    self.journaled_on_rollback(manifest.fix_id, planned, now), now)
        detail = (f"rolled back by {by} during its validation window ({len(done)} file(s) restored from "
                  f"{backup_id}, verified by sha256)")
        return ManualRollback(fix_id=manifest.fix_id, restored=tuple(done), ended=(FixStatus.ROLLED_BACK, detail))


def brief(exc: BaseException) -> str:
    """An error in one line: suture's own say what they mean; anything else is named by its type."""
    text = str(exc) if isinstance(exc, SutureError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


def error_detail(stage: str, exc: BaseException) -> dict[str, Any]:
    """What the journal keeps of an unexpected error: where it happened and what it said."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return {"stage": stage, "error": brief(exc), "type": type(exc).__name__, "where": where}


def remove_stale_temp(real: Path) -> None:
    """Remove temp files a killed write left beside ``real`` (named by atomic_write)."""
    for stale in real.parent.glob(f".{real.name}.suture-*.tmp"):
        try:
            stale.unlink()
        except OSError as exc:
            log.warning("cannot remove stale temp file %s: %s", stale, exc)
