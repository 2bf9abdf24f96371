"""Decide: from a match, the playbook's history and the gates, to apply / propose / skip.

Confidence models (``learning.model``):

- ``beta`` (default): the posterior mean of a Beta distribution whose prior is
  the base confidence, worth ``prior_weight`` pseudo-outcomes::

      adjusted = 100 * (base/100 * w + successes) / (w + successes + failures)

  With w = 10, a base-70 playbook reaches 85 after 10 clean successes, and a
  base-95 playbook drops below 85 after two failures.
- ``linear``: the rule of the system suture replaces,
  ``base + (success_rate - 0.5) * 20`` clamped to 50..100 (base itself while
  there is no history).

Pure: the clock is the ``now`` argument and history arrives as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .playbook import Learning, Playbook, format_duration

Verdict = Literal["apply", "propose", "shadow", "skip"]
MAX_BACKOFF_DOUBLINGS = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcomes:
    """Counted results of earlier fixes of one playbook (local and from the fleet)."""

    successes: int = 0
    failures: int = 0
    fleet_successes: int = 0
    fleet_failures: int = 0

    @property
    def total_successes(self) -> int:
        return self.successes + self.fleet_successes

    @property
    def total_failures(self) -> int:
        return self.failures + self.fleet_failures


def adjusted_confidence(base: float, outcomes: Outcomes, learning: Learning) -> float:
    """Base confidence adjusted by history, 0..100."""
    s, f = outcomes.total_successes, outcomes.total_failures
    if learning.model == "linear":
        if s + f == 0:
            return float(base)
        rate = s / (s + f)
        return max(50.0, min(100.0, base + (rate - 0.5) * 20))
    w = learning.prior_weight
    return 100.0 * (base / 100.0 * w + s) / (w + s + f)


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate:
    """What the journal says about firing this playbook for this key right now."""

    in_flight: bool = False
    last_started_at: float | None = None  # last fix (any outcome but skip) for this key
    consecutive_failures: int = 0  # since the last success, for this key
    suspended: bool = False
    suspended_reason: str = ""
    fixes_last_hour: int = 0  # all playbooks


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    playbook_id: str
    key: str
    labels: Mapping[str, str] = field(default_factory=dict)
    verdict: Verdict
    reason: str
    base_confidence: float
    adjusted_confidence: float
    threshold: float
    successes: int
    failures: int
    fleet_successes: int = 0
    fleet_failures: int = 0
    model: str = "beta"
    mode: str = "auto"
    decided_at: float


def effective_cooldown(pb: Playbook, gate: Gate) -> float:
    """The playbook's cooldown, doubled for each failure in a row (exponential backoff)."""
    return float(pb.cooldown * 2.0 ** min(gate.consecutive_failures, MAX_BACKOFF_DOUBLINGS))


def decide(
    pb: Playbook,
    *,
    key: str,
    labels: Mapping[str, str],
    outcomes: Outcomes,
    gate: Gate,
    threshold: float,
    learning: Learning,
    fixes_per_hour: int,
    now: float,
) -> Decision:
    model = pb.learning or learning
    adjusted = adjusted_confidence(pb.confidence, outcomes, model)
    verdict: Verdict
    if gate.suspended:
        verdict, reason = "skip", f"suspended: {gate.suspended_reason or 'until a person resumes it'}"
    elif gate.in_flight:
        verdict, reason = "skip", "a fix of this playbook for this key is still in progress"
    elif gate.last_started_at is not None and now - gate.last_started_at < effective_cooldown(pb, gate):
        wait = effective_cooldown(pb, gate)
        ago = now - gate.last_started_at
        verdict, reason = "skip", f"cooldown: last fix {format_duration(round(ago))} ago, cooldown {format_duration(wait)}"
    elif pb.mode == "shadow":
        verdict, reason = "shadow", "shadow mode: recorded, nothing changed"
    elif gate.fixes_last_hour >= fixes_per_hour:
        verdict, reason = "propose", f"global cap: {gate.fixes_last_hour} fixes in the last hour (limit {fixes_per_hour})"
    elif pb.mode == "ask":
        verdict, reason = "propose", "ask mode: a person approves every fix"
    elif adjusted >= threshold:
        verdict, reason = "apply", f"confidence {adjusted:.1f} >= threshold {threshold:g}"
    else:
        verdict, reason = "propose", f"confidence {adjusted:.1f} < threshold {threshold:g}"
    return Decision(
        playbook_id=pb.id,
        key=key,
        labels=dict(labels),
        verdict=verdict,
        reason=reason,
        base_confidence=pb.confidence,
        adjusted_confidence=round(adjusted, 4),
        threshold=threshold,
        successes=outcomes.successes,
        failures=outcomes.failures,
        fleet_successes=outcomes.fleet_successes,
        fleet_failures=outcomes.fleet_failures,
        model=model.model,
        mode=pb.mode,
        decided_at=now,
    )
