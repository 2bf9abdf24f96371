"""From observations to signals: windows, sustained states, group keys.

Every leaf condition of every playbook's ``when`` gets one evaluator here,
shared by all playbooks that write the same leaf. An evaluator holds the
recent past it needs (the last N match times per group key for a log window,
the time a probe last changed state) and reports *transitions*: a fact to
assert when its leaf becomes true for a key, and to retract when it stops
being true. Time moves on only through the ``at``/``now`` arguments.

Memory is bounded: a log window keeps at most ``at_least`` (or ``at_most`` + 1)
timestamps per key, and at most ``MAX_KEYS`` keys per leaf (the least recently
seen key that does not hold is evicted, and counted).
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from suture.engine.playbook import (
    ContainerCondition,
    Leaf,
    LogCondition,
    MetricCondition,
    Playbook,
    ProbeCondition,
    leaves,
)
from suture.engine.rules import Fact

MAX_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class Transition:
    fact: Fact
    holds: bool  # True: assert, False: retract


# --- matching lines --------------------------------------------------------------------


@dataclass(slots=True)
class _Pattern:
    signal: str
    regex: re.Pattern[str]
    group_by: tuple[str, ...]


class PatternSet:
    """Every pattern of one source; ``match`` returns (signal, labels) for each hit."""

    def __init__(self, conditions: Iterable[LogCondition]) -> None:
        seen: dict[str, _Pattern] = {}
        for c in conditions:
            if c.signal not in seen:
                seen[c.signal] = _Pattern(c.signal, re.compile(c.pattern), c.group_by)
        self._patterns = list(seen.values())

    def __len__(self) -> int:
        return len(self._patterns)

    def match(self, text: str) -> list[tuple[str, dict[str, str]]]:
        hits = []
        for p in self._patterns:
            m = p.regex.search(text)
            if m is None:
                continue
            labels = {name: (m.group(name) or "") for name in p.group_by}
            hits.append((p.signal, labels))
        return hits


# --- evaluators ------------------------------------------------------------------------


@dataclass(slots=True)
class _LogWindow:
    leaf: LogCondition
    keys: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    holding: set[str] = field(default_factory=set)
    evicted: int = 0

    @property
    def keep(self) -> int:
        """Timestamps kept per key: enough to decide, and (ungrouped) to report a count."""
        need = self.leaf.at_least if self.leaf.at_least is not None else (self.leaf.at_most or 0) + 1
        return need if self.leaf.group_by else max(need, 1000)

    def count(self, key: str, now: float) -> int:
        times = self.keys.get(key)
        if not times:
            return 0
        within = self.leaf.within or float("inf")
        return sum(1 for t in times if t > now - within)

    def _holds(self, key: str, now: float) -> bool:
        n = self.count(key, now)
        if self.leaf.at_least is not None:
            return n >= self.leaf.at_least
        return n <= (self.leaf.at_most or 0)

    def add(self, labels: Mapping[str, str], at: float) -> list[Transition]:
        fact = Fact(signal=self.leaf.signal, labels=dict(labels))
        key = fact.key
        times = self.keys.get(key)
        if times is None:
            times = self.keys[key] = deque(maxlen=self.keep)
            self.labels[key] = dict(labels)
            self._evict()
        else:
            self.keys.move_to_end(key)
        times.append(at)
        return self._update(key, at)

    def _evict(self) -> None:
        while len(self.keys) > MAX_KEYS:
            for key in self.keys:
                if key not in self.holding:
                    del self.keys[key]
                    self.labels.pop(key, None)
                    self.evicted += 1
                    break
            else:
                return

    def _update(self, key: str, now: float) -> list[Transition]:
        holds = self._holds(key, now)
        if holds == (key in self.holding):
            return []
        fact = Fact(signal=self.leaf.signal, labels=self.labels.get(key, {}))
        if holds:
            self.holding.add(key)
        else:
            self.holding.discard(key)
        return [Transition(fact, holds)]

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        # at_least leaves stop holding as matches age out; at_most leaves start holding again
        for key in list(self.keys):
            out.extend(self._update(key, now))
        return out

    def start(self, now: float) -> list[Transition]:
        """An ungrouped at_most leaf holds before any line arrives."""
        if self.leaf.at_most is not None and not self.leaf.group_by:
            if "" not in self.keys:
                self.keys[""] = deque(maxlen=self.keep)
                self.labels[""] = {}
            return self._update("", now)
        return []


@dataclass(slots=True)
class _Sustained:
    """A leaf that holds when the latest reading satisfies it for at least ``for_s``."""

    leaf: ProbeCondition | MetricCondition | ContainerCondition
    good_since: float | None = None
    holding: bool = False

    def reading(self, ok: bool, at: float) -> list[Transition]:
        if ok:
            if self.good_since is None:
                self.good_since = at
        else:
            self.good_since = None
        return self.tick(at)

    def tick(self, now: float) -> list[Transition]:
        for_s = getattr(self.leaf, "for_s", 0.0)
        holds = self.good_since is not None and now - self.good_since >= for_s
        if holds == self.holding:
            return []
        self.holding = holds
        return [Transition(Fact(signal=self.leaf.signal), holds)]


def _probe_ok(leaf: ProbeCondition, healthy: bool, latency_ms: float | None) -> bool:
    if leaf.status is not None and healthy != (leaf.status == "healthy"):
        return False
    if leaf.latency_above_ms is not None and not (latency_ms is not None and latency_ms > leaf.latency_above_ms):
        return False
    return not (leaf.latency_below_ms is not None and not (latency_ms is not None and latency_ms < leaf.latency_below_ms))


def _metric_ok(leaf: MetricCondition, value: float) -> bool:
    if leaf.above is not None:
        return value > leaf.above
    return leaf.below is not None and value < leaf.below


# --- the board -------------------------------------------------------------------------


class SignalBoard:
    """All leaf evaluators of a playbook set, and the patterns each source needs."""

    def __init__(self, playbooks: Sequence[Playbook], previous: SignalBoard | None = None) -> None:
        self.logs: dict[str, _LogWindow] = {}
        self.sustained: dict[str, _Sustained] = {}
        expect_logs: list[LogCondition] = []
        for pb in playbooks:
            for leaf in leaves(pb.when):
                self._add(leaf, previous)
            for item in pb.validate.expect:
                expect_logs.extend(x for x in leaves(item) if isinstance(x, LogCondition))
        by_source: dict[str, list[LogCondition]] = {}
        for window in self.logs.values():
            by_source.setdefault(window.leaf.source, []).append(window.leaf)
        for leaf in expect_logs:
            by_source.setdefault(leaf.source, []).append(leaf)
        self.patterns = {source: PatternSet(conds) for source, conds in by_source.items()}

    def _add(self, leaf: Leaf, previous: SignalBoard | None) -> None:
        if isinstance(leaf, LogCondition):
            if leaf.signal not in self.logs:
                old = previous.logs.get(leaf.signal) if previous else None
                self.logs[leaf.signal] = old if old is not None else _LogWindow(leaf)
        elif leaf.signal not in self.sustained:
            old_s = previous.sustained.get(leaf.signal) if previous else None
            self.sustained[leaf.signal] = old_s if old_s is not None else _Sustained(leaf)

    def holding(self) -> list[Fact]:
        """Every fact that holds now (to carry into a new rules generation)."""
        out = [Fact(signal=s, labels=w.labels.get(k, {})) for s, w in self.logs.items() for k in w.holding]
        out += [Fact(signal=s) for s, e in self.sustained.items() if e.holding]
        return out

    def start(self, now: float) -> list[Transition]:
        return [t for w in self.logs.values() for t in w.start(now)]

    def line(self, source: str, text: str, at: float) -> tuple[list[Transition], set[str]]:
        """Feed one line; return the transitions it causes and every signal it matched."""
        patterns = self.patterns.get(source)
        if patterns is None:
            return [], set()
        out: list[Transition] = []
        matched = set()
        for signal, labels in patterns.match(text):
            matched.add(signal)
            window = self.logs.get(signal)
            if window is not None:
                out.extend(window.add(labels, at))
        return out, matched

    def probe(self, name: str, healthy: bool, latency_ms: float | None, at: float) -> list[Transition]:
        out: list[Transition] = []
        for e in self.sustained.values():
            if isinstance(e.leaf, ProbeCondition) and e.leaf.name == name:
                out.extend(e.reading(_probe_ok(e.leaf, healthy, latency_ms), at))
        return out

    def metric(self, name: str, value: float, at: float) -> list[Transition]:
        out: list[Transition] = []
        for e in self.sustained.values():
            if isinstance(e.leaf, MetricCondition) and e.leaf.name == name:
                out.extend(e.reading(_metric_ok(e.leaf, value), at))
        return out

    def container(self, name: str, state: str, at: float) -> list[Transition]:
        out: list[Transition] = []
        for e in self.sustained.values():
            if isinstance(e.leaf, ContainerCondition) and e.leaf.name == name and e.leaf.state is not None:
                out.extend(e.reading(state == e.leaf.state, at))
        return out

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        for w in self.logs.values():
            out.extend(w.tick(now))
        for e in self.sustained.values():
            out.extend(e.tick(now))
        return out

    def count(self, signal: str, key: str, now: float) -> int:
        window = self.logs.get(signal)
        return window.count(key, now) if window else 0

    def sources(self) -> set[str]:
        return set(self.patterns)
