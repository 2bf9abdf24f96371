"""Judging a fix over its validation window.

The sidecar feeds a :class:`Judge` what it observes (lines and the signals
they matched, probe results, metric samples, container states) with their
times; the judge says ``pending``, ``breached`` (a breach after settle rolls
back at once), ``passed`` (a clean, full window) or ``inconclusive`` (some
expectation saw no data at all: missing data is never success).

Pure: time only arrives as arguments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Literal

from .alerts import AlertState
from .conditions import AlertReading, ContainerReading, Count, ProbeReading, Reading, counted, holds, unmet
from .playbook import (
    AlertCondition,
    AllOf,
    AnyOf,
    Condition,
    ContainerCondition,
    Leaf,
    LogCondition,
    MetricCondition,
    NotOf,
    ProbeCondition,
    Validate,
    leaves,
    truth,
)
from .series import Labels, SeriesWatch

State = Literal["pending", "breached", "passed", "failed", "inconclusive"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    state: State
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.state != "pending"


@dataclass(slots=True)
class _Watch:
    """What one expectation leaf has seen since the window opened (after settle)."""

    leaf: Leaf
    observations: int = 0
    matches: int = 0
    recent: deque[float] = field(default_factory=deque)
    bad_since: float | None = None
    breach: str | None = None
    series: SeriesWatch | None = None  # a metric leaf: its series, as seen since the window opened
    last_state: bool | None = None  # an alert leaf: whether the last notification was in the leaf's state

    def holds(self) -> bool | None:
        """At the end of the window: True, False, or None for "no data"."""
        if self.breach:
            return False
        if self.observations == 0:
            return None
        if self.last_state is not None:
            return self.last_state
        # a counted leaf is judged by its count over the window; any other held unless breached
        return holds(self.leaf, Count(self.matches)) if counted(self.leaf) else True


class Judge:
    """Evaluate ``validate.expect`` over [started_at + settle, started_at + window]."""

    def __init__(self, validate: Validate, started_at: float) -> None:
        self.validate = validate
        self.started_at = started_at
        self.opens_at = started_at + validate.settle
        self.ends_at = started_at + validate.window
        self._watches: dict[int, _Watch] = {}
        for item in validate.expect:
            for leaf in leaves(item):
                self._watches.setdefault(id(leaf), _Watch(
                    leaf, series=SeriesWatch(leaf) if isinstance(leaf, MetricCondition) else None))

    # -- what it needs to hear about --

    @property
    def sources(self) -> set[str]:
        return {w.leaf.source for w in self._watches.values() if isinstance(w.leaf, LogCondition)}

    @property
    def log_conditions(self) -> list[LogCondition]:
        return [w.leaf for w in self._watches.values() if isinstance(w.leaf, LogCondition)]

    def _of(self, kind: type[Leaf], name: str | None = None) -> Iterator[_Watch]:
        """The watches of leaves of ``kind`` (named ``name``, for probes, metrics and containers)."""
        return (w for w in self._watches.values()
                if type(w.leaf) is kind and (name is None or getattr(w.leaf, "name", None) == name))

    # -- observations --

    def line(self, source: str, signals: Collection[str], at: float) -> None:
        """A line of ``source`` was read; ``signals`` are the log conditions it matched."""
        self.observed(source, 1, at)
        self.matched(source, signals, at)

    def observed(self, source: str, count: int, at: float) -> None:
        """``count`` lines of ``source`` were read (matched or not): the source is alive."""
        if at < self.opens_at:
            return
        for w in self._of(LogCondition):
            if w.leaf.source == source:  # type: ignore[union-attr]
                w.observations += count

    def matched(self, source: str, signals: Collection[str], at: float) -> None:
        """One line of ``source`` matched ``signals`` (already counted by :meth:`observed`)."""
        if at < self.opens_at or not signals:
            return
        for w in self._of(LogCondition):
            leaf = w.leaf
            assert isinstance(leaf, LogCondition)
            if leaf.source != source or leaf.signal not in signals:
                continue
            w.matches += 1
            if leaf.at_most is None:
                continue
            if leaf.within:
                w.recent.append(at)
                while w.recent and w.recent[0] <= at - leaf.within:
                    w.recent.popleft()
                count = len(w.recent)
            else:
                count = w.matches
            if not w.breach:
                w.breach = unmet(leaf, Count(count))

    def probe(self, name: str, healthy: bool, latency_ms: float | None, at: float) -> None:
        self._read(ProbeCondition, name, ProbeReading(healthy=healthy, latency_ms=latency_ms), at)

    def metric(self, name: str, value: float, at: float, labels: Labels = ()) -> None:
        self.metrics(name, [(labels, value)], at)

    def metrics(self, name: str, samples: list[tuple[Labels, float]], at: float) -> None:
        """Samples of one metric at ``at``: every series a leaf watches must satisfy it (for ``for_s``)."""
        if at < self.opens_at:
            return
        for w in self._watches.values():
            if w.series is None or not w.series.wants(name):
                continue
            w.series.add_many(samples, at)
            said = [x for x in w.series.judge(at).values() if x.known]
            if not said:
                continue
            w.observations += 1
            why = next((x.why for x in said if not x.holds), None)
            self._sustain(w, why, getattr(w.leaf, "for_s", 0.0), at)

    def alert(self, alert: AlertState) -> None:
        """A notification of an alert: an ``alert`` expectation holds when the last one is in its state."""
        if alert.at < self.opens_at:
            return
        for w in self._of(AlertCondition):
            leaf = w.leaf
            assert isinstance(leaf, AlertCondition)
            if alert.name == leaf.name and all(alert.label(k) == v for k, v in leaf.labels):
                w.observations += 1
                w.last_state = holds(leaf, AlertReading(alert.state))

    def container(self, name: str, state: str, restarted: bool, at: float) -> None:
        if at < self.opens_at:
            return
        for w in self._of(ContainerCondition, name):
            w.observations += 1
            if not counted(w.leaf):
                self._sustain(w, unmet(w.leaf, ContainerReading(state)), 0.0, at)
            elif restarted:
                w.matches += 1

    def _read(self, kind: type[ProbeCondition], name: str, reading: Reading, at: float) -> None:
        if at < self.opens_at:
            return
        for w in self._of(kind, name):
            w.observations += 1
            self._sustain(w, unmet(w.leaf, reading), getattr(w.leaf, "for_s", 0.0), at)

    @staticmethod
    def _sustain(w: _Watch, why: str | None, for_s: float, at: float) -> None:
        """A breach once the expectation has been unmet (``why``) for ``for_s`` seconds."""
        if why is None:
            w.bad_since = None
            return
        if w.bad_since is None:
            w.bad_since = at
        if at - w.bad_since >= for_s and not w.breach:
            w.breach = why

    # -- the verdict --

    def _breaches(self, cond: Condition) -> Iterator[str]:
        """Irreversible breaches: a breached leaf, directly or under `all`."""
        if isinstance(cond, AllOf):
            for c in cond.items:
                yield from self._breaches(c)
        elif not isinstance(cond, (AnyOf, NotOf)):
            breach = self._watches[id(cond)].breach
            if breach:
                yield breach

    def verdict(self, now: float) -> Judgement:
        for item in self.validate.expect:
            for breach in self._breaches(item):
                return Judgement(state="breached", reason=breach)
        if now < self.ends_at:
            return Judgement(state="pending")
        missing = []
        for item in self.validate.expect:
            value = truth(item, lambda leaf: self._watches[id(leaf)].holds())
            if value is False:
                return Judgement(state="failed", reason=f"expectation not met: {item.describe()}")
            if value is None:
                missing.append(item.describe())
        if missing:
            return Judgement(state="inconclusive", reason="no data in the window for: " + "; ".join(missing))
        return Judgement(state="passed", reason=f"all {len(self.validate.expect)} expectation(s) held for the window")

    def errors_after(self) -> int:
        """Lines matched by the window's log expectations (the errors left after the fix)."""
        return sum(w.matches for w in self._of(LogCondition))

    def measured(self) -> dict[str, object]:
        """What the window saw, for the history."""
        out: dict[str, object] = {}
        for w in self._watches.values():
            out[w.leaf.describe()] = {"observations": w.observations, "matches": w.matches, "breach": w.breach}
        return out

