"""From observations to signals: windows, sustained states, group keys.

Every leaf condition of every playbook's ``when`` gets one evaluator here,
shared by all playbooks that write the same leaf. An evaluator holds the
recent past it needs (the last N match times per group key for a log window,
the time a probe last changed state) and reports *transitions*: a fact to
assert when its leaf becomes true for a key, and to retract when it stops
being true. Time moves on only through the ``at``/``now`` arguments.

Log leaves with the same source, pattern and group_by share one history of
match times, so a reload that edits a threshold or adds a playbook for errors
already seen keeps what was seen. Memory is bounded: at most the largest
``at_least`` (or ``at_most`` + 1) timestamps per key (1000 when ungrouped, to
report counts) and at most ``MAX_KEYS`` keys per pattern (the least recently
matched key is forgotten, and counted).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from suture.engine.alerts import AlertState
from suture.engine.conditions import AlertReading, ContainerReading, Count, ProbeReading, Reading, counted, holds
from suture.engine.playbook import (
    AlertCondition,
    ContainerCondition,
    Leaf,
    LogCondition,
    MetricCondition,
    Playbook,
    ProbeCondition,
    leaves,
)
from suture.engine.rules import Fact, sustained_fact
from suture.engine.series import Labels, LogRate, Said, SeriesWatch

from .matching import PatternSet

MAX_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class Transition:
    fact: Fact
    holds: bool  # True: assert, False: retract


# --- evaluators ------------------------------------------------------------------------


PatternKey = tuple[str, str, tuple[str, ...]]  # source, pattern, group_by


def pattern_key(leaf: LogCondition) -> PatternKey:
    return (leaf.source, leaf.pattern, leaf.group_by)


@dataclass(slots=True)
class _Matches:
    """When lines matched one pattern, per group key: shared by every leaf with that pattern.

    Sharing is what lets a reload change a threshold (at_least 3 -> 5) or add a playbook
    for errors already seen without losing the window's history.
    """

    keep: int
    times: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    evicted: int = 0
    total: int = 0  # lines matched, ever (for /metrics)

    def grow(self, keep: int) -> None:
        if keep > self.keep:
            self.keep = keep
            for key, times in self.times.items():
                self.times[key] = deque(times, maxlen=keep)

    def add(self, labels: Mapping[str, str], at: float) -> str:
        self.total += 1
        key = Fact(signal="", labels=dict(labels)).key
        times = self.times.get(key)
        if times is None:
            times = self.times[key] = deque(maxlen=self.keep)
            self.labels[key] = dict(labels)
            while len(self.times) > MAX_KEYS:  # forget the least recently matched key
                old, _ = self.times.popitem(last=False)
                self.labels.pop(old, None)
                self.evicted += 1
        else:
            self.times.move_to_end(key)
        if times and at < times[-1]:  # out of order (replayed timestamps): keep the deque sorted, the newest kept
            times = self.times[key] = deque(sorted([*times, at])[-self.keep :], maxlen=self.keep)
        else:
            times.append(at)
        return key

    def count(self, key: str, now: float, within: float | None) -> int:
        """Matches of ``key`` after ``now - within``: a binary search, as each deque is kept sorted."""
        times = self.times.get(key)
        if not times:
            return 0
        if within is None:
            return len(times)
        return len(times) - bisect.bisect_right(times, now - within)

    def ensure(self, key: str) -> None:
        if key not in self.times:
            self.times[key] = deque(maxlen=self.keep)
            self.labels[key] = {}


def _need(leaf: LogCondition) -> int:
    """Timestamps a leaf needs per key: enough to decide, and (ungrouped) to report a count."""
    need = leaf.at_least if leaf.at_least is not None else (leaf.at_most or 0) + 1
    return need if leaf.group_by else max(need, 1000)


@dataclass(slots=True)
class _LogWindow:
    """One log leaf: at least / at most N matches within its window, per key."""

    leaf: LogCondition
    matches: _Matches
    holding: set[str] = field(default_factory=set)

    def count(self, key: str, now: float) -> int:
        return self.matches.count(key, now, self.leaf.within)

    def update(self, key: str, now: float) -> list[Transition]:
        now_holds = key in self.matches.times and holds(self.leaf, Count(self.count(key, now)))
        if now_holds == (key in self.holding):
            return []
        fact = Fact(signal=self.leaf.signal, labels=self.matches.labels.get(key, {}))
        if now_holds:
            self.holding.add(key)
        else:
            self.holding.discard(key)
        return [Transition(fact, now_holds)]

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        # at_least leaves stop holding as matches age out; at_most leaves start holding again;
        # a key forgotten by its _Matches stops holding
        for key in [*self.matches.times, *(k for k in self.holding if k not in self.matches.times)]:
            out.extend(self.update(key, now))
        return out

    def start(self, now: float) -> list[Transition]:
        """Evaluate against the history so far (an ungrouped at_most leaf holds before any line)."""
        if self.leaf.at_most is not None and not self.leaf.group_by:
            self.matches.ensure("")
        return self.tick(now)


@dataclass(slots=True)
class _Sustained:
    """A leaf that holds when the latest reading satisfies it for at least ``for_s``."""

    leaf: ProbeCondition | ContainerCondition
    good_since: float | None = None
    holding: bool = False
    restarts: deque[float] = field(default_factory=lambda: deque(maxlen=1000))

    @property
    def fact(self) -> Fact:
        return sustained_fact(self.leaf)

    def restarted(self, at: float) -> list[Transition]:
        """A restart of the container (restarts condition): count it in the window."""
        self.restarts.append(at)
        return self.tick(at)

    def reading(self, reading: Reading, at: float) -> list[Transition]:
        """The latest reading of what the leaf watches: does it hold, and since when?"""
        if holds(self.leaf, reading):
            if self.good_since is None:
                self.good_since = at
        else:
            self.good_since = None
        return self.tick(at)

    def tick(self, now: float) -> list[Transition]:
        leaf = self.leaf
        if isinstance(leaf, ContainerCondition) and counted(leaf):  # restarts within a window
            since = now - (leaf.restarts_within or float("inf"))
            now_holds = holds(leaf, Count(sum(1 for t in self.restarts if t > since)))
        else:
            for_s = getattr(leaf, "for_s", 0.0)
            now_holds = self.good_since is not None and now - self.good_since >= for_s
        if now_holds == self.holding:
            return []
        self.holding = now_holds
        return [Transition(self.fact, now_holds)]


@dataclass(slots=True)
class _Keyed:
    """A leaf that holds for some key (a series, an alert's fingerprint) once that key has held for ``for_s``."""

    since: dict[object, float] = field(default_factory=dict)  # key -> holding since
    holding: bool = False

    @property
    def good_since(self) -> float | None:
        return min(self.since.values(), default=None)

    def mark(self, key: object, ok: bool, at: float) -> None:
        if ok:
            self.since.setdefault(key, at)
        else:
            self.since.pop(key, None)

    def settle(self, leaf: Leaf, for_s: float, now: float) -> list[Transition]:
        """The transition, if ``leaf`` now holds or stops holding (its fact is built only then: a tick is cheap)."""
        now_holds = any(now - t >= for_s for t in self.since.values())
        if now_holds == self.holding:
            return []
        self.holding = now_holds
        return [Transition(sustained_fact(leaf), now_holds)]


@dataclass(slots=True)
class SeriesEval(_Keyed):
    """A metric leaf over its series (engine.series): holds while some series has held for ``for_s``."""

    leaf: MetricCondition = field(kw_only=True)
    watch: SeriesWatch = field(kw_only=True)
    last: dict[Labels, Said] = field(default_factory=dict)  # what each series said at the last look

    @property
    def fact(self) -> Fact:
        return sustained_fact(self.leaf)

    def samples(self, samples: list[tuple[Labels, float]], at: float) -> list[Transition]:
        self.watch.add_many(samples, at)
        return self.tick(at)

    def tick(self, now: float) -> list[Transition]:
        self.watch.expire(now)
        self.last = self.watch.judge(now)
        for labels, said in self.last.items():
            self.mark(labels, said.holds, now)
        for gone in [k for k in self.since if k not in self.last]:
            del self.since[gone]
        return self.settle(self.leaf, self.leaf.for_s, now)


@dataclass(slots=True)
class _LogAnomaly:
    """A log leaf with ``anomaly``: its matches per bucket against their baseline (engine.series.LogRate)."""

    leaf: LogCondition
    rate: LogRate
    holding: bool = False
    last: Said | None = None

    def matched(self, at: float) -> list[Transition]:
        self.rate.add(at)
        return self.tick(at)

    def tick(self, now: float) -> list[Transition]:
        self.last = self.rate.said(now)
        if self.last.holds == self.holding:
            return []
        self.holding = self.last.holds
        return [Transition(Fact(signal=self.leaf.signal), self.holding)]


@dataclass(slots=True)
class _AlertEval(_Keyed):
    """An alert leaf: holds while a matching alert has been in its state for ``for_s`` (since suture saw it so)."""

    leaf: AlertCondition = field(kw_only=True)

    @property
    def fact(self) -> Fact:
        return sustained_fact(self.leaf)

    def alert(self, alert: AlertState) -> list[Transition]:
        leaf = self.leaf
        if alert.name != leaf.name or any(alert.label(k) != v for k, v in leaf.labels):
            return []
        self.mark(alert.fingerprint, holds(leaf, AlertReading(alert.state)), alert.at)
        return self.tick(alert.at)

    def tick(self, now: float) -> list[Transition]:
        return self.settle(self.leaf, self.leaf.for_s, now)


# --- matchers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Matcher:
    patterns: PatternSet
    key_of: dict[str, PatternKey]  # representative signal -> pattern key


class MatcherCache:
    """Compiled matchers by set of patterns; thread-safe, so a reload can compile off the core."""

    def __init__(self, keep: int = 8) -> None:
        self._items: OrderedDict[frozenset[PatternKey], _Matcher] = OrderedDict()
        self._lock = threading.Lock()
        self.keep = keep

    def get(self, by_key: Mapping[PatternKey, LogCondition]) -> _Matcher:
        keys = frozenset(by_key)
        with self._lock:
            found = self._items.get(keys)
            if found is not None:
                self._items.move_to_end(keys)
                return found
        built = _Matcher(PatternSet(by_key.values()), {leaf.signal: k for k, leaf in by_key.items()})
        with self._lock:
            self._items[keys] = built
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
        return built

    def prepare(self, playbooks: Sequence[Playbook]) -> None:
        """Compile what a board for ``playbooks`` will need (call off the core, before swapping in)."""
        for by_key in representatives(playbooks).values():
            self.get(by_key)


def representatives(playbooks: Sequence[Playbook]) -> dict[str, dict[PatternKey, LogCondition]]:
    """Per source, one condition per (source, pattern, group_by): what the matcher compiles."""
    reps: dict[str, dict[PatternKey, LogCondition]] = {}
    for pb in playbooks:
        for cond in (pb.when, *pb.validate.expect):
            for leaf in leaves(cond):
                if isinstance(leaf, LogCondition):
                    reps.setdefault(leaf.source, {}).setdefault(pattern_key(leaf), leaf)
    return reps


# --- the board -------------------------------------------------------------------------


class SignalBoard:
    """All leaf evaluators of a playbook set, and the patterns each source needs."""

    def __init__(
        self,
        playbooks: Sequence[Playbook],
        previous: SignalBoard | None = None,
        matchers: MatcherCache | None = None,
    ) -> None:
        self.logs: dict[str, _LogWindow] = {}
        self.sustained: dict[str, _Sustained | SeriesEval | _AlertEval] = {}
        self.anomalies: dict[str, _LogAnomaly] = {}
        self.matches: dict[PatternKey, _Matches] = {}
        self._signals_of: dict[PatternKey, set[str]] = {}
        expect_logs: list[LogCondition] = []
        for pb in playbooks:
            for leaf in leaves(pb.when):
                self._add(leaf, previous)
            for item in pb.validate.expect:
                expect_logs.extend(x for x in leaves(item) if isinstance(x, LogCondition))
        for leaf in expect_logs:
            self._signals_of.setdefault(pattern_key(leaf), set()).add(leaf.signal)
        reps = representatives(playbooks)
        # Compiling a multi-pattern database is the slow part of a reload: matchers are shared
        # through a cache keyed by each source's set of patterns (the sidecar fills it off the core).
        cache = matchers if matchers is not None else MatcherCache()
        self._matchers = {source: cache.get(by_key) for source, by_key in reps.items()}
        self.patterns = {source: m.patterns for source, m in self._matchers.items()}
        self._key_of = {signal: k for m in self._matchers.values() for signal, k in m.key_of.items()}

    def _add(self, leaf: Leaf, previous: SignalBoard | None) -> None:
        if isinstance(leaf, LogCondition) and leaf.anomaly is not None:  # its own buckets, fed by the shared matcher
            self._signals_of.setdefault(pattern_key(leaf), set()).add(leaf.signal)
            if leaf.signal not in self.anomalies:
                old_a = previous.anomalies.get(leaf.signal) if previous else None
                self.anomalies[leaf.signal] = old_a if old_a is not None else _LogAnomaly(leaf, LogRate(leaf))
            self.matches.setdefault(pattern_key(leaf), (previous.matches.get(pattern_key(leaf)) if previous else None)
                                    or _Matches(keep=1))
        elif isinstance(leaf, LogCondition):
            key = pattern_key(leaf)
            self._signals_of.setdefault(key, set()).add(leaf.signal)
            if leaf.signal in self.logs:
                return
            matches = self.matches.get(key)
            if matches is None:
                matches = previous.matches.get(key) if previous else None
                matches = matches if matches is not None else _Matches(keep=_need(leaf))
                self.matches[key] = matches
            matches.grow(_need(leaf))
            old = previous.logs.get(leaf.signal) if previous else None
            self.logs[leaf.signal] = _LogWindow(leaf, matches, set(old.holding) if old else set())
        elif leaf.signal not in self.sustained:
            old_s = previous.sustained.get(leaf.signal) if previous else None
            if old_s is not None:
                self.sustained[leaf.signal] = old_s
            elif isinstance(leaf, MetricCondition):
                self.sustained[leaf.signal] = SeriesEval(leaf=leaf, watch=SeriesWatch(leaf))
            elif isinstance(leaf, AlertCondition):
                self.sustained[leaf.signal] = _AlertEval(leaf=leaf)
            else:
                self.sustained[leaf.signal] = _Sustained(leaf)

    def holding(self) -> list[Fact]:
        """Every fact that holds now (to carry into a new rules generation)."""
        out = [Fact(signal=s, labels=w.matches.labels.get(k, {})) for s, w in self.logs.items() for k in w.holding]
        out += [e.fact for e in self.sustained.values() if e.holding]
        out += [Fact(signal=s) for s, a in self.anomalies.items() if a.holding]
        return out

    def start(self, now: float) -> list[Transition]:
        return [t for w in self.logs.values() for t in w.start(now)]

    def line(self, source: str, text: str, at: float) -> tuple[list[Transition], set[str]]:
        """Feed one line; return the transitions it causes and every signal it matched."""
        patterns = self.patterns.get(source)
        if patterns is None:
            return [], set()
        return self._apply(patterns.match(text), at)

    def block(self, source: str, data: bytes, at: float) -> list[tuple[int, str, list[Transition], set[str]]]:
        """Feed many lines at once (scanned whole); (offset, text, transitions, signals) per line that matched."""
        patterns = self.patterns.get(source)
        if patterns is None:
            return []
        out = []
        for start, end, hits in patterns.scan(data):
            transitions, matched = self._apply(hits, at)
            out.append((start, data[start:end].decode("utf-8", "replace"), transitions, matched))
        return out

    def _apply(self, hits: list[tuple[str, dict[str, str]]], at: float) -> tuple[list[Transition], set[str]]:
        out: list[Transition] = []
        matched: set[str] = set()
        for signal, labels in hits:
            key = self._key_of[signal]
            matched |= self._signals_of.get(key, set())
            shared = self.matches.get(key)
            if shared is None:  # only validation expectations use this pattern
                continue
            group = shared.add(labels, at)
            for leaf_signal in self._signals_of[key]:
                window = self.logs.get(leaf_signal)
                if window is not None:
                    out.extend(window.update(group, at))
                anomaly = self.anomalies.get(leaf_signal)
                if anomaly is not None:
                    out.extend(anomaly.matched(at))
        return out, matched

    def _watching(self, kind: type[Leaf], name: str) -> list[_Sustained]:
        return [e for e in self.sustained.values()
                if isinstance(e, _Sustained) and type(e.leaf) is kind and e.leaf.name == name]

    def probe(self, name: str, healthy: bool, latency_ms: float | None, at: float) -> list[Transition]:
        reading = ProbeReading(healthy=healthy, latency_ms=latency_ms)
        return [t for e in self._watching(ProbeCondition, name) for t in e.reading(reading, at)]

    def metric(self, name: str, value: float, at: float, labels: Labels = ()) -> list[Transition]:
        return self.metrics(name, [(labels, value)], at)

    def metrics(self, name: str, samples: list[tuple[Labels, float]], at: float) -> list[Transition]:
        """Samples of one metric taken at ``at`` (a histogram's buckets together, for a quantile)."""
        out: list[Transition] = []
        for e in self.sustained.values():
            if isinstance(e, SeriesEval) and e.watch.wants(name):
                out.extend(e.samples(samples, at))
        return out

    def metric_names(self) -> set[str]:
        """The metrics some condition reads (``<name>_bucket`` for a quantile)."""
        return {e.watch.metric for e in self.sustained.values() if isinstance(e, SeriesEval)}

    def alert(self, alert: AlertState) -> list[Transition]:
        return [t for e in self.sustained.values() if isinstance(e, _AlertEval) for t in e.alert(alert)]

    def container(self, name: str, state: str, at: float, *, restarted: bool = False) -> list[Transition]:
        """A container's state as polled; ``restarted``: a new start was seen since the last poll."""
        out: list[Transition] = []
        for e in self._watching(ContainerCondition, name):
            if counted(e.leaf):
                out.extend(e.restarted(at) if restarted else [])
            else:
                out.extend(e.reading(ContainerReading(state), at))
        return out

    def containers(self) -> set[str]:
        """Names of the containers some condition watches."""
        return {e.leaf.name for e in self.sustained.values() if isinstance(e.leaf, ContainerCondition)}

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        for w in self.logs.values():
            # an at_least window that holds for no key cannot start holding by time alone (its counts only
            # fall): skipping it changes nothing and makes a tick cheap (a replay ticks before every line)
            if w.holding or w.leaf.at_most is not None:
                out.extend(w.tick(now))
        for e in self.sustained.values():
            out.extend(e.tick(now))
        for a in self.anomalies.values():
            out.extend(a.tick(now))
        return out

    def count(self, signal: str, key: str, now: float) -> int:
        window = self.logs.get(signal)
        return window.count(key, now) if window else 0

    def sources(self) -> set[str]:
        return set(self.patterns)
