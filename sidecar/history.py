"""What the core's decisions read from the past: one interface, a live and a dry-run answer.

``decide`` needs two things from history: the *gate* (cooldown, in-flight, suspension, the
hourly cap) and the *outcomes* (successes and failures behind the adjusted confidence).

- :class:`LiveHistory` asks the store, plus the fleet's outcomes when shared (learning.fleet);
- :class:`DryRunHistory` (``suture replay``) asks the store once per playbook and key, then
  keeps the answers up to date itself: a dry run records every decision as shadow, and shadow
  rows start a cooldown but change neither outcomes, suspensions nor the hourly cap, so what
  *would* have been applied is counted here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Protocol

from suture.engine.decide import Decision, Gate, Outcomes
from suture.engine.fleet import GroupOutcomes
from suture.engine.store import Store

HOUR = 3600.0


class History(Protocol):
    def gate(self, playbook_id: str, key: str, now: float) -> Gate: ...

    def outcomes(self, playbook_id: str) -> Outcomes: ...

    def decided(self, playbook_id: str, key: str, decision: Decision, now: float) -> None:
        """A decision other than skip was recorded (called after the executor took it)."""


class LiveHistory:
    """This sidecar's journal, plus the group's outcomes when shared (a Parquet folder or PostgreSQL)."""

    def __init__(self, store: Store, fleet: GroupOutcomes | None = None) -> None:
        self.store = store
        self.fleet = fleet

    def gate(self, playbook_id: str, key: str, now: float) -> Gate:
        return self.store.gate(playbook_id, key, now)

    def outcomes(self, playbook_id: str) -> Outcomes:
        local = self.store.outcomes(playbook_id)
        fleet = self.fleet.outcomes(playbook_id) if self.fleet is not None else (0, 0)
        return replace(local, fleet_successes=fleet[0], fleet_failures=fleet[1])

    def decided(self, playbook_id: str, key: str, decision: Decision, now: float) -> None:
        return None  # the journal row is the record


class DryRunHistory:
    """The store's answers, fetched once and aged by the dry run's own decisions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._gates: dict[tuple[str, str], Gate] = {}
        self._outcomes: dict[str, Outcomes] = {}
        self._applies: deque[float] = deque()  # times of APPLY decisions (the hourly cap)

    def gate(self, playbook_id: str, key: str, now: float) -> Gate:
        gate = self._gates.get((playbook_id, key))
        if gate is None:
            gate = self._gates[(playbook_id, key)] = self.store.gate(playbook_id, key, now)
        while self._applies and self._applies[0] < now - HOUR:
            self._applies.popleft()
        return replace(gate, fixes_last_hour=len(self._applies))

    def outcomes(self, playbook_id: str) -> Outcomes:
        outcomes = self._outcomes.get(playbook_id)
        if outcomes is None:
            outcomes = self._outcomes[playbook_id] = self.store.outcomes(playbook_id)
        return outcomes

    def decided(self, playbook_id: str, key: str, decision: Decision, now: float) -> None:
        if decision.verdict == "apply":
            self._applies.append(now)
        # what store.gate would answer now: the cooldown starts here (the shadow row is final, so
        # nothing is in flight, and shadow rows change neither failures nor suspensions)
        gate = self._gates.get((playbook_id, key))
        if gate is not None:
            self._gates[(playbook_id, key)] = replace(gate, last_started_at=now, fixes_last_hour=0)
