"""The commands about the history and a person's controls: ``history``, ``backups``, ``rollback``,
``proposals``, ``approve``, ``explain``, ``suspend``, ``resume``.

DuckDB lets one process open the history file: while a sidecar runs (its API answers), these
ask it through :class:`~.client.Client`; otherwise ``history``, ``backups``, ``proposals``,
``rollback`` and ``resume`` open the file themselves. ``approve``, ``explain`` and ``suspend``
need the running sidecar (it owns the validation window). ``history --fleet`` and ``resume
--fleet`` go to the group's PostgreSQL (``fleet:`` in the config) directly, sidecar or not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suture.engine.backup import BackupStore
from suture.engine.config import Config
from suture.engine.errors import SutureError
from suture.engine.executor import Executor
from suture.engine.store import RECENT_FIXES_SQL, Store

from .client import Client
from .commands import config_of
from .operations import read_only_query
from .seen import render_seen
from .tables import print_table

if TYPE_CHECKING:
    from .fleet_pg import FleetConnection


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return value


def _open_store(config: Config) -> Store:
    if not config.db_path.exists():
        raise SutureError(f"no history yet at {config.db_path} (has `suture run` started with this config?)")
    return Store.open(config.db_path, read_only=True)


def cmd_export(config: Config, folder: Path) -> int:
    from suture.engine.fleet import TABLES, export_history

    client = Client(config)
    if client.running():
        target = folder / config.name
        target.mkdir(parents=True, exist_ok=True)
        for table in TABLES:
            (target / f"{table}.parquet").write_bytes(client.raw("GET", f"/api/history/{table}.parquet"))
        written = [target / f"{t}.parquet" for t in TABLES]
    else:
        store = _open_store(config)
        try:
            written = export_history(store, folder, config.name)
        finally:
            store.close()
    for path in written:
        print(path)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    config = config_of(args)
    if args.fleet:
        return cmd_history_fleet(config, args)
    if args.export:
        return cmd_export(config, Path(args.export))
    client = Client(config)
    if client.running():  # the sidecar holds the file: ask it
        answer = client.request("POST", "/api/sql", {"sql": args.sql or RECENT_FIXES_SQL, "max_rows": args.max_rows})
        columns, rows, truncated = tuple(answer["columns"]), [tuple(r) for r in answer["rows"]], answer["truncated"]
    else:
        store = _open_store(config)
        try:
            result, truncated = read_only_query(store, args.sql or RECENT_FIXES_SQL, max_rows=args.max_rows,
                                                timeout=args.timeout)
        finally:
            store.close()
        columns, rows = result.columns, [tuple(_jsonable(v) for v in r) for r in result.rows]
    if args.json:
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], indent=2, default=str))
    else:
        print_table(columns, rows)
    if truncated:
        print(f"(cut at {args.max_rows} rows; use --max-rows)", file=sys.stderr)
    return 0


def _fleet_of(config: Config, what: str, **options: Any) -> tuple[FleetConnection, str]:
    """A connection to the group's PostgreSQL (nothing is sent yet) and the group's name."""
    if config.fleet_pg is None:
        raise SutureError(f"{what} works on the group's PostgreSQL, and {config.file} has no fleet: section "
                          "(see docs/fleet.md)")
    from .fleet_pg import FleetConnection

    return FleetConnection.from_config(config.fleet_pg, name=f"{config.name} cli", **options), config.fleet_pg.group


def cmd_history_fleet(config: Config, args: argparse.Namespace) -> int:
    """``history --fleet``: the group's PostgreSQL, read-only (sidecar/fleet_sql.py says how)."""
    from .fleet_sql import RECENT_FLEET_FIXES, as_json_value, display, fleet_query

    if args.export:
        raise SutureError("--export writes this sidecar's own history; it does not go with --fleet")
    if args.max_rows < 1 or not 0 < args.timeout <= 3600:
        raise SutureError("--max-rows must be at least 1 and --timeout within (0, 3600] seconds")
    fleet, group = _fleet_of(config, "history --fleet", statement_timeout=args.timeout)
    try:
        if args.sql:
            answer = fleet_query(fleet, args.sql, max_rows=args.max_rows)
        else:  # the group's last 20 fixes
            answer = fleet_query(fleet, RECENT_FLEET_FIXES, [group], max_rows=args.max_rows)
    finally:
        fleet.close()
    if args.json:
        print(json.dumps([{c: as_json_value(v) for c, v in zip(answer.columns, r, strict=True)} for r in answer.rows],
                         indent=2))
    else:
        print_table(answer.columns, [tuple(display(v) for v in r) for r in answer.rows])
    if answer.truncated == "rows":
        print(f"(cut at {args.max_rows} rows; use --max-rows)", file=sys.stderr)
    elif answer.truncated:
        print(f"(cut after {len(answer.rows)} rows: the answer passed 32 MiB)", file=sys.stderr)
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    config = config_of(args)
    store = BackupStore(config.state_dir / "backups")
    manifests = list(store.all())
    if args.json:
        print(json.dumps([m.as_json() for m in manifests], indent=2))
        return 0
    rows = [
        (m.id, datetime.fromtimestamp(m.created_at, UTC).replace(tzinfo=None), m.playbook_id, m.fix_id,
         ", ".join(f.path for f in m.files), f"{m.confidence:.1f}")
        for m in manifests
    ]
    print_table(("backup_id", "created_at", "playbook", "fix", "files", "confidence"), rows)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    config = config_of(args)
    client = Client(config)
    ended = None
    if client.running():  # the sidecar owns the history and may be validating: let it restore
        force = "?force=true" if args.force else ""
        answer = client.request("POST", f"/api/monitoring/rollback/{args.backup_id}{force}", {"by": args.by})
        restored, ended = answer["restored"], answer.get("fix_status")
    else:
        store = Store.open(config.db_path)
        try:
            executor = Executor(config=config, store=store, backups=BackupStore(config.state_dir / "backups"))
            result, outcome = executor.rollback_backup(args.backup_id, time.time(), force=args.force, by=args.by)
            restored, ended = list(result.restored), outcome.status if outcome else None
        finally:
            store.close()
    if ended:
        print(f"the fix of {args.backup_id} was still being validated: it ends {ended} (by {args.by})")
    if restored:
        print(f"restored {', '.join(restored)} from {args.backup_id} (verified by sha256)")
    else:
        print(f"nothing to restore: every file of {args.backup_id} already holds its backed-up bytes")
    return 0


def _running_client(config: Config, what: str) -> Client:
    client = Client(config)
    if not client.running():
        raise SutureError(f"{what} needs the running sidecar (it owns the history and the validation window); "
                          f"none answers at {config.api.listen}")
    return client


def _changes(row: dict[str, Any]) -> str:
    return "; ".join(f"{c['file']} {c['target']}: {c['old']} -> {c['new']}" for c in row["changes"])


def cmd_proposals(args: argparse.Namespace) -> int:
    config = config_of(args)
    client = Client(config)
    if client.running():
        rows = client.request("GET", "/api/proposals")["proposals"]
    else:
        store = _open_store(config)
        try:
            rows = store.pending_proposals()
        finally:
            store.close()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print_table(("fix_id", "started_at", "playbook", "confidence", "would change"),
                [(r["id"], r["started_at"], r["playbook_id"], f"{r['adjusted_confidence']:.1f}", _changes(r))
                 for r in rows])
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    client = _running_client(config_of(args), "approving")
    answer = client.request("POST", f"/api/proposals/{args.fix_id}/approve", {"by": args.by})
    print(f"approved {args.fix_id} as fix {answer['fix_id']}: {answer['status']}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    client = _running_client(config_of(args), "explain")
    answer = client.request("GET", f"/api/playbooks/{args.playbook_id}/explain")
    print(json.dumps(answer, indent=2) if args.json else render_explain(answer))
    return 0


def render_explain(answer: dict[str, Any]) -> str:
    """``suture explain`` as text: the numbers behind the decision, and the group's when in a fleet."""
    local, fleet = answer["outcomes"]["local"], answer["outcomes"]["fleet"]
    lines = [f"{answer['playbook_id']} (mode {answer['mode']}, model {answer['model']}, "
             f"prior weight {answer['prior_weight']:g})",
             f"  base confidence     {answer['base_confidence']:g}",
             f"  outcomes (local)    {local['successes']} succeeded, {local['failures']} failed",
             f"  outcomes (fleet)    {fleet['successes']} succeeded, {fleet['failures']} failed",
             f"  adjusted confidence {answer['adjusted_confidence']:g}",
             f"  threshold           {answer['threshold']:g}",
             f"  decision now        {answer['decision_now']} ({answer['reason']})"]
    if answer.get("signals"):
        lines += ["  signals (the numbers behind trend conditions)", *render_seen(answer["signals"], "    ")]
    group = answer.get("fleet")
    if group:
        lines.append(f"  fleet group         {group['group']} (scope {group['scope']}, canary {group['canary']}, "
                     f"lease {group['lease_seconds']:g}s)")
        if not group["reachable"]:
            lines.append(f"  fleet               unreachable: {group['error']}")
        else:
            lines.append(f"  in flight (group)   {group['in_flight']} of max_concurrent {group['max_concurrent']}")
            lines.append(f"  started last hour   {group['started_last_hour']} of fixes_per_hour "
                         f"{group['fixes_per_hour']}")
            if group["suspended"]:
                lines.append(f"  suspended (group)   {group['suspended']}")
            lines += [f"  canary              {c['fix_id']} on {c['sidecar']}: {c['state']}" for c in group["canaries"]]
        would = group["would"]
        lines.append(f"  the group would     {would['action']}" + (f" ({would['reason']})" if would.get("reason") else ""))
    return "\n".join(lines)


def cmd_suspend(args: argparse.Namespace) -> int:
    client = _running_client(config_of(args), "suspend")
    client.request("POST", f"/api/playbooks/{args.playbook_id}/suspend", {"by": args.by})
    print(f"suspended {args.playbook_id}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    config = config_of(args)
    if args.fleet:
        return cmd_resume_fleet(config, args.playbook_id, by=args.by)
    client = Client(config)
    if client.running():
        changed = client.request("POST", f"/api/playbooks/{args.playbook_id}/resume", {"by": args.by})["changed"]
    else:
        store = Store.open(config.db_path)
        try:
            changed = store.resume(args.playbook_id, time.time(), by=args.by)
        finally:
            store.close()
    if not changed:
        print(f"{args.playbook_id} is not suspended", file=sys.stderr)
        return 1
    print(f"resumed {args.playbook_id}")
    return 0


def cmd_resume_fleet(config: Config, playbook_id: str, *, by: str) -> int:
    """``resume --fleet``: lift the group's suspension in its PostgreSQL (no sidecar needed) and say what it was."""
    from .fleet_suspensions import Suspensions

    fleet, group = _fleet_of(config, "resume --fleet")
    try:
        suspensions = Suspensions(fleet)
        active = suspensions.active(group, playbook_id)
        lifted = suspensions.resume(group, playbook_id, by=by)
    finally:
        fleet.close()
    if not lifted:
        print(f"{playbook_id} is not suspended in group {group}", file=sys.stderr)
        return 1
    what = ""
    if active is not None:
        since = datetime.fromtimestamp(active.suspended_at, UTC).strftime(" %Y-%m-%d %H:%M:%SZ") \
            if active.suspended_at is not None else ""
        cause = f", canary fix {active.cause_fix_id}" if active.cause_fix_id else ""
        what = f": suspended{since} by {active.suspended_by or '?'} ({active.reason}{cause})"
    print(f"resumed {playbook_id} for group {group} (by {by}){what}")
    return 0
