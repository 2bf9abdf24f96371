"""``suture report FIX_ID [--format markdown|json]``: a fix's incident report (docs/reports.md).

DuckDB lets one process open the history: while a sidecar runs this asks its API
(``GET /api/fixes/{id}/report``, :mod:`.report_api`), otherwise it opens the file read-only and
builds the same answer. It prints the Markdown, or with ``--format json`` the report's JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from suture.engine.backup import BackupStore

from .client import Client
from .commands import config_of
from .history_commands import _open_store
from .report_api import report_json


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``suture report FIX_ID [--format markdown|json]``."""
    p = sub.add_parser("report", parents=[common], help="a fix's incident report (Markdown, or --format json)",
                       description="What was seen, why it was decided, what changed, what the validation window "
                       "saw, each step's time and what to do next, from the fix's journal (docs/reports.md).")
    p.add_argument("fix_id")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    config = config_of(args)
    client = Client(config)
    if client.running():  # the sidecar holds the file: ask it
        answer = client.request("GET", f"/api/fixes/{quote(args.fix_id, safe='')}/report")
    else:
        store = _open_store(config)
        try:
            answer = report_json(store, args.fix_id, BackupStore(config.state_dir / "backups"))
        finally:
            store.close()
    if args.format == "json":
        print(json.dumps(answer, indent=2))
    else:
        print(answer["markdown"], end="")
    return 0
