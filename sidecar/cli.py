"""The ``suture`` command.

Every command takes ``--config FILE`` (default ``./suture.yaml``), which also
locates the state_dir (history, backups, checkpoints). Exit codes: 0 ok,
1 the command's check failed (problems found, conflict refused), 2 bad usage
or unreadable config (except for ``check``, whose job is to report a config
that does not load: its problems at file:line, exit 1).

This module is the parser and :func:`main`; the commands are in :mod:`.commands`
(run, check, init, replay, demo) and :mod:`.history_commands` (the history and
a person's controls).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from suture.engine.errors import DocumentError, SutureError

from .commands import DEFAULT_CONFIG, cmd_check, cmd_demo, cmd_init, cmd_replay, cmd_run
from .history_commands import (
    cmd_approve,
    cmd_backups,
    cmd_explain,
    cmd_history,
    cmd_proposals,
    cmd_resume,
    cmd_rollback,
    cmd_suspend,
)
from .report_command import add_parser as add_report_parser


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
    p.add_argument("--sql", help="a SELECT over fixes, fix_steps (default: the last 20 fixes); "
                   "with --fleet, over the group's fleet_* tables")
    p.add_argument("--fleet", action="store_true",
                   help="query the group's PostgreSQL (fleet: in the config) instead, in a read-only transaction")
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

    add_report_parser(sub, common)

    p = sub.add_parser("suspend", parents=[common], help="stop a playbook from acting until resumed")
    p.add_argument("playbook_id")
    p.add_argument("--by", default=who)
    p.set_defaults(func=cmd_suspend)

    p = sub.add_parser("resume", parents=[common], help="let a suspended playbook act again")
    p.add_argument("playbook_id")
    p.add_argument("--by", default=os.environ.get("USER", "cli"), help="who resumes it (recorded)")
    p.add_argument("--fleet", action="store_true",
                   help="lift the group's suspension (a failed canary) in its PostgreSQL, sidecar running or not")
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
