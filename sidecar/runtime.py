"""The running sidecar: threads that wait on the world, one core that thinks.

    tailer thread ──lines──┐
    probe threads ─results─┼──► queue ──► core (the caller's thread):
    api thread ──commands──┘              signals → rules → decide → executor
                                          validation windows, recovery, history

Only the core touches the engine (rules, store, executor), so nothing there
needs a lock. The tailer hands each batch over and waits for the core to
finish it before advancing its checkpoint, which is also the backpressure:
a busy core slows reading, it never drops lines.

Stop: SIGINT/SIGTERM set ``stop``; every loop waits on that event, never
sleeps; the core rolls back a fix still in its validation window (a window
cut short is never a pass) and closes the history.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import watchfiles
from suture.engine.actions import EffectRunner
from suture.engine.backup import BackupStore
from suture.engine.catalog import Catalog, Reload
from suture.engine.config import Config
from suture.engine.decide import Decision, Outcomes, decide
from suture.engine.errors import ActionError, SutureError
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.fleet import FleetHistory, export_history
from suture.engine.loader import PlaybookSet
from suture.engine.playbook import ContainerCondition, LogCondition, MetricCondition, Playbook, leaves
from suture.engine.rules import READY_SIGNAL, Fact, Match, Rules
from suture.engine.store import Store
from suture.engine.validation import Judge, Judgement

from .effects import Effects
from .signals import MatcherCache, SignalBoard, Transition
from .snapshot import ConditionView, RunView, Snapshot, SourceView
from .sources.base import Block, Line, MetricSample, ProbeResult
from .sources.container_logs import ContainerLogSource, LogPositions
from .sources.containers import ContainerState, ContainerStats, ContainerWatcher, metric_containers
from .sources.files import Checkpoints, FileSource
from .sources.metrics import MetricsSampler
from .sources.probes import Probe, build_probe, probe_registry
from .telemetry import Telemetry

log = logging.getLogger("suture")

TICK = 0.5  # seconds between window/validation checks when nothing arrives
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ALERTS = frozenset({"proposed", "rolled_back", "conflict", "suspended", "exhausted", "inconclusive", "failed"})
RESCAN = 1.0  # seconds between glob rescans when the file watcher is quiet
# watchfiles wakes every `step` ms to look for events: the trade between detection latency
# and CPU. Measured here: step 5 ms cost ~2% of a core when idle; step 30 ms keeps detection
# p99 ~45 ms and the tailer ~3% of a core at 1,000 lines/s; step 50 ms pushes p99 to ~100 ms.
TAIL_STEP_MS, TAIL_DEBOUNCE_MS = 40, 40
TRIM_EVERY = 30.0  # seconds between handing freed heap back to the OS (malloc_trim)
CHECKPOINT_SYNC = 5.0  # seconds between fsync'd saves of the read positions
FLEET_REFRESH = 30.0  # seconds between re-reads of the fleet's exports
RELOAD_RESCAN = 5.0  # seconds between playbook folder rescans when no event arrives


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something a person would want to read about, as it happens."""

    kind: str  # detected, decided, backed_up, applied, validating, succeeded, rolled_back, ...
    at: float
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], None]


@dataclass(slots=True)
class _Batch:
    source: str
    lines: list[Line]
    done: threading.Event = field(default_factory=threading.Event)


class Sidecar:
    """One sidecar: construct, then ``run()`` until ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        effects: EffectRunner | None = None,
        listeners: Sequence[Listener] = (),
        stop: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        hooks: Mapping[str, Callable[..., None]] | None = None,
    ) -> None:
        self.config = config
        self.hooks = dict(hooks or {})  # executor kill points, for the crash-recovery harness
        self.env = dict(os.environ if env is None else env)
        self.clock = clock
        self.stop = stop or threading.Event()
        self.listeners = list(listeners)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=64)
        self.store: Store | None = None
        self.executor: Executor | None = None
        self._own_effects = effects is None
        self.effects: EffectRunner = effects if effects is not None else Effects(config, stop=self.stop, clock=clock, env=self.env)
        self._watched_containers: frozenset[str] = frozenset()
        self._metric_containers: frozenset[str] = frozenset()  # containers whose CPU and memory conditions read
        self.rules = Rules()
        self.matchers = MatcherCache()
        self.board = SignalBoard([], matchers=self.matchers)
        self.playbooks: dict[str, Playbook] = {}
        self.playbook_set: PlaybookSet | None = None
        self.runs: list[FixRun] = []
        self.deferred: list[tuple[str, Match]] = []  # fixes waiting for another fix of the same file
        self.probe_results: dict[str, ProbeResult] = {}
        self.catalog: Catalog | None = None
        self.started_at = 0.0
        self.loaded_at = 0.0
        self.last_check = 0.0
        self.reloads = 0
        self.reload_errors = 0
        self.core_errors = 0  # exceptions the core survived (see _survive); each is logged with its traceback
        self.thread_restarts = 0
        self.ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._catalog_lock = threading.Lock()
        self._wake_lock = threading.Lock()
        # the last events, numbered, for the dashboard's live stream (waiters use events_changed)
        self.recent_events: deque[tuple[int, Event]] = deque(maxlen=500)
        self.events_seq = 0
        self.events_changed = threading.Condition()
        self._wakers: list[threading.Event] = []
        self._trigger_at: float | None = None  # read time of the line being processed
        self._checkpoint_synced = 0.0
        self._trimmed_at = 0.0
        self.telemetry = Telemetry(self)
        self.api_url: str | None = None  # set by sidecar.transport.serve
        self.fleet: FleetHistory | None = None  # other sidecars' outcomes (learning.fleet), when configured
        self._fleet_read_at = 0.0
        self._sources: dict[str, FileSource] = {}
        self._container_logs: dict[str, ContainerLogSource] = {}

    # -- events --

    def emit(self, kind: str, message: str, **data: Any) -> None:
        # text from the watched system (group keys from log lines) may hold terminal escapes or NULs
        message = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", message)
        event = Event(kind=kind, at=self.clock(), message=message, data=data)
        level = logging.WARNING if kind in ALERTS or kind in ("error", "reload_failed") else logging.INFO
        log.log(level, "%-12s %s", kind, message)
        with self.events_changed:
            self.events_seq += 1
            self.recent_events.append((self.events_seq, event))
            self.events_changed.notify_all()
        if kind in ALERTS and self.config.notify_webhook and isinstance(self.effects, Effects):
            body = {"source": "suture", "kind": kind, "message": message, "at": event.at,
                    **{k: v for k, v in data.items() if isinstance(v, (str, int, float, bool)) or v is None}}
            self.effects.notifier().send(body)  # queued; never blocks the core
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a listener must never stop the sidecar
                log.exception("event listener failed")

    # -- start-up --

    def open(self) -> None:
        """Open the history, recover unfinished fixes, load playbooks (no threads yet)."""
        cfg = self.config
        cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store = Store.open(cfg.db_path)
        self.executor = Executor(
            config=cfg, store=self.store, backups=BackupStore(cfg.state_dir / "backups"), effects=self.effects,
            hooks=self.hooks,
        )
        removed = self.executor.prune_backups(self.clock())
        if removed:
            log.info("backups      pruned %d old backup(s) (keep_last %d, keep_days %g)", len(removed),
                     cfg.backups_keep_last, cfg.backups_keep_days)
        for outcome in self.executor.recover(self.clock()):
            self.emit("recovered", f"{outcome.fix_id} ({outcome.playbook_id}): {outcome.status}: {outcome.detail}",
                      fix_id=outcome.fix_id, status=outcome.status)
        if cfg.fleet:
            self.fleet = FleetHistory(Path(cfg.fleet), cfg.name)
            self._share_history()
        self.catalog = Catalog(cfg.playbooks, cfg)
        result, _ = self.catalog.refresh()
        self.install(result)

    def install(self, result: PlaybookSet, change: Reload | None = None) -> None:
        """Swap in a playbook set: a new signal board and rules generation, signals carried over.

        Fixes in progress keep the playbook they started with; windows of conditions that
        still exist keep their history; a playbook whose diagnosis already holds fires.
        """
        now = self.clock()
        board = SignalBoard(result.playbooks, previous=self.board, matchers=self.matchers)
        board.start(now)
        try:
            matches = self.rules.load(result.playbooks, facts=board.holding())
        except SutureError as exc:
            self.reload_errors += 1
            self.emit("reload_failed", f"playbooks not swapped in: {exc}")
            return
        self.board = board
        self._watched_containers = frozenset(board.containers() | _expected_containers(result.playbooks))
        self._metric_containers = metric_containers(result.playbooks)
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
        self._handle_matches(matches, now)

    # -- the core --

    def run(self) -> int:
        """Run until ``stop`` is set; return the exit code."""
        self.open()
        self.started_at = self.clock()
        self._start_threads()
        self.ready.set()
        last_tick = 0.0
        try:
            while not self.stop.is_set():
                try:
                    item = self.queue.get(timeout=TICK)
                except queue.Empty:
                    item = None
                if item is not None:
                    self._survive("handling an observation", self._handle, item)
                now = self.clock()
                if now - last_tick >= TICK:
                    last_tick = now
                    self._survive("checking windows and validations", self.tick, now)
        finally:
            self.shutdown()
        return 0

    def _survive(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """Run one step of the core; an exception ends that step, never the core (SAFETY 13).

        Fixes end themselves (the executor turns any error into a final state); this is the last
        line, for a bug in the glue around them: logged with its traceback, counted, alerted.
        """
        try:
            fn(*args)
        except Exception as exc:
            self.core_errors += 1
            log.exception("core         error while %s; carrying on", what)
            with contextlib.suppress(Exception):
                self.emit("error", f"internal error while {what}: {type(exc).__name__}: {exc}")

    def _handle(self, item: Any) -> None:
        if isinstance(item, _Batch):
            try:
                for line in item.lines:
                    if isinstance(line, Block):
                        self.observe_block(line)
                    else:
                        self.observe_line(line)
            finally:
                item.done.set()
        elif isinstance(item, ProbeResult):
            self.observe_probe(item)
        elif isinstance(item, list) and item and isinstance(item[0], MetricSample):
            self.observe_metrics(item)
        elif isinstance(item, list) and item and isinstance(item[0], ContainerState):
            self.observe_containers(item)
        elif callable(item):
            item()

    def _judges(self, ask: Callable[[Judge], Judgement | None], now: float | None = None) -> None:
        """``ask`` every fix in its validation window; a final verdict settles it, a judge that raises fails it."""
        for run in list(self.runs):
            try:
                self._hook("judge", run.fix_id)
                verdict = ask(run.judge)
            except Exception as exc:  # a bug in judging says nothing about the fix: it ends failed, rolled back
                assert self.executor is not None
                self.runs.remove(run)
                self._report(self.executor.crashed(run.fix_id, run.playbook, "validating the fix", exc, self.clock()))
                self._retry_deferred(self.clock())
                continue
            if verdict is not None and verdict.final:
                self._conclude(run, verdict, self.clock() if now is None else now)

    def _hook(self, name: str, *args: Any) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook(*args)

    def observe_line(self, line: Line) -> None:
        transitions, matched = self.board.line(line.source, line.text, line.at)
        self._judges(lambda judge: judge.line(line.source, matched, line.at))
        self._trigger_at = line.at
        try:
            for t in transitions:
                self._apply_transition(t)
        finally:
            self._trigger_at = None

    def source_counters(self) -> dict[str, dict[str, int]]:
        """Counters of every followed source, files and containers alike, by the file tailer's names."""
        out = {name: dict(tail.stats) for name, tail in dict(self._sources).items()}
        out.update({name: follower.counters() for name, follower in dict(self._container_logs).items()})
        return out

    def observe_block(self, block: Block) -> None:
        """Many ordinary lines at once: scanned whole; only the lines that match cost Python work."""
        results = self.board.block(block.source, block.data, block.at)
        self._judges(lambda judge: judge.observed(block.source, block.lines, block.at))
        self._trigger_at = block.at
        try:
            for _text, transitions, matched in results:
                self._judges(lambda judge: judge.matched(block.source, matched, block.at))  # noqa: B023 (called at once)
                for t in transitions:
                    self._apply_transition(t)
        finally:
            self._trigger_at = None

    def observe_probe(self, result: ProbeResult) -> None:
        self.probe_results[result.name] = result
        self.last_check = result.at
        self._judges(lambda judge: judge.probe(result.name, result.healthy, result.latency_ms, result.at))
        for t in self.board.probe(result.name, result.healthy, result.latency_ms, result.at):
            self._apply_transition(t)

    def tick(self, now: float) -> None:
        if now - self._trimmed_at >= TRIM_EVERY:
            self._trimmed_at = now
            _trim_heap()
        if self.fleet is not None and now - self._fleet_read_at >= FLEET_REFRESH:
            self._fleet_read_at = now
            self.fleet.refresh()
        for t in self.board.tick(now):
            self._apply_transition(t)
        self._judges(lambda judge: judge.verdict(now), now)

    def _apply_transition(self, t: Transition) -> None:
        found = self.rules.assert_fact(t.fact) if t.holds else self.rules.retract_fact(t.fact)
        if found:
            self._handle_matches(found, self.clock())

    # -- decisions and fixes --

    def _handle_matches(self, matches: list[Match], now: float) -> None:
        for match in matches:
            pb = self.playbooks.get(match.playbook_id)
            if pb is None or self.store is None or self.executor is None:
                continue
            try:
                self._fire(pb, match, now)
            except SutureError as exc:
                self.emit("error", f"{pb.id}: {exc}", playbook_id=pb.id)
            except Exception as exc:  # one playbook's failure never keeps the others from firing
                self.core_errors += 1
                log.exception("%s: firing failed", pb.id)
                self.emit("error", f"{pb.id}: internal error: {type(exc).__name__}: {exc}", playbook_id=pb.id)

    def _errors_before(self, match: Match, now: float) -> int:
        total = 0
        for fact_id in match.facts:
            signal, _, key = fact_id.partition("|")
            if signal.startswith("log-"):
                total += self.board.count(signal, key, now)
        return total

    def _fire(self, pb: Playbook, match: Match, now: float) -> None:
        assert self.store is not None and self.executor is not None
        errors_before = self._errors_before(match, now)
        what = "; ".join(
            leaf.describe() for leaf in leaves(pb.when) if any(f.startswith(leaf.signal + "|") for f in match.facts)
        )
        key = f" [{match.key}]" if match.key else ""
        self.emit("detected", f"{pb.id}{key}: {what}", playbook_id=pb.id, key=match.key, errors=errors_before)
        gate = self.store.gate(pb.id, match.key, now)
        decision = decide(
            pb,
            key=match.key,
            labels=match.labels,
            outcomes=self.outcomes(pb.id),
            gate=gate,
            threshold=self.config.threshold,
            learning=self.config.learning,
            fixes_per_hour=self.config.fixes_per_hour,
            now=now,
        )
        if self._trigger_at is not None:
            self.telemetry.detection.observe(max(0.0, self.clock() - self._trigger_at))
        if decision.verdict == "skip":
            log.info("skip         %s%s: %s", pb.id, key, decision.reason)
            return
        self.telemetry.confidence.labels(pb.id).set(decision.adjusted_confidence)
        if decision.verdict == "apply":
            busy = self.busy_with(pb)
            if busy is not None:  # fixes touching the same file run one after the other
                self.deferred.append((pb.id, match))
                shared = ", ".join(sorted(set(busy.playbook.files()) & set(pb.files())))
                self.emit("deferred", f"{pb.id}{key}: waits for {busy.fix_id}, which is validating a change to "
                          f"{shared}", playbook_id=pb.id, waits_for=busy.fix_id)
                return
        self.emit(
            "decided",
            f"{pb.id}{key}: base confidence {pb.confidence:g}, {decision.successes} success(es) / "
            f"{decision.failures} failure(s) -> adjusted {decision.adjusted_confidence:.1f} vs threshold "
            f"{decision.threshold:g}: {decision.verdict.upper()} ({decision.reason})",
            playbook_id=pb.id, verdict=decision.verdict, adjusted=decision.adjusted_confidence,
        )
        self.start_fix(pb, decision, now, facts=match.facts, errors_before=errors_before)

    def start_fix(self, pb: Playbook, decision: Decision, now: float, **record: Any) -> FixRun | Outcome:
        """Hand a decision to the executor; an applied fix enters its validation window."""
        assert self.executor is not None
        result = self.executor.start(pb, decision, now=now, **record)
        if isinstance(result, Outcome):
            self._report(result)
            return result
        if result.manifest is not None:
            self.emit("backed_up", f"{result.fix_id}: backup {result.manifest.id} "
                      f"({len(result.manifest.files)} file(s), sha256 recorded)",
                      fix_id=result.fix_id, backup_id=result.manifest.id)
        for change in result.plan.changes:
            self.emit("applied", f"{result.fix_id}: {change.file} {change.target}: {change.old} -> {change.new}",
                      fix_id=result.fix_id, file=change.file, old=change.old, new=change.new)
        for action in result.plan.effects:
            self.emit("applied", f"{result.fix_id}: {action.describe()}", fix_id=result.fix_id)
        v = pb.validate
        self.emit("validating", f"{result.fix_id}: watching for {v.window:g}s (settle {v.settle:g}s)",
                  fix_id=result.fix_id, window=v.window)
        self.runs.append(result)
        return result

    def outcomes(self, playbook_id: str) -> Outcomes:
        """This playbook's recorded results: this sidecar's history plus the fleet's, if shared."""
        assert self.store is not None
        local = self.store.outcomes(playbook_id)
        fleet = self.fleet.outcomes(playbook_id) if self.fleet is not None else (0, 0)
        return replace(local, fleet_successes=fleet[0], fleet_failures=fleet[1])

    def busy_with(self, pb: Playbook) -> FixRun | None:
        """The fix in its validation window that touches one of ``pb``'s files, if any."""
        return next((r for r in self.runs if set(r.playbook.files()) & set(pb.files())), None)

    def rollback_by_person(self, backup_id: str, *, force: bool, by: str) -> tuple[list[str], Outcome | None]:
        """A person restores a backup (on the core); a fix still validating it ends here, rolled back by ``by``."""
        assert self.executor is not None
        now = self.clock()
        run = next((r for r in self.runs if r.manifest is not None and r.manifest.id == backup_id), None)
        result, outcome = self.executor.rollback_backup(backup_id, now, force=force, by=by,
                                                        playbook=run.playbook if run else None)
        if run is not None and outcome is not None:
            self.runs.remove(run)
        if outcome is not None:
            self._report(outcome)
            self._retry_deferred(now)
        return list(result.restored), outcome

    def _conclude(self, run: FixRun, verdict: Judgement, now: float) -> None:
        assert self.executor is not None
        self.runs.remove(run)
        outcome = self.executor.settle(run, verdict, now)
        self.telemetry.fix_duration.observe(max(0.0, now - run.started_at))
        self._report(outcome)
        self._retry_deferred(now)

    def _retry_deferred(self, now: float) -> None:
        """Fire again the fixes that waited for a file, if their diagnosis still holds."""
        waiting, self.deferred = self.deferred, []
        held = {f.id for f in self.rules.facts()} | {Fact(signal=READY_SIGNAL).id}
        for pb_id, match in waiting:
            pb = self.playbooks.get(pb_id)
            if pb is not None and set(match.facts) <= held:
                self._fire(pb, match, now)

    def _share_history(self) -> None:
        """Write this sidecar's export to the fleet folder and re-read the others' (learning.fleet)."""
        if self.fleet is None or self.store is None:
            return
        try:
            export_history(self.store, self.fleet.folder, self.config.name)
        except SutureError as exc:
            log.warning("fleet        cannot export to %s: %s", self.fleet.folder, exc)
        self.fleet.refresh()
        self._fleet_read_at = self.clock()

    def _report(self, outcome: Outcome) -> None:
        self.telemetry.fixes.labels(outcome.playbook_id, outcome.status).inc()
        if self.fleet is not None:
            self._share_history()
        self.emit(outcome.status, f"{outcome.fix_id} ({outcome.playbook_id}): {outcome.detail}",
                  fix_id=outcome.fix_id, playbook_id=outcome.playbook_id, status=outcome.status,
                  backup_id=outcome.backup_id)
        if outcome.suspended:
            self.emit("suspended", f"{outcome.playbook_id}: suspended after too many failed attempts; "
                      f"`suture resume {outcome.playbook_id}` lets it act again",
                      playbook_id=outcome.playbook_id)

    # -- threads --

    def _start_threads(self) -> None:
        if self.store is None:
            return
        checkpoints = Checkpoints(self.config.state_dir / "checkpoints.json")
        for name, src in self.config.sources.items():
            if src.file:
                self._sources[name] = FileSource(
                    name, src.file, checkpoints=checkpoints, max_line_bytes=self.config.max_line_bytes, blocks=True
                )
        # One poll round here, on the core, before `ready`: it fixes where each file starts
        # (its end on a first start) so nothing appended after start-up is taken for history.
        for source in self._sources.values():
            for line in source.poll():
                if isinstance(line, Block):
                    self.observe_block(line)
                else:
                    self.observe_line(line)
            source.commit()
        checkpoints.save()
        if self._sources:
            self._spawn("tailer", self._tail_loop, checkpoints)
        self._spawn("reload", self._reload_loop)
        self._spawn("metrics", self._metrics_loop)
        self._spawn("containers", self._container_loop)
        self._spawn("container-metrics", self._container_metrics_loop)
        positions = LogPositions(self.config.state_dir / "container-logs.json")
        for name, src in self.config.sources.items():
            if src.container:
                follower = ContainerLogSource(name, src.container, self._docker_client, positions=positions,
                                              clock=self.clock, max_line_bytes=self.config.max_line_bytes)
                self._container_logs[name] = follower
                self._spawn(f"container-logs-{name}", self._container_log_loop, follower)
        probes = probe_registry(self.env)
        for cfg in self.config.probes.values():
            try:
                probe = build_probe(cfg, probes)
            except KeyError as exc:
                self.emit("error", f"probe {cfg.name}: {exc.args[0]}")
                continue
            self._spawn(f"probe-{cfg.name}", self._probe_loop, probe)

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=self._guard, args=(name, target, *args), name=f"suture-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guard(self, name: str, target: Callable[..., None], *args: Any) -> None:
        """Run a thread's loop; if it raises, log it, wait (1 s, doubling to 60 s) and run it again.

        A source that meets input nobody foresaw must not blind the sidecar, let alone stop it.
        """
        delay = 1.0
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                target(*args)
                return
            except Exception as exc:
                self.thread_restarts += 1
                log.exception("thread %s failed; restarting it in %.0fs", name, delay)
                with contextlib.suppress(Exception):
                    self.emit("error", f"thread {name} failed ({type(exc).__name__}: {exc}); restarting it")
            if time.monotonic() - began > 60:
                delay = 1.0  # it ran a good while: a fresh failure, not a loop
            if self.stop.wait(delay):
                return
            delay = min(delay * 2, 60.0)

    def _tail_loop(self, checkpoints: Checkpoints) -> None:
        dirs = sorted({d for s in self._sources.values() for d in s.watch_dirs()})
        self._drain_sources(checkpoints)
        if not dirs:
            while not self.stop.wait(RESCAN):
                self._drain_sources(checkpoints)
            return
        for _changes in watchfiles.watch(
            *dirs, stop_event=self.stop, debounce=TAIL_DEBOUNCE_MS, step=TAIL_STEP_MS, rust_timeout=int(RESCAN * 1000),
            yield_on_timeout=True, raise_interrupt=False,
        ):
            self._drain_sources(checkpoints)

    def _reload_loop(self) -> None:
        """Watch the playbook folder; hand every changed, re-read set to the core."""
        folder = self.config.playbooks
        while not self.stop.is_set() and not folder.is_dir():
            self.stop.wait(RELOAD_RESCAN)
        # Editors that save by rename and ConfigMap `..data` symlink swaps are both changes in
        # the folder; the periodic rescan (rust_timeout) catches anything the events miss.
        for _changes in watchfiles.watch(
            folder, stop_event=self.stop, debounce=100, step=100, rust_timeout=int(RELOAD_RESCAN * 1000),
            yield_on_timeout=True, raise_interrupt=False, watch_filter=None,
        ):
            self.check_playbooks()

    def check_playbooks(self) -> Reload | None:
        """Re-read the playbook folder (off the core); queue the swap if anything changed."""
        if self.catalog is None:
            return None
        with self._catalog_lock:
            result, change = self.catalog.refresh()
        if change is not None:
            self.matchers.prepare(result.playbooks)  # compile here, not on the core
            self._put(lambda: self.install(result, change))
        return change

    def _drain_sources(self, checkpoints: Checkpoints) -> None:
        """Poll every source until nothing is left, handing each batch to the core."""
        busy = True
        while busy and not self.stop.is_set():
            busy = False
            for name, source in self._sources.items():
                lines = source.poll()
                busy = busy or bool(lines) or source.backlog
                if lines:
                    batch = _Batch(name, lines)
                    if not self._put(batch) or not self._wait(batch.done):
                        return  # stopping: the batch is not committed, so it is read again next start
                source.commit()  # also records resets (truncation, rotation) seen by an empty poll
            # after every batch, so a killed process restarts exactly there; fsync'd now and then,
            # for power cuts (an fsync per batch cost ~8% of a core at 1,000 lines/s)
            durable = time.monotonic() - self._checkpoint_synced >= CHECKPOINT_SYNC
            checkpoints.save(durable=durable)
            if durable:
                self._checkpoint_synced = time.monotonic()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=TICK)
                return True
            except queue.Full:
                continue
        return False

    def _wait(self, done: threading.Event) -> bool:
        while not self.stop.is_set():
            if done.wait(TICK):
                return True
        return done.is_set()

    def _probe_loop(self, probe: Probe) -> None:
        while not self.stop.is_set():
            result = probe.check(self.clock())
            self._put(result)
            if self._nap(probe.interval):
                return

    def _nap(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if someone asks for a check now; True when stopping."""
        waker = threading.Event()
        with self._wake_lock:
            self._wakers.append(waker)
        try:
            deadline = time.monotonic() + seconds
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                # slices of a second at most, so a stop set by a signal handler is seen promptly
                if left <= 0 or waker.wait(min(left, 1.0)):
                    break
            return self.stop.is_set()
        finally:
            with self._wake_lock:
                self._wakers.remove(waker)

    def check_now(self, timeout: float = 10.0) -> dict[str, Any]:
        """Sample every probe and metric now, wait for the results, and evaluate the rules (trigger-check)."""
        asked = self.clock()
        with self._wake_lock:
            for waker in self._wakers:
                waker.set()
        deadline = time.monotonic() + min(timeout, max((p.timeout for p in self.config.probes.values()), default=0) + 2)
        while time.monotonic() < deadline and not self.stop.is_set():
            if all(r.at >= asked for name, r in self.probe_results.items() if name in self.config.probes) and \
                    len(self.probe_results) >= len(self.config.probes):
                break
            self.stop.wait(0.05)
        self.call(lambda: self.tick(self.clock()))
        fresh = sorted(n for n, r in self.probe_results.items() if r.at >= asked)
        return {"probes": fresh, "asked_at": asked, "signals_active": len(self.board.holding())}

    def _metrics_loop(self) -> None:
        sampler = MetricsSampler(processes=self.config.processes)
        while not self.stop.is_set():
            samples = sampler.sample(self.clock())
            if samples:
                self._put(samples)
            if self._nap(self.config.metrics_interval):
                return

    def _container_loop(self) -> None:
        """Poll the containers that conditions name (the set follows reloads); no engine, no polling."""
        watcher: ContainerWatcher | None = None
        while not self.stop.is_set():
            names = self._watched_containers
            if names:
                if watcher is None or set(watcher.names) != names:
                    try:
                        client = self._docker_client()
                    except ActionError as exc:
                        self.emit("error", f"containers {', '.join(sorted(names))} cannot be watched: {exc}")
                        if self.stop.wait(60):
                            return
                        continue
                    watcher = ContainerWatcher(client, sorted(names))
                self._put(watcher.poll(self.clock()))
            if self.stop.wait(self.config.metrics_interval):
                return

    def _container_log_loop(self, source: ContainerLogSource) -> None:
        """Follow one container's logs; each batch goes to the core like a file's, then its position is kept."""
        batches = source.batches(self.stop)
        try:
            for lines in batches:
                batch = _Batch(source.name, lines)
                if not self._put(batch) or not self._wait(batch.done):
                    return  # stopping: the position is not moved, so the batch is read again next start
                source.commit()
        finally:
            batches.close()

    def _container_metrics_loop(self) -> None:
        """CPU and memory of the containers metric conditions name (the set follows reloads)."""
        stats = ContainerStats(self._docker_client)
        while not self.stop.is_set():
            names = self._metric_containers
            samples = stats.sample(names, self.clock()) if names else []
            if samples:
                self._put(samples)
            if self._nap(self.config.metrics_interval):
                return

    def _docker_client(self) -> Any:
        runner = self.effects
        if isinstance(runner, Effects):
            return runner.docker()
        raise ActionError("no container engine configured")

    def observe_metrics(self, samples: list[MetricSample]) -> None:
        for sample in samples:
            self._judges(lambda judge: judge.metric(sample.name, sample.value, sample.at))  # noqa: B023 (called at once)
            for t in self.board.metric(sample.name, sample.value, sample.at):
                self._apply_transition(t)

    def observe_containers(self, states: list[ContainerState]) -> None:
        for st in states:
            self._judges(lambda judge: judge.container(st.name, st.state, st.restarted, st.at))  # noqa: B023 (called at once)
            for t in self.board.container(st.name, st.state, st.at, restarted=st.restarted):
                self._apply_transition(t)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the core thread and return its result (for the API)."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def task() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        if not self._put(task) or not done.wait(timeout):
            raise TimeoutError("the sidecar did not answer in time")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    # -- what it looks like --

    def snapshot(self, timeout: float = 5.0) -> Snapshot:
        """The public view (telemetry, API, dashboard): the core's part built on the core thread."""
        core = self.call(self._core_view, timeout=timeout) if self.ready.is_set() and not self.stop.is_set() \
            else self._core_view()
        sources: dict[str, SourceView] = {}
        for name, tail in dict(self._sources).items():
            sources[name] = SourceView(name=name, kind="file", counters=dict(tail.stats))
        for name, follower in dict(self._container_logs).items():
            sources[name] = SourceView(name=name, kind="container", counters=follower.counters(),
                                       state=follower.state, detail=follower.stats.detail)
        return replace(core, running=self.ready.is_set() and not self.stop.is_set(),
                       thread_restarts=self.thread_restarts, events_seq=self.events_seq, sources=sources)

    def _core_view(self) -> Snapshot:
        now = self.clock()
        board = self.board
        owners: dict[str, list[str]] = {}
        matches: dict[tuple[str, str], int] = {}
        for pb in self.playbooks.values():
            for leaf in leaves(pb.when):
                owners.setdefault(leaf.signal, []).append(pb.id)
                if isinstance(leaf, LogCondition):
                    shared = board.matches.get((leaf.source, leaf.pattern, leaf.group_by))
                    matches[(pb.id, leaf.at.path)] = shared.total if shared else 0
        conditions: list[ConditionView] = []
        for signal, entry in board.sustained.items():
            leaf = entry.leaf
            kind = "metric" if isinstance(leaf, MetricCondition) else "container" \
                if isinstance(leaf, ContainerCondition) else "probe"
            conditions.append(ConditionView(
                signal=signal, kind=kind, subject=getattr(leaf, "name", ""), condition=leaf.describe(),
                playbooks=tuple(owners.get(signal, ())), holding=entry.holding,
                pending=entry.good_since is not None and not entry.holding))
        for signal, window in board.logs.items():
            log_leaf = window.leaf
            keys = list(itertools.islice(window.matches.times, 100)) or [""]
            conditions.append(ConditionView(
                signal=signal, kind="log", subject=log_leaf.source, condition=log_leaf.describe(),
                playbooks=tuple(owners.get(signal, ())), holding=bool(window.holding),
                count=max(window.count(key, now) for key in keys), at_least=log_leaf.at_least,
                at_most=log_leaf.at_most))
        runs = tuple(RunView(fix_id=r.fix_id, playbook_id=r.playbook.id, phase="validating", started_at=r.started_at,
                             ends_at=r.judge.ends_at, backup_id=r.manifest.id if r.manifest else None)
                     for r in self.runs)
        ps = self.playbook_set
        return Snapshot(
            at=now, started_at=self.started_at, loaded_at=self.loaded_at, last_check=self.last_check, running=True,
            version=ps.version if ps else None, playbooks=dict(self.playbooks),
            problems=len(ps.problems) if ps else 0, probes=dict(self.probe_results), runs=runs,
            conditions=tuple(conditions), signals_active=len(board.holding()), condition_matches=matches,
            deferred=len(self.deferred), reloads=self.reloads, reload_errors=self.reload_errors,
            core_errors=self.core_errors)

    # -- stopping --

    def shutdown(self) -> None:
        self.stop.set()
        now = self.clock()
        for run in list(self.runs):
            self.runs.remove(run)
            if self.executor is not None:
                outcome = self.executor.settle(run, Judgement(state="failed", reason="suture stopped during the validation window"), now)
                self._report(outcome)
        for thread in self._threads:
            thread.join(timeout=2.0)
        for source in self._sources.values():
            source.close()
        if self._own_effects and isinstance(self.effects, Effects):
            self.effects.close(timeout=1.0)
        self.rules.close()
        if self.store is not None:
            self.store.close()
            self.store = None


def _expected_containers(playbooks: Sequence[Playbook]) -> set[str]:
    """Containers named by validation expectations (judged during a fix)."""
    return {leaf.name for pb in playbooks for item in pb.validate.expect for leaf in leaves(item)
            if isinstance(leaf, ContainerCondition)}


COLD_LIBRARIES = ("_duckdb",)  # big libraries used now and then: their code is paged out between uses
MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages now; dirty ones are swapped or kept, never dropped


def _trim_heap() -> None:
    """Give memory back to the OS: what Python freed (glibc keeps it otherwise; a steady few MB of RSS),
    and the code pages of cold libraries.

    DuckDB's start-up touches ~33 MB of its 66 MB library; an idle sidecar runs none of it until
    the next fix or query, which faults back in the ~20 MB it needs (minor faults, from the page
    cache). MADV_PAGEOUT is what the kernel does to those clean file pages under memory pressure,
    done early; it never discards data. On kernels without it nothing changes.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as maps:
            for entry in maps:
                fields = entry.split()
                if len(fields) > 5 and fields[1] in ("r-xp", "r--p") and any(n in fields[5] for n in COLD_LIBRARIES):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    libc.madvise(start, end - start, MADV_PAGEOUT)
