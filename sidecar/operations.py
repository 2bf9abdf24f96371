"""What a person can ask of a running sidecar: approve, roll back, suspend, resume, explain, query.

Every operation that touches the engine runs on the core (the API wraps each
in :meth:`Sidecar.call`), so it never races a fix in progress. Errors carry
the HTTP status they map to.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from suture.engine.backup import BACKUP_ID
from suture.engine.decide import decide
from suture.engine.errors import BackupError, Conflict, SutureError
from suture.engine.executor import Outcome
from suture.engine.store import QueryResult, Store, ts

if TYPE_CHECKING:
    from .public import PublicSidecar

MAX_ROWS = 10_000
QUERY_TIMEOUT = 5.0


class OperationError(SutureError):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def store_of(sc: PublicSidecar) -> Store:
    if sc.store is None or sc.executor is None:
        raise OperationError(HTTPStatus.SERVICE_UNAVAILABLE, "the sidecar is not running")
    return sc.store


def fix_detail(sc: PublicSidecar, fix_id: str) -> dict[str, Any]:
    store = store_of(sc)
    row = store.fix(fix_id)
    if row is None:
        raise OperationError(HTTPStatus.NOT_FOUND, f"no fix {fix_id}")
    row["changes"] = json.loads(row["changes"]) if row.get("changes") else []
    row["steps"] = [{"step": s["step"], "at": s["happened_at"], "detail": json.loads(s["detail"] or "{}")}
                    for s in store.steps(fix_id)]
    return row


def list_fixes(sc: PublicSidecar, *, limit: int = 50, status: str | None = None, playbook: str | None = None) -> list[Any]:
    return store_of(sc).recent_fixes(limit=max(1, min(limit, 1000)), status=status, playbook=playbook)


def pending_proposals(sc: PublicSidecar) -> list[Any]:
    """Proposals nobody approved yet."""
    return store_of(sc).pending_proposals(limit=200)


def approve(sc: PublicSidecar, fix_id: str, by: str) -> dict[str, Any]:
    """Apply a proposal through the same backup / validate / rollback path; recorded with who approved."""
    store = store_of(sc)
    now = sc.clock()
    row = store.fix(fix_id)
    if row is None:
        raise OperationError(HTTPStatus.NOT_FOUND, f"no fix {fix_id}")
    if row["status"] != "proposed":
        raise OperationError(HTTPStatus.CONFLICT, f"{fix_id} is {row['status']}, not a proposal")
    if store.was_approved(fix_id):
        raise OperationError(HTTPStatus.CONFLICT, f"{fix_id} was approved already")
    pb = sc.playbooks.get(row["playbook_id"])
    if pb is None:
        raise OperationError(HTTPStatus.CONFLICT, f"playbook {row['playbook_id']} is no longer loaded")
    gate = store.gate(pb.id, row["group_key"], now)
    if gate.suspended:
        raise OperationError(HTTPStatus.CONFLICT, f"{pb.id} is suspended ({gate.suspended_reason}); resume it first")
    if gate.in_flight or sc.busy_with(pb) is not None:
        raise OperationError(HTTPStatus.CONFLICT, "a fix touching the same files is in progress; try again after it")
    labels: dict[str, str] = next((s.get("labels", {}) for s in (json.loads(x["detail"] or "{}") for x in store.steps(fix_id))
                   if "labels" in s), {})
    decision = decide(pb, key=row["group_key"], labels=labels, outcomes=store.outcomes(pb.id), gate=gate,
                      threshold=sc.config.threshold, learning=sc.config.learning,
                      fixes_per_hour=sc.config.fixes_per_hour, now=now)
    decision = replace(decision, verdict="apply", reason=f"approved by {by} (proposal {fix_id})")
    sc.emit("approved", f"{pb.id}: proposal {fix_id} approved by {by}", playbook_id=pb.id, proposal_id=fix_id, by=by)
    result = sc.start_fix(pb, decision, now, proposal_id=fix_id, approved_by=by, errors_before=row["errors_before"])
    if isinstance(result, str):  # the fix's id while its effects run
        started, status = result, "applying"
    else:
        started, status = result.fix_id, result.status if isinstance(result, Outcome) else "validating"
    return {"proposal_id": fix_id, "fix_id": started, "status": status, "approved_by": by}


def suspend(sc: PublicSidecar, playbook_id: str, by: str, reason: str = "") -> dict[str, Any]:
    store = store_of(sc)
    if playbook_id not in sc.playbooks:
        raise OperationError(HTTPStatus.NOT_FOUND, f"no playbook {playbook_id}")
    done = store.suspend(playbook_id, sc.clock(), reason or f"suspended by {by}")
    if done:
        sc.emit("suspended", f"{playbook_id}: suspended by {by}", playbook_id=playbook_id)
    return {"playbook_id": playbook_id, "suspended": True, "changed": done}


def resume(sc: PublicSidecar, playbook_id: str, by: str) -> dict[str, Any]:
    done = store_of(sc).resume(playbook_id, sc.clock(), by=by)
    if done:
        sc.emit("resumed", f"{playbook_id}: resumed by {by}", playbook_id=playbook_id)
    return {"playbook_id": playbook_id, "suspended": False, "changed": done}


def rollback(sc: PublicSidecar, backup_id: str, *, force: bool = False, by: str = "api") -> dict[str, Any]:
    """Restore a backup; a fix still in its validation window ends ``rolled_back`` by ``by`` (never a success later)."""
    if not BACKUP_ID.match(backup_id):
        raise OperationError(HTTPStatus.NOT_FOUND, f"no backup {backup_id} (ids look like b-YYYYMMDDTHHMMSSZ-hex)")
    store_of(sc)
    try:
        restored, outcome = sc.rollback_by_person(backup_id, force=force, by=by)
    except Conflict as exc:
        raise OperationError(HTTPStatus.CONFLICT, str(exc)) from exc
    except BackupError as exc:
        raise OperationError(HTTPStatus.NOT_FOUND, str(exc)) from exc
    sc.emit("manual_rollback", f"backup {backup_id} restored by {by}: {', '.join(restored) or 'nothing to restore'}",
            backup_id=backup_id, by=by)
    return {"backup_id": backup_id, "restored": restored, "force": force, "by": by,
            "fix_status": outcome.status if outcome else None}


def explain(sc: PublicSidecar, playbook_id: str, key: str = "") -> dict[str, Any]:
    """The numbers behind the decision the playbook would take now."""
    store = store_of(sc)
    pb = sc.playbooks.get(playbook_id)
    if pb is None:
        raise OperationError(HTTPStatus.NOT_FOUND, f"no playbook {playbook_id}")
    now = sc.clock()
    outcomes = sc.outcomes(pb.id)
    gate = store.gate(pb.id, key, now)
    decision = decide(pb, key=key, labels={}, outcomes=outcomes, gate=gate, threshold=sc.config.threshold,
                      learning=sc.config.learning, fixes_per_hour=sc.config.fixes_per_hour, now=now)
    learning = pb.learning or sc.config.learning
    return {
        "playbook_id": pb.id,
        "mode": pb.mode,
        "model": learning.model,
        "prior_weight": learning.prior_weight,
        "base_confidence": pb.confidence,
        "outcomes": {"local": {"successes": outcomes.successes, "failures": outcomes.failures},
                     "fleet": {"successes": outcomes.fleet_successes, "failures": outcomes.fleet_failures}},
        "adjusted_confidence": round(decision.adjusted_confidence, 2),
        "threshold": sc.config.threshold,
        "decision_now": decision.verdict,
        "reason": decision.reason,
        "suspended": gate.suspended,
        "last_fix_at": ts(gate.last_started_at),
        "signals": sc.seen(pb),
    }


def explain_fleet(sc: PublicSidecar, playbook_id: str) -> dict[str, Any] | None:
    """What the group would say now (None without fleet:); asks PostgreSQL, so call it off the core thread."""
    pb = sc.playbooks.get(playbook_id)
    if pb is None or sc.group is None:
        return None
    return sc.group.gate.explain(sc.group.background, pb)


def user_sql(sc: PublicSidecar, sql: str, *, max_rows: int = MAX_ROWS, timeout: float = QUERY_TIMEOUT) -> dict[str, Any]:
    """A read-only query of the history (runs on its own cursor, off the core, with a time limit)."""
    result, truncated = read_only_query(store_of(sc), sql, max_rows=max(1, min(max_rows, MAX_ROWS)), timeout=timeout)
    return {"columns": list(result.columns), "rows": [list(r) for r in result.rows], "truncated": truncated,
            "row_count": len(result.rows)}


def read_only_query(store: Store, sql: str, *, max_rows: int, timeout: float) -> tuple[QueryResult, bool]:
    """A person's query (:meth:`Store.user_query`: one read, rolled back), stopped after ``timeout`` seconds.

    The timer is ours, not the engine's (the engine never waits): it interrupts the query's cursor.
    """
    timers: list[threading.Timer] = []

    def arm(cursor: Any) -> None:
        timer = threading.Timer(timeout, cursor.interrupt)
        timer.daemon = True
        timer.start()
        timers.append(timer)

    try:
        return store.user_query(sql, max_rows=max_rows, interrupt_after=arm)
    finally:
        for timer in timers:
            timer.cancel()


def parquet(sc: PublicSidecar, table: str) -> bytes:
    """One table of the history as Parquet bytes (for `suture history --export` while running)."""
    import tempfile
    from pathlib import Path

    from suture.engine.fleet import TABLES, export_history

    name = table.removesuffix(".parquet")
    if not table.endswith(".parquet") or name not in TABLES:
        raise OperationError(HTTPStatus.NOT_FOUND, f"no table {table} (tables: {', '.join(t + '.parquet' for t in TABLES)})")
    with tempfile.TemporaryDirectory(prefix="suture-export-") as tmp:
        export_history(store_of(sc), Path(tmp), "export")
        return (Path(tmp) / "export" / table).read_bytes()
