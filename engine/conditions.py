"""Whether a leaf condition holds for one reading: the one place that decides it.

Diagnosis (the sidecar's ``SignalBoard``: is a playbook's ``when`` true?) and
validation (:class:`~.validation.Judge`: did a fix's ``expect`` hold?) read the
same probe results, metric samples, container states and match counts. Both ask
:func:`holds` (validation also asks :func:`unmet` for the reason), so they can
never disagree on what a condition means. Time is theirs, not this module's: a
reading is one moment; ``for``, ``within`` and windows are applied by the caller.

A condition holds when every bound it gives holds: ``above`` and ``below``, a
probe's ``status`` and its latency bounds. A condition that gives no bound at
all cannot be written: the loader refuses a metric without ``above`` or
``below``, a probe without ``status`` or ``latency_ms`` and a container without
``state`` or ``restarts`` (each with its file, line and YAML path).

Which reading judges which condition is one table, :data:`_CHECKS`: a new kind
of condition adds its line there. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .playbook import AlertCondition, ContainerCondition, Leaf, LogCondition, MetricCondition, ProbeCondition


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReading:
    """One probe run: healthy or not, and how long it took (None: no answer to time)."""

    healthy: bool
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class MetricReading:
    """One sample of a metric."""

    value: float


@dataclass(frozen=True, slots=True)
class ContainerReading:
    """A container's state as polled: running, exited, restarting, unhealthy, ..."""

    state: str


@dataclass(frozen=True, slots=True)
class AlertReading:
    """One notification of an alert the condition names: firing or resolved."""

    state: str


@dataclass(frozen=True, slots=True)
class Count:
    """How many times something happened in the condition's window: lines matched, restarts seen."""

    n: int


Reading = ProbeReading | MetricReading | ContainerReading | AlertReading | Count


def holds(condition: Leaf, reading: Reading) -> bool:
    """Whether ``condition`` holds for ``reading``; TypeError when that reading cannot judge it."""
    return unmet(condition, reading) is None


def counted(condition: Leaf) -> bool:
    """Whether a :class:`Count` judges ``condition`` (lines matched, restarts seen), not the latest reading."""
    if isinstance(condition, ContainerCondition):
        return condition.restarts_at_least is not None
    return isinstance(condition, LogCondition)


def unmet(condition: Leaf, reading: Reading) -> str | None:
    """Why ``condition`` does not hold for ``reading``, in words for the history; None when it holds."""
    check = _CHECKS.get((type(condition), type(reading)))
    if check is None:
        raise TypeError(f"a {type(reading).__name__} cannot judge {condition.describe()} ({condition.at})")
    return check(condition, reading)


def _probe(c: ProbeCondition, r: ProbeReading) -> str | None:
    if c.status is not None and r.healthy != (c.status == "healthy"):
        return f"probe {c.name} is {'healthy' if r.healthy else 'unhealthy'} (expected {c.status})"
    latency = "no latency" if r.latency_ms is None else f"latency {r.latency_ms:g}ms"
    if c.latency_above_ms is not None and not (r.latency_ms is not None and r.latency_ms > c.latency_above_ms):
        return f"probe {c.name} {latency} (expected above {c.latency_above_ms:g}ms)"
    if c.latency_below_ms is not None and not (r.latency_ms is not None and r.latency_ms < c.latency_below_ms):
        return f"probe {c.name} {latency} (expected below {c.latency_below_ms:g}ms)"
    return None


def _metric(c: MetricCondition, r: MetricReading) -> str | None:
    """The bound of a metric condition against its series' latest value (raw, a rate or a quantile)."""
    if c.above is not None and not r.value > c.above:
        return f"{c.series()} = {r.value:g} (expected above {c.above:g})"
    if c.below is not None and not r.value < c.below:
        return f"{c.series()} = {r.value:g} (expected below {c.below:g})"
    return None


def _alert(c: AlertCondition, r: AlertReading) -> str | None:
    if r.state != c.state:
        return f"alert {c.name} is {r.state} (expected {c.state})"
    return None


def _state(c: ContainerCondition, r: ContainerReading) -> str | None:
    if c.state is not None and r.state != c.state:
        return f"container {c.name} is {r.state} (expected {c.state})"
    return None


def _restarts(c: ContainerCondition, r: Count) -> str | None:
    if c.restarts_at_least is not None and r.n < c.restarts_at_least:
        return f"container {c.name} restarted {r.n} time(s) (expected at least {c.restarts_at_least})"
    return None


def _lines(c: LogCondition, r: Count) -> str | None:
    """At least ``at_least`` lines, or else at most ``at_most`` (0 when neither is given)."""
    if c.at_least is not None:
        if r.n < c.at_least:
            return f"{r.n} line(s) of {c.source} matched /{c.pattern}/ (expected at least {c.at_least})"
        return None
    if r.n > (c.at_most or 0):
        return f"{r.n} line(s) of {c.source} matched /{c.pattern}/ (expected at most {c.at_most or 0})"
    return None


_CHECKS: dict[tuple[type, type], Callable[[Any, Any], str | None]] = {
    (ProbeCondition, ProbeReading): _probe,
    (MetricCondition, MetricReading): _metric,
    (ContainerCondition, ContainerReading): _state,
    (AlertCondition, AlertReading): _alert,
    (ContainerCondition, Count): _restarts,
    (LogCondition, Count): _lines,
}
