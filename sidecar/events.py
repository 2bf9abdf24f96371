"""What the core tells people as it happens: one :class:`Event` type, and the log the live views read.

The core only *produces* events (a callable it is given); the sidecar fans them out to the
log, the dashboard's stream, the webhook and listeners; a replay keeps none of them (it reads
:class:`~sidecar.core.Decided` records instead).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suture.engine.executor import FixRun
from suture.engine.status import ALERT

log = logging.getLogger("suture")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ALERTS = frozenset({*ALERT, "suspended"})  # kinds a person is alerted to (webhook, warning level)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something a person would want to read about, as it happens."""

    kind: str  # detected, decided, backed_up, applied, validating, succeeded, rolled_back, ...
    at: float
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], None]


def clean(message: str) -> str:
    """Text from the watched system (group keys from log lines) may hold terminal escapes or NULs."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", message)


def level_of(kind: str) -> int:
    return logging.WARNING if kind in ALERTS or kind in ("error", "reload_failed") else logging.INFO


class EventLog:
    """The last events, numbered, for the dashboard's live stream (waiters use ``changed``)."""

    def __init__(self, keep: int = 500) -> None:
        self.recent: deque[tuple[int, Event]] = deque(maxlen=keep)
        self.seq = 0
        self.changed = threading.Condition()

    def append(self, event: Event) -> None:
        with self.changed:
            self.seq += 1
            self.recent.append((self.seq, event))
            self.changed.notify_all()


def validating_events(run: FixRun) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, message, data) of a fix that opened its validation window: its backup, each change, the window."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    if run.manifest is not None:
        out.append(("backed_up", f"{run.fix_id}: backup {run.manifest.id} ({len(run.manifest.files)} file(s), "
                    "sha256 recorded)", {"fix_id": run.fix_id, "backup_id": run.manifest.id}))
    for change in run.plan.changes:
        out.append(("applied", f"{run.fix_id}: {change.file} {change.target}: {change.old} -> {change.new}",
                    {"fix_id": run.fix_id, "file": change.file, "old": change.old, "new": change.new}))
    out += [("applied", f"{run.fix_id}: {action.describe()}", {"fix_id": run.fix_id}) for action in run.plan.effects]
    v = run.playbook.validate
    out.append(("validating", f"{run.fix_id}: watching for {v.window:g}s (settle {v.settle:g}s)",
                {"fix_id": run.fix_id, "window": v.window}))
    return out
