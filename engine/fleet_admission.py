"""What the group lets a decided fix do: the pure half of fleet admission.

Before a fix the sidecar decided to ``apply`` starts, it asks its group (``sidecar/fleet_gate.py``),
in one PostgreSQL transaction under the (group, playbook) advisory lock:

    view = GroupView(...)                       # read under the lock: suspension, hourly count, canaries
    step = plan(scope, view, canary=1, fixes_per_hour=30, playbook_id=pb.id)
    ...                                         # act -> take the lease (Lease | Held | Busy)
    verdict = with_lease(step, got)             # -> FleetVerdict: act | skip | propose | wait

The order is the order of a person's questions: is the playbook suspended for the group (skip),
has the group used its hourly budget (propose), is there a canary verdict for this playbook
version (act after its success, skip after its failure, wait while one runs, else become one),
and is the target free (``scope: fleet``: the lease is held elsewhere -> skip; ``max_concurrent``
reached -> wait). When the group cannot be asked, a ``scope: fleet`` fix is proposed, never
applied; a replica fix acts, flagged as decided without the fleet (:func:`unreachable`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .fleet_values import Busy, Held, Lease
from .status import FAILURE, SUCCESS

Scope = Literal["replica", "fleet"]
CanaryState = Literal["running", "succeeded", "failed", "abandoned", "resumed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Canary:
    """A replica that tried (or tries) this playbook version first, as its fleet_canaries row says."""

    fix_id: str
    sidecar: str
    state: CanaryState

    def describe(self) -> str:
        return f"canary {self.fix_id} ({self.sidecar})"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupView:
    """The group's state for one playbook, read under its advisory lock."""

    suspended: str | None = None  # the active group suspension's reason (None: not suspended)
    started_last_hour: int = 0  # fixes the group let start within the hour, every playbook
    canaries: tuple[Canary, ...] = ()  # of this playbook version, unexpired running ones included


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetVerdict:
    """What the group allows a decided fix: ``act``; ``skip`` (another sidecar acts, a failed canary, a
    suspension); ``propose`` (fail closed, or the hourly cap); ``wait`` (a canary or ``max_concurrent``:
    ask again while the diagnosis holds)."""

    action: Literal["act", "skip", "propose", "wait"]
    reason: str = ""
    token: int | None = None  # the fencing token of the lease the fix acts under (every step carries it)
    canary: bool = False  # this fix is one of the group's canaries for its playbook version
    after_canary: str | None = None  # the canary fix whose validated success lets this one act
    without_fleet: bool = False  # a replica fix decided while the group could not be asked

    def detail(self) -> dict[str, object]:
        """What the ``decided`` journal step keeps of it (``"fleet": {...}``)."""
        out: dict[str, object] = {"action": self.action}
        if self.reason:
            out["reason"] = self.reason
        if self.token is not None:
            out["token"] = self.token
        if self.canary:
            out["role"] = "canary"
        if self.after_canary is not None:
            out["canary"] = self.after_canary
        if self.without_fleet:
            out["without_fleet"] = True
        return out


def resume_hint(playbook_id: str) -> str:
    return f"`suture resume --fleet {playbook_id}` lets it act again"


def plan(scope: Scope, view: GroupView, *, canary: int, fixes_per_hour: int, playbook_id: str) -> FleetVerdict:
    """The group's answer before the lease: ``act`` here still needs it (:func:`with_lease`)."""
    if view.suspended is not None:
        return FleetVerdict(action="skip",
                            reason=f"suspended for the group: {view.suspended}; {resume_hint(playbook_id)}")
    if view.started_last_hour >= fixes_per_hour:
        return FleetVerdict(action="propose", reason=(
            f"group-wide hourly cap: {view.started_last_hour} fix(es) started across the group in the last hour "
            f"(fleet.fixes_per_hour {fixes_per_hour})"))
    if scope == "fleet" or canary <= 0:
        return FleetVerdict(action="act")
    failed = next((c for c in view.canaries if c.state == "failed"), None)
    if failed is not None:
        return FleetVerdict(action="skip", reason=f"{failed.describe()} failed: suspended for the group; "
                                                  f"{resume_hint(playbook_id)}")
    succeeded = next((c for c in view.canaries if c.state == "succeeded"), None)
    if succeeded is not None:
        return FleetVerdict(action="act", reason=f"{succeeded.describe()} succeeded", after_canary=succeeded.fix_id)
    running = [c for c in view.canaries if c.state == "running"]
    if len(running) >= canary:
        return FleetVerdict(action="wait", reason=f"waiting for {running[0].describe()}")
    return FleetVerdict(action="act", canary=True, reason=f"canary {len(running) + 1} of {canary} for this playbook version")


def with_lease(step: FleetVerdict, got: Lease | Held | Busy) -> FleetVerdict:
    """The planned ``act`` once the lease was asked: held elsewhere -> skip; at max_concurrent -> wait."""
    if isinstance(got, Held):
        return FleetVerdict(action="skip", reason=got.reason())
    if isinstance(got, Busy):
        return FleetVerdict(action="wait", reason=f"waiting: {got.reason()}")
    lease = f"fleet lease token {got.token}"
    return replace(step, token=got.token, reason=f"{step.reason}; {lease}" if step.reason else lease)


def unreachable(scope: Scope, why: str) -> FleetVerdict:
    """Fail closed: a shared target is never changed without the group's lease; a replica's own copy is."""
    if scope == "fleet":
        return FleetVerdict(action="propose", reason=f"the fleet is unavailable ({why}): scope: fleet fixes are "
                                                     "proposed, never applied without a lease")
    return FleetVerdict(action="act", reason=f"decided without the fleet: {why}", without_fleet=True)


def canary_end(status: str) -> CanaryState:
    """What a canary's row becomes when its fix ends with ``status``: a validated success lets the group act,
    a failure suspends it; an end that says nothing about the fix (exhausted, conflict, ...) frees the slot."""
    if status in SUCCESS:
        return "succeeded"
    if status in FAILURE:
        return "failed"
    return "abandoned"
