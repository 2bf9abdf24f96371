"""The ``suture`` command.

Every command takes ``--config FILE`` (default ``./suture.yaml``), which also
locates the state_dir (history, backups, checkpoints). Exit codes: 0 ok,
1 the command's check failed (problems found, conflict refused), 2 bad usage
or unreadable config (except for ``check``, whose job is to report a config
that does not load: its problems at file:line, exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suture.engine.backup import BackupStore
from suture.engine.config import Config, load_config
from suture.engine.errors import DocumentError, Problem, SutureError
from suture.engine.executor import Executor
from suture.engine.loader import load_playbooks
from suture.engine.playbook import Playbook
from suture.engine.selftest import ExampleResult, regex_problems, run_examples
from suture.engine.store import Store

from .client import Client

DEFAULT_CONFIG = "suture.yaml"
DEFAULT_SQL = """SELECT id, playbook_id, status, decision, round(adjusted_confidence, 1) AS confidence,
       backup_id, errors_before, errors_after, started_at, finished_at
FROM fixes ORDER BY started_at DESC LIMIT 20"""


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _print_problems(problems: Sequence[Problem], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": not problems, "problems": [p.as_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p.render(), file=sys.stderr)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("\n", " ")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: Any = None) -> None:
    out = out or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [min(60, max([len(c)] + [len(r[i]) for r in cells])) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    print(line.rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join((v if len(v) <= w else v[: w - 1] + "…").ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    return value


# --- commands --------------------------------------------------------------------------


def _fewer_malloc_arenas() -> None:
    """glibc gives each thread its own malloc arena; two are plenty for a sidecar (a few MB less RSS)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX


def cmd_run(args: argparse.Namespace) -> int:
    _fewer_malloc_arenas()
    from .runtime import Sidecar
    from .transport import serve

    config = _config(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("suture").info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sidecar = Sidecar(config, stop=stop)
    server = serve(sidecar) if config.api.enabled else None
    try:
        return sidecar.run()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _pattern_engines(playbooks: Sequence[Playbook]) -> list[dict[str, str]]:
    """Which matching engine runs each log pattern (hyperscan, or `re` and why)."""
    from suture.engine.playbook import LogCondition, leaves

    from .matching import PatternSet

    rows = []
    for pb in playbooks:
        conds = [leaf for c in (pb.when, *pb.validate.expect) for leaf in leaves(c) if isinstance(leaf, LogCondition)]
        engines = PatternSet(conds).engines()
        for leaf in conds:
            rows.append({"playbook": pb.id, "file": leaf.at.file, "line": str(leaf.at.line), "path": leaf.at.path,
                         "pattern": leaf.pattern, "engine": engines.get(leaf.signal, "hyperscan")})
    return rows


def cmd_check(args: argparse.Namespace) -> int:
    config: Config | None = None
    problems: list[Problem] = []
    config_path = Path(args.config)
    if config_path.exists() or args.config != DEFAULT_CONFIG:
        try:
            config = load_config(config_path)
        except DocumentError as exc:
            problems.extend(exc.problems)
    paths = [Path(p) for p in args.paths] or ([config.playbooks] if config else [])
    if not paths and not problems:
        print("suture check: name playbook files or folders, or a --config that names them", file=sys.stderr)
        return 2
    # A config that did not load is the problem to show (a newcomer's first typo), not a usage error:
    # its problems are reported with whatever playbooks were named, and the exit is 1.
    result = load_playbooks(paths, config)
    problems.extend(result.problems)
    for pb in result.playbooks:
        problems.extend(regex_problems(pb))
    examples: list[ExampleResult] = []
    if args.run_examples:
        for pb in result.playbooks:
            examples.extend(run_examples(pb))
        problems.extend(r.problem for r in examples if r.problem is not None)
    problems.sort(key=lambda p: (p.file, p.line, p.column))
    engines = _pattern_engines(result.playbooks)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": [p.as_dict() for p in problems], "patterns": engines},
                         indent=2))
        return 1 if problems else 0
    _print_problems(problems, as_json=False)
    for row in engines:
        if args.verbose or row["engine"] != "hyperscan":
            print(f"{row['file']}:{row['line']}: pattern /{row['pattern']}/ runs on {row['engine']} (at {row['path']})")
    if args.run_examples:
        passed = sum(r.ok for r in examples)
        print(f"examples: {passed} of {len(examples)} passed", file=sys.stdout if passed == len(examples) else sys.stderr)
    if not paths:
        print(f"{args.config} did not load, {len(problems)} problem(s); its playbooks were not checked", file=sys.stderr)
        return 1
    checked = f"{len(result.playbooks)} playbook(s) ok"
    print(f"{checked}, {len(problems)} problem(s)" if problems else checked, file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


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
    config = _config(args)
    if args.export:
        return cmd_export(config, Path(args.export))
    client = Client(config)
    if client.running():  # the sidecar holds the file: ask it
        answer = client.request("POST", "/api/sql", {"sql": args.sql or DEFAULT_SQL, "max_rows": args.max_rows})
        columns, rows, truncated = tuple(answer["columns"]), [tuple(r) for r in answer["rows"]], answer["truncated"]
    else:
        store = _open_store(config)
        try:
            result, truncated = store.user_query(args.sql or DEFAULT_SQL, max_rows=args.max_rows,
                                                 interrupt_after=_interrupt_after(args.timeout))
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


def _interrupt_after(seconds: float) -> Any:
    import threading

    def arm(cursor: Any) -> None:
        timer = threading.Timer(seconds, cursor.interrupt)
        timer.daemon = True
        timer.start()

    return arm


def cmd_backups(args: argparse.Namespace) -> int:
    config = _config(args)
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
    config = _config(args)
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
    changes = row["changes"] if isinstance(row["changes"], list) else json.loads(row["changes"] or "[]")
    return "; ".join(f"{c['file']} {c['target']}: {c['old']} -> {c['new']}" for c in changes)


def cmd_proposals(args: argparse.Namespace) -> int:
    config = _config(args)
    client = Client(config)
    if client.running():
        rows = client.request("GET", "/api/proposals")["proposals"]
    else:
        store = _open_store(config)
        try:
            rows = store.query(
                """SELECT * FROM fixes p WHERE status = 'proposed'
                   AND NOT EXISTS (SELECT 1 FROM fixes a WHERE a.proposal_id = p.id) ORDER BY started_at DESC"""
            ).dicts()
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
    client = _running_client(_config(args), "approving")
    answer = client.request("POST", f"/api/proposals/{args.fix_id}/approve", {"by": args.by})
    print(f"approved {args.fix_id} as fix {answer['fix_id']}: {answer['status']}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    client = _running_client(_config(args), "explain")
    answer = client.request("GET", f"/api/playbooks/{args.playbook_id}/explain")
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    local, fleet = answer["outcomes"]["local"], answer["outcomes"]["fleet"]
    print(f"{answer['playbook_id']} (mode {answer['mode']}, model {answer['model']}, "
          f"prior weight {answer['prior_weight']:g})")
    print(f"  base confidence     {answer['base_confidence']:g}")
    print(f"  outcomes (local)    {local['successes']} succeeded, {local['failures']} failed")
    print(f"  outcomes (fleet)    {fleet['successes']} succeeded, {fleet['failures']} failed")
    print(f"  adjusted confidence {answer['adjusted_confidence']:g}")
    print(f"  threshold           {answer['threshold']:g}")
    print(f"  decision now        {answer['decision_now']} ({answer['reason']})")
    return 0


def cmd_suspend(args: argparse.Namespace) -> int:
    client = _running_client(_config(args), "suspend")
    client.request("POST", f"/api/playbooks/{args.playbook_id}/suspend", {"by": args.by})
    print(f"suspended {args.playbook_id}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    config = _config(args)
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


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import run_command

    return run_command(args)


def cmd_init(args: argparse.Namespace) -> int:
    from .init import run_init

    return run_init(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(workdir=Path(args.workdir) if args.workdir else None, keep=args.keep,
                    wait=False if args.exit else None)


# --- wiring ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                        help="the sidecar config (default: ./suture.yaml); also locates the state_dir")
    parser = argparse.ArgumentParser(
        prog="suture", parents=[common],
        description="A self-healing sidecar: playbooks turn log lines and probes into validated, reversible fixes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", parents=[common],
                       help="set suture up for your app: a suture.yaml (--config) and two starter playbooks in shadow mode",
                       description="Writes the --config file (default ./suture.yaml) and playbooks/ beside it, checks them "
                       "and prints the commands to run next. Asks at a terminal (the flags' values as defaults); "
                       "without one, or with --yes, it takes the flags only.")
    p.add_argument("--log", metavar="PATH|GLOB", help="the app's log file or glob (need not match yet)")
    p.add_argument("--container", metavar="NAME", help="or: follow this container's log (Docker Engine API)")
    p.add_argument("--app-config", metavar="FILE", help="the app's config file (YAML, JSON, TOML, INI or .env)")
    p.add_argument("--url", metavar="URL", help="a health URL to probe (http:// or https://)")
    p.add_argument("--app-dir", metavar="DIR", help="the app folder, target_root (default: the common parent of the "
                   "config file and the logs)")
    p.add_argument("--restart-command", metavar="CMD",
                   help="a command that restarts the app (a file log only), e.g. 'systemctl restart myapp'")
    p.add_argument("--port", type=int, metavar="N", help="the port of suture's API (default 8765, or a free one)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask: take the flags only")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", parents=[common], help="run the sidecar until Ctrl-C / SIGTERM")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", parents=[common], help="validate playbooks (and the config); exit 1 on problems")
    p.add_argument("paths", nargs="*", metavar="PATH", help="playbook files or folders (default: the config's)")
    p.add_argument("--json", action="store_true", help="machine-readable problems")
    p.add_argument("--run-examples", action="store_true", help="also run each playbook's examples: block")
    p.add_argument("-v", "--verbose", action="store_true", help="also say which engine matches each pattern")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("history", parents=[common], help="query the outcome history with SQL")
    p.add_argument("--sql", help="a SELECT over fixes, fix_steps (default: the last 20 fixes)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.add_argument("--max-rows", type=int, default=1000, help="cut the answer here (default 1000)")
    p.add_argument("--export", metavar="DIR", help="write DIR/<name>/fixes.parquet and fix_steps.parquet")
    p.add_argument("--timeout", type=float, default=10.0, help="stop the query after this many seconds")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("backups", parents=[common], help="list backups")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backups)

    p = sub.add_parser("rollback", parents=[common], help="restore the files of a backup")
    p.add_argument("backup_id")
    p.add_argument("--force", action="store_true", help="restore even over files changed since suture wrote them")
    p.add_argument("--by", default=os.environ.get("USER", "cli"), help="who rolls back (recorded)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("proposals", parents=[common], help="list proposals nobody approved yet")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_proposals)

    who = os.environ.get("USER", "cli")
    p = sub.add_parser("approve", parents=[common], help="apply a proposal (through the running sidecar)")
    p.add_argument("fix_id")
    p.add_argument("--by", default=who, help="who approves (recorded)")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("explain", parents=[common], help="the numbers behind a playbook's next decision")
    p.add_argument("playbook_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("suspend", parents=[common], help="stop a playbook from acting until resumed")
    p.add_argument("playbook_id")
    p.add_argument("--by", default=who)
    p.set_defaults(func=cmd_suspend)

    p = sub.add_parser("resume", parents=[common], help="let a suspended playbook act again")
    p.add_argument("playbook_id")
    p.add_argument("--by", default=os.environ.get("USER", "cli"), help="who resumes it (recorded)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("replay", parents=[common], help="offline: which playbooks would fire on recorded logs, and when")
    p.add_argument("logs", nargs="+", metavar="LOG", help="recorded log files (gzip is read transparently)")
    p.add_argument("--source", metavar="NAME", help="the source of every LOG (default: the file source whose glob matches)")
    p.add_argument("--year", type=int, help="the year of the first line of a format without one "
                   "(syslog, logcat, klog; default: from the file's mtime)")
    p.add_argument("--assume", choices=("hold", "fail"), default=None,
                   help="conditions a log cannot show (probe/metric/container): by default taken as holding beside a "
                        "log condition, and alternatives without one are listed, not replayed; hold: replay those too, "
                        "as holding; fail: take them as failing")
    p.add_argument("--json", action="store_true", help="one JSON object per firing, then a summary object")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", parents=[common], help="watch suture heal a demo app")
    p.add_argument("--workdir", help="where to set the demo up (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")
    p.add_argument("--exit", action="store_true",
                   help="end after the healing instead of keeping the dashboard up (the default off a terminal)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    logging.Formatter.converter = time.gmtime
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    if args.command == "demo":
        logging.getLogger("suture").setLevel(logging.WARNING)  # the demo narrates instead
    try:
        return int(args.func(args))
    except DocumentError as exc:
        for p in exc.problems:
            print(p.render(), file=sys.stderr)
        return 2
    except SutureError as exc:
        print(f"suture {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
