"""A fix's values: its id, the run in its validation window, its outcome."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from .actions import Plan
from .backup import Manifest
from .decide import Decision
from .playbook import Playbook
from .validation import Judge


def new_id(prefix: str, now: float) -> str:
    """``f-20261126T013000Z-3fa2c1``: sortable by time, unique by its random tail."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{stamp}-{secrets.token_hex(3)}"


class Fence(Protocol):
    """The fleet lease a fix acts under (``scope: fleet`` or a capped playbook): checked before every step.

    ``token`` goes into every journal step; ``lost()`` answers None while this fix still holds the
    newest, unexpired lease on its target, else why not (a newer token, expired, the fleet unreachable:
    each ends the fix as failed, rolled back). The sidecar's implementation asks PostgreSQL.
    """

    @property
    def token(self) -> int: ...

    def lost(self) -> str | None: ...


@dataclass(slots=True)
class FixRun:
    """A fix that has been applied and is being validated."""

    fix_id: str
    playbook: Playbook
    decision: Decision
    plan: Plan
    manifest: Manifest | None
    judge: Judge
    started_at: float
    errors_before: int | None = None
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    fix_id: str
    playbook_id: str
    status: str
    detail: str
    backup_id: str | None = None
    suspended: bool = False  # this outcome suspended the playbook (max_attempts reached)
