"""The core: observations in, events and decisions out. No threads, no sleeps; the clock is given.

    observation ──► signals (SignalBoard) ──► rules (durable_rules) ──► decide ──► Fixes ──► executor
         │                                                                  │          │
         └──────► validation windows (Judge) ◄──────────────────────────────┘   effects: yielded, to a port

``suture run`` (:mod:`.runtime`) feeds it from threads, one observation at a time, and gives it
a worker pool for effects; ``suture replay`` (:mod:`.replay`) feeds it lines from files with
their own times, a dry-run executor and no worker. There is no other copy of this path: what a
replay decides on a recorded stream is what the live sidecar decides on it (tests/test_core.py).

An observation that raises ends that observation, never the core (SAFETY 13): the error is
logged with its traceback, counted and emitted; fixes end themselves (the executor turns any
error into a final state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from suture.engine.alerts import keep_firing
from suture.engine.config import Config
from suture.engine.decide import Decision, Outcomes, decide
from suture.engine.errors import SutureError
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.loader import PlaybookSet
from suture.engine.playbook import ContainerCondition, Leaf, MetricCondition, Playbook, leaves
from suture.engine.rules import READY_SIGNAL, Fact, Match, Rules

from .core_fleet import CoreFleet, FleetPort
from .core_view import core_snapshot
from .events import Event, clean, validating_events
from .evidence import Evidence
from .fixes import EffectPort, Fixes
from .history import History
from .observations import (
    Alerts,
    AlertState,
    Command,
    Containers,
    EffectDone,
    Lines,
    Metrics,
    Observation,
    Playbooks,
    ProbeResult,
    Tick,
)
from .seen import seen
from .signals import MatcherCache, SignalBoard, Transition
from .snapshot import Snapshot
from .sources.base import Block, Labels
from .sources.containers import metric_containers

log = logging.getLogger("suture")


class Meter:
    """What the core counts as it goes (the sidecar's Prometheus registry; nothing by default)."""

    def detection(self, seconds: float) -> None: ...
    def confidence(self, playbook_id: str, value: float) -> None: ...
    def fix(self, playbook_id: str, status: str) -> None: ...
    def fix_duration(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """One firing of a playbook: what matched, what was decided, and what became of it."""

    at: float
    playbook: Playbook
    match: Match
    decision: Decision
    errors_before: int  # matching lines in the matched windows at that moment
    detected: tuple[Leaf, ...]  # the `when` conditions whose facts matched
    result: FixRun | Outcome | str | None  # str: the fix id of a fix whose effects are running; None: skip/deferred
    deferred: bool = False


class Core:
    def __init__(
        self,
        config: Config,
        *,
        executor: Executor,
        history: History,
        clock: Callable[[], float],
        emit: Callable[[Event], None] = lambda event: None,
        port: EffectPort | None = None,
        meter: Meter | None = None,
        decisions: Callable[[Decided], None] | None = None,
        assumed: Sequence[Fact] = (),
        matchers: MatcherCache | None = None,
        hooks: Mapping[str, Callable[..., None]] | None = None,
        fleet: FleetPort | None = None,
    ) -> None:
        self.config = config
        self.executor = executor
        self.history = history
        self.clock = clock
        self._sink = emit
        self.meter = meter or Meter()
        self._decisions = decisions
        self.assumed = tuple(assumed)  # facts held from the start (replay --assume hold)
        self.hooks = dict(hooks or {})
        self.matchers = matchers or MatcherCache()
        self.board = SignalBoard([], matchers=self.matchers)
        self.evidence = Evidence()  # the last lines of each source, for the matched step of a fix
        self.rules = Rules()
        self.playbooks: dict[str, Playbook] = {}
        self.playbook_set: PlaybookSet | None = None
        self.probe_results: dict[str, ProbeResult] = {}
        self.alerts: dict[str, AlertState] = {}  # firing alerts by fingerprint (Alertmanager)
        self.metric_names: frozenset[str] = frozenset()  # metrics some condition reads
        self.deferred: list[tuple[str, Match]] = []  # fixes waiting for another fix of the same file
        self.watched_containers: frozenset[str] = frozenset()
        self.metric_containers: frozenset[str] = frozenset()
        self.started_at = self.loaded_at = self.last_check = 0.0
        self.reloads = self.reload_errors = self.core_errors = 0
        self._trigger_at: float | None = None  # read time of the line being processed
        self.fleet = CoreFleet(fleet, ids=executor.ids) if fleet is not None else None  # fleet: in suture.yaml
        self.fixes = Fixes(executor, port=port, clock=clock, started=self._validating, ended=self._report,
                           hook=self._hook)
        self._handlers: dict[type, Callable[[Any], Any]] = {
            Lines: self._lines, ProbeResult: self._probe, Metrics: self._metrics, Alerts: self._alerts,
            Containers: self._containers,
            Playbooks: self.install, EffectDone: self.fixes.effect_done, Tick: lambda t: self.tick(t.at),
            Command: lambda c: c.run(),
        }

    # -- in --

    def observe(self, observation: Observation) -> Any:
        """Take one observation (a Command's value is returned)."""
        try:
            return self._handlers[type(observation)](observation)
        except Exception as exc:
            self.core_errors += 1
            what = type(observation).__name__
            log.exception("core         error while handling %s; carrying on", what)
            self.emit("error", f"internal error while handling {what}: {type(exc).__name__}: {exc}")
            return None

    def install(self, new: Playbooks) -> None:
        """Swap in a playbook set: a new signal board and rules generation, signals carried over.

        Fixes in progress keep the playbook they started with; windows of conditions that still
        exist keep their history; a playbook whose diagnosis already holds fires.
        """
        now = self.clock()
        result, change = new.result, new.change
        board = SignalBoard(result.playbooks, previous=self.board, matchers=self.matchers)
        board.start(now)
        try:
            matches = self.rules.load(result.playbooks, facts=[*board.holding(), *self.assumed])
        except SutureError as exc:
            self.reload_errors += 1
            self.emit("reload_failed", f"playbooks not swapped in: {exc}")
            return
        self.board = board
        expected = {leaf.name for pb in result.playbooks for item in pb.validate.expect for leaf in leaves(item)
                    if isinstance(leaf, ContainerCondition)}  # judged during a fix
        self.watched_containers = frozenset(board.containers() | expected)
        self.metric_containers = metric_containers(result.playbooks)
        self.metric_names = frozenset(
            leaf.name + ("_bucket" if leaf.quantile is not None else "")
            for pb in result.playbooks for item in (pb.when, *pb.validate.expect) for leaf in leaves(item)
            if isinstance(leaf, MetricCondition))
        self.playbook_set = result
        self.playbooks = {pb.id: pb for pb in result.playbooks}
        self.loaded_at = now
        for problem in result.problems:
            log.error("%s", problem.render())
        summary = f"{len(self.playbooks)} playbook(s), version {result.version}"
        if change is not None:
            self.reloads += 1
            if change.kept or change.failed:
                self.reload_errors += 1
            self.emit("reloaded", f"{summary}: {change.describe()}", version=result.version,
                      added=change.added, updated=change.updated, removed=change.removed,
                      kept=change.kept, failed=change.failed, problems=len(result.problems))
        else:
            self.emit("loaded", summary + (f", {len(result.problems)} problem(s)" if result.problems else ""),
                      version=result.version, playbooks=sorted(self.playbooks))
        self._matched(matches, now)

    def _lines(self, batch: Lines) -> None:
        for line in batch.lines:
            if isinstance(line, Block):  # many ordinary lines at once: only the ones that match cost Python work
                results = self.board.block(line.source, line.data, line.at)
                self._judge(lambda judge: judge.observed(line.source, line.lines, line.at))  # noqa: B023
                for start, text, transitions, matched in results:
                    self.evidence.block_line(line.source, line.data, start, text, line.at, matched)
                    self._judge(lambda judge: judge.matched(line.source, matched, line.at))  # noqa: B023
                    self._apply(transitions, line.at)
            else:
                transitions, hits = self.board.line(line.source, line.text, line.at)
                self.evidence.line(line.source, line.text, line.at, hits)
                self._judge(lambda judge: judge.line(line.source, hits, line.at))  # noqa: B023
                self._apply(transitions, line.at)

    def _probe(self, result: ProbeResult) -> None:
        self.probe_results[result.name] = result
        self.last_check = result.at
        self._judge(lambda judge: judge.probe(result.name, result.healthy, result.latency_ms, result.at))
        self._apply(self.board.probe(result.name, result.healthy, result.latency_ms, result.at))

    def _metrics(self, batch: Metrics) -> None:
        """One batch (a scrape, a psutil sample): the samples of each metric some condition reads, together."""
        series: dict[tuple[str, float], list[tuple[Labels, float]]] = {}
        for s in batch.samples:
            if s.name in self.metric_names:
                series.setdefault((s.name, s.at), []).append((s.labels, s.value))
        for (name, at), samples in series.items():
            self._judge(lambda judge: judge.metrics(name, samples, at))  # noqa: B023 (called at once)
            self._apply(self.board.metrics(name, samples, at))

    def _alerts(self, batch: Alerts) -> None:
        """A webhook's alerts: kept by fingerprint while firing; a new state is an event and a transition."""
        for alert in batch.alerts:
            if keep_firing(self.alerts, alert):
                self.emit("alert", f"alert {alert.name} {alert.state} ({alert.fingerprint})",
                          fingerprint=alert.fingerprint, name=alert.name, state=alert.state)
            self._judge(lambda judge: judge.alert(alert))  # noqa: B023 (called at once)
            self._apply(self.board.alert(alert))

    def _containers(self, batch: Containers) -> None:
        for st in batch.states:
            self._judge(lambda judge: judge.container(st.name, st.state, st.restarted, st.at))  # noqa: B023
            self._apply(self.board.container(st.name, st.state, st.at, restarted=st.restarted))

    def tick(self, now: float) -> None:
        self._apply(self.board.tick(now))
        self._judge(lambda judge: judge.verdict(now), now)
        if self.fleet is not None:
            self._readmit(self.fleet, now)

    # -- signals -> rules -> decisions --

    def _apply(self, transitions: list[Transition], trigger_at: float | None = None) -> None:
        self._trigger_at = trigger_at
        try:
            for t in transitions:
                found = self.rules.assert_fact(t.fact) if t.holds else self.rules.retract_fact(t.fact)
                if found:
                    self._matched(found, self.clock())
        finally:
            self._trigger_at = None

    def _judge(self, ask: Callable[[Any], Any], now: float | None = None) -> None:
        if self.fixes.runs:
            self.fixes.judge(ask, now)

    def _matched(self, matches: list[Match], now: float) -> None:
        for match in matches:
            pb = self.playbooks.get(match.playbook_id)
            if pb is not None:
                self._try_fire(pb, match, now)

    def _try_fire(self, pb: Playbook, match: Match, now: float, *, again: bool = False) -> None:
        try:
            self._fire(pb, match, now, again=again)
        except SutureError as exc:
            self.emit("error", f"{pb.id}: {exc}", playbook_id=pb.id)
        except Exception as exc:  # one playbook's failure never keeps the others from firing
            self.core_errors += 1
            log.exception("%s: firing failed", pb.id)
            self.emit("error", f"{pb.id}: internal error: {type(exc).__name__}: {exc}", playbook_id=pb.id)

    def _fire(self, pb: Playbook, match: Match, now: float, *, again: bool = False) -> None:
        """Decide on a match and hand the decision on; ``again``: a fix the group told to wait, asked anew."""
        errors_before = sum(self.board.count(signal, key, now)
                            for signal, _, key in (f.partition("|") for f in match.facts) if signal.startswith("log-"))
        detected = tuple(leaf for leaf in leaves(pb.when) if any(f.startswith(leaf.signal + "|") for f in match.facts))
        key = f" [{match.key}]" if match.key else ""
        if not again:
            self.emit("detected", f"{pb.id}{key}: " + "; ".join(leaf.describe() for leaf in detected),
                      playbook_id=pb.id, key=match.key, errors=errors_before)
        decision = decide(pb, key=match.key, labels=match.labels, outcomes=self.history.outcomes(pb.id),
                          gate=self.history.gate(pb.id, match.key, now), threshold=self.config.threshold,
                          learning=self.config.learning, fixes_per_hour=self.config.fixes_per_hour, now=now)
        if self._trigger_at is not None and not again:
            self.meter.detection(max(0.0, self.clock() - self._trigger_at))
        decided = Decided(at=now, playbook=pb, match=match, decision=decision, errors_before=errors_before,
                          detected=detected, result=None)
        if decision.verdict == "skip":
            log.info("skip         %s%s: %s", pb.id, key, decision.reason)
            if self.fleet is not None:
                self.fleet.drop(pb.id, match.key)
            self._tell(decided)
            return
        self.meter.confidence(pb.id, decision.adjusted_confidence)
        busy = self.fixes.busy_with(pb) if decision.verdict == "apply" else None
        if busy is not None:  # fixes touching the same file run one after the other
            self.deferred.append((pb.id, match))
            self.emit("deferred", f"{pb.id}{key}: waits for {busy[0]}, which is changing {', '.join(sorted(busy[1]))}",
                      playbook_id=pb.id, waits_for=busy[0])
            self._tell(replace(decided, deferred=True))
            return
        record: dict[str, Any] = {}
        if decision.verdict == "apply" and self.fleet is not None:  # the group's say: lease, canary, caps
            asked = self.fleet.ask(pb, match.key, decision, now, match=match)
            decision, record = asked.decision, asked.record
            if asked.verdict.action == "wait":
                if asked.news:  # journaled once per reason to wait, not at every retry
                    self.emit("waiting", f"{pb.id}{key}: {decision.reason}", playbook_id=pb.id, reason=decision.reason)
                    self.start_fix(pb, decision, now, facts=match.facts, errors_before=errors_before,
                                   seen=seen(self.board, detected), evidence=self._evidence(pb), **record)
                self._tell(replace(decided, decision=decision, deferred=True))
                return
        self.emit(
            "decided",
            f"{pb.id}{key}: base confidence {pb.confidence:g}, {decision.successes} success(es) / "
            f"{decision.failures} failure(s) -> adjusted {decision.adjusted_confidence:.1f} vs threshold "
            f"{decision.threshold:g}: {decision.verdict.upper()} ({decision.reason})",
            playbook_id=pb.id, verdict=decision.verdict, adjusted=decision.adjusted_confidence,
        )
        result = self.start_fix(pb, decision, now, facts=match.facts, errors_before=errors_before,
                                seen=seen(self.board, detected), evidence=self._evidence(pb), **record)
        self.history.decided(pb.id, match.key, decision, now)
        self._tell(replace(decided, result=result))

    def _evidence(self, pb: Playbook) -> dict[str, Any]:
        return self.evidence.of(leaves(pb.when), self.board, self.probe_results, self.alerts)

    def _tell(self, decided: Decided) -> None:
        if self._decisions is not None:
            self._decisions(decided)

    def start_fix(self, pb: Playbook, decision: Decision, now: float, **record: Any) -> FixRun | Outcome | str:
        """Hand a decision to the executor (an Outcome; a FixRun in its window; a fix id while effects run).

        An ``apply`` the group has not seen yet (a person's approval) asks it here; told to wait, it is
        recorded as skipped with the reason (a person approves once; nothing is parked)."""
        if decision.verdict == "apply" and self.fleet is not None and "fix_id" not in record:
            asked = self.fleet.ask(pb, decision.key, decision, now)
            decision, record = asked.decision, {**record, **asked.record}
        return self.fixes.start(pb, decision, now, **record)

    def _readmit(self, fleet: CoreFleet, now: float) -> None:
        """Ask the group again for the fixes it told to wait, while their diagnosis holds."""
        due = fleet.due(now)
        if not due:
            return
        held = {f.id for f in self.rules.facts()} | {Fact(signal=READY_SIGNAL).id}
        for pb_id, match in due:
            pb = self.playbooks.get(pb_id)
            if pb is None or not set(match.facts) <= held:
                fleet.drop(pb_id, match.key)
                continue
            self._try_fire(pb, match, now, again=True)

    def outcomes(self, playbook_id: str) -> Outcomes:
        return self.history.outcomes(playbook_id)

    def _validating(self, run: FixRun) -> None:
        for kind, message, data in validating_events(run):
            self.emit(kind, message, **data)

    def _report(self, outcome: Outcome, started_at: float | None = None, settled: bool = True) -> None:
        if self.fleet is not None:  # first: a canary's end lets the replicas waiting for it act
            self.fleet.ended(outcome)
        self.meter.fix(outcome.playbook_id, outcome.status)
        if started_at is not None:
            self.meter.fix_duration(max(0.0, self.clock() - started_at))
        self.emit(outcome.status, f"{outcome.fix_id} ({outcome.playbook_id}): {outcome.detail}",
                  fix_id=outcome.fix_id, playbook_id=outcome.playbook_id, status=outcome.status,
                  backup_id=outcome.backup_id)
        if outcome.suspended:
            self.emit("suspended", f"{outcome.playbook_id}: suspended after too many failed attempts; "
                      f"`suture resume {outcome.playbook_id}` lets it act again", playbook_id=outcome.playbook_id)
        if settled:  # a fix that was applying or validating ended: the fixes waiting for its files may go
            self._retry_deferred(self.clock())

    def _retry_deferred(self, now: float) -> None:
        """Fire again the fixes that waited for a file, if their diagnosis still holds."""
        waiting, self.deferred = self.deferred, []
        held = {f.id for f in self.rules.facts()} | {Fact(signal=READY_SIGNAL).id}
        for pb_id, match in waiting:
            pb = self.playbooks.get(pb_id)
            if pb is not None and set(match.facts) <= held:
                self._fire(pb, match, now)

    def rollback_by_person(self, backup_id: str, *, force: bool, by: str) -> tuple[list[str], Outcome | None]:
        """A person restores a backup; a fix still validating it ends here, rolled back by ``by``.

        Its on_rollback runs inline: a person's rollback answers with its outcome (the one wait on the core).
        """
        now = self.clock()
        run = self.fixes.run_of_backup(backup_id)
        result, outcome = self.executor.rollback_backup(backup_id, now, force=force, by=by,
                                                        playbook=run.playbook if run else None)
        if run is not None and outcome is not None:
            self.fixes.runs.remove(run)
        if outcome is not None:
            self._report(outcome)
        return list(result.restored), outcome

    # -- out --

    def emit(self, kind: str, message: str, **data: Any) -> None:
        event = Event(kind=kind, at=self.clock(), message=clean(message), data=data)
        try:
            self._sink(event)
        except Exception:  # whoever listens must never stop the core
            log.exception("event sink failed")

    def snapshot(self) -> Snapshot:
        """The public view of the core now (call it on the core's thread)."""
        return core_snapshot(self)

    def _hook(self, name: str, *args: Any) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook(*args)

    def shutdown(self) -> None:
        if self.fleet is not None:
            self.fleet.stopping = True
        self.fixes.shutdown(self.clock())
        self.rules.close()

