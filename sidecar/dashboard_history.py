"""The dashboard's history: the timeline of fixes, the trends, the playbooks' numbers, a rollback's preview.

Every read runs on the core (:meth:`Sidecar.call`, with a short timeout: a busy core answers 503
and the page tries again), through named queries of the history (:class:`~suture.engine.store.Store`).

    GET /api/dashboard/fixes              the timeline: decision, confidence, edit, validation per fix
    GET /api/dashboard/trends             fixed queries of the history (per day, per playbook)
    GET /api/dashboard/playbooks          per playbook: suspended, adjusted confidence, last fix
    GET /api/dashboard/backups/{id}       what rolling a backup back would change
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suture.engine.backup import BACKUP_ID, read_nofollow
from suture.engine.errors import BackupError

from . import operations as ops
from .dashboard_state import CORE_TIMEOUT
from .routes import iso

if TYPE_CHECKING:
    from .public import PublicSidecar


class HistoryView:
    """The history routes of the dashboard."""

    def __init__(self, sidecar: PublicSidecar) -> None:
        self.sidecar = sidecar

    def _core(self, fn: Callable[[], Any]) -> Any:
        return self.sidecar.call(fn, timeout=CORE_TIMEOUT)

    def dashboard_fixes(self, limit: int = 100, playbook: str | None = None, outcome: str | None = None,
                        days: int = 30) -> dict[str, Any]:
        since = self.sidecar.clock() - days * 86400

        def query() -> dict[str, Any]:
            store = ops.store_of(self.sidecar)
            return {"fixes": store.timeline(since=since, playbook=playbook, outcome=outcome, limit=limit),
                    "playbooks": store.playbook_ids(), "outcomes": store.statuses()}

        found: dict[str, Any] = self._core(query)
        for row in found["fixes"]:
            row["started_at"], row["finished_at"] = _iso(row["started_at"]), _iso(row["finished_at"])
        return found

    def dashboard_trends(self, days: int = 30) -> dict[str, Any]:
        since = self.sidecar.clock() - days * 86400

        def query() -> dict[str, Any]:
            store = ops.store_of(self.sidecar)
            return {"days": days, "per_day": store.fixes_per_day(since=since),
                    "per_playbook": store.success_by_playbook(since=since), "recovery": store.recoveries(since=since),
                    "confidence": store.confidence_history(since=since)}

        found: dict[str, Any] = self._core(query)
        for row in itertools.chain(found["recovery"], found["confidence"]):
            row["at"] = _iso(row["at"])
        return found

    def dashboard_playbooks(self) -> dict[str, Any]:
        def query() -> list[dict[str, Any]]:
            sc = self.sidecar
            last = ops.store_of(sc).last_fix_by_playbook()
            out = []
            for pb in sorted(sc.playbooks.values(), key=lambda p: p.id):
                numbers = ops.explain(sc, pb.id)
                status, at = last.get(pb.id, (None, None))
                out.append({"id": pb.id, "file": pb.file, "version": pb.digest[:12], "mode": pb.mode,
                            "severity": pb.severity, "description": pb.description,
                            "base_confidence": pb.confidence, "adjusted_confidence": numbers["adjusted_confidence"],
                            "threshold": numbers["threshold"], "decision_now": numbers["decision_now"],
                            "suspended": numbers["suspended"], "last_status": status, "last_fix_at": _iso(at)})
            return out

        return {"playbooks": self._core(query)}

    def dashboard_backup(self, backup_id: str) -> dict[str, Any]:
        if not BACKUP_ID.match(backup_id):
            raise ops.OperationError(HTTPStatus.NOT_FOUND, f"no backup {backup_id}")

        def preview() -> dict[str, Any]:
            sc = self.sidecar
            store = ops.store_of(sc)
            assert sc.executor is not None
            try:
                manifest = sc.executor.backups.load(backup_id)
            except BackupError as exc:
                raise ops.OperationError(HTTPStatus.NOT_FOUND, str(exc)) from exc
            post = sc.executor.post_images(manifest.fix_id)
            files = []
            for record in manifest.files:  # the same comparison `rollback` makes before it restores
                try:
                    now: str | None = hashlib.sha256(read_nofollow(Path(record.real))).hexdigest()
                except OSError:
                    now = None
                state = "unchanged" if now == record.sha256 else "restore" if now == post.get(record.path) \
                    else "missing" if now is None else "changed"
                files.append({"path": record.path, "state": state, "backup_sha256": record.sha256,
                              "current_sha256": now})
            fix = store.fix(manifest.fix_id) or {}
            return {"backup_id": backup_id, "fix_id": manifest.fix_id, "playbook_id": manifest.playbook_id,
                    "created_at": _iso(manifest.created_at), "files": files,
                    "changes": json.loads(fix["changes"]) if fix.get("changes") else [],
                    "fix_status": fix.get("status"),
                    "needs_force": any(f["state"] in ("changed", "missing") for f in files)}

        return dict(self._core(preview))


def _iso(value: float | datetime | None) -> str | None:
    return iso(value, milliseconds=True)
