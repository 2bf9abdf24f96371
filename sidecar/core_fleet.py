"""The core's fleet half: every ``apply`` asks the group first, and fixes told to wait are asked again.

    fleet = CoreFleet(port, ids=executor.ids)
    asked = fleet.ask(pb, match.key, decision, now)   # Asked: the decision as the group amended it
    core.start_fix(pb, asked.decision, now, **asked.record)   # fix_id, fleet (journaled), fence
    fleet.due(now)                                    # the waiting (playbook, match) to fire again

The port is :class:`~.fleet_gate.FleetGate` in ``suture run`` with ``fleet:``; a replay has none
(nothing here runs). A fix the group says to ``wait`` for (a canary running, ``max_concurrent``
reached) is parked under (playbook, key) and fired again every :data:`RETRY` seconds while its
diagnosis holds; only a new reason to wait is journaled (a ``skipped`` row and a ``waiting``
event), not every retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from suture.engine.decide import Decision
from suture.engine.fix import Fence, Outcome
from suture.engine.fleet_admission import FleetVerdict
from suture.engine.playbook import Playbook
from suture.engine.rules import Match

RETRY = 2.0  # seconds between two admissions of a waiting fix


class FleetPort(Protocol):
    def admit(self, pb: Playbook, key: str, fix_id: str) -> FleetVerdict: ...

    def fence(self, fix_id: str, pb: Playbook) -> Fence | None: ...

    def ended(self, outcome: Outcome, *, interrupted: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class Asked:
    """A decision as the group amended it, and what the executor records with it."""

    decision: Decision
    verdict: FleetVerdict
    record: dict[str, Any] = field(default_factory=dict)  # fix_id, fleet (the decided step), fence
    news: bool = True  # a wait: whether it is a new reason to wait (journal it) or the same one again


class CoreFleet:
    def __init__(self, port: FleetPort, *, ids: Callable[[str, float], str]) -> None:
        self.port = port
        self.ids = ids
        self.waiting: dict[tuple[str, str], tuple[Match, str]] = {}  # (playbook, key) -> its match, why it waits
        self._retry_at = 0.0
        self.stopping = False  # the sidecar is shutting down: the fixes it cuts short say nothing about themselves

    def ask(self, pb: Playbook, key: str, decision: Decision, now: float, *, match: Match | None = None) -> Asked:
        """The group's say on an ``apply``; with ``match``, a ``wait`` parks it to be fired again."""
        fix_id = self.ids("f", now)
        verdict = self.port.admit(pb, key, fix_id)
        record: dict[str, Any] = {"fix_id": fix_id, "fleet": verdict.detail()}
        if verdict.action == "wait":
            news = True
            if match is not None:
                before = self.waiting.get((pb.id, key))
                news = before is None or before[1] != verdict.reason
                self.waiting[(pb.id, key)] = (match, verdict.reason)
            return Asked(replace(decision, verdict="skip", reason=verdict.reason), verdict, record, news)
        self.waiting.pop((pb.id, key), None)
        if verdict.action == "act":
            record["fence"] = self.port.fence(fix_id, pb)
            reason = f"{decision.reason}; {verdict.reason}" if verdict.reason else decision.reason
            return Asked(replace(decision, reason=reason), verdict, record)
        return Asked(replace(decision, verdict=verdict.action, reason=verdict.reason), verdict, record)

    def due(self, now: float) -> list[tuple[str, Match]]:
        """The parked fixes to fire again now (every RETRY seconds); they stay parked until the group says
        something other than ``wait`` or the core drops them (their diagnosis no longer holds)."""
        if not self.waiting or now < self._retry_at:
            return []
        self._retry_at = now + RETRY
        return [(pb_id, match) for (pb_id, _), (match, _) in self.waiting.items()]

    def drop(self, playbook_id: str, key: str) -> None:
        self.waiting.pop((playbook_id, key), None)

    def ended(self, outcome: Outcome) -> None:
        self.port.ended(outcome, interrupted=self.stopping)
