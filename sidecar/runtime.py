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

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import watchfiles

from suture.engine.actions import EffectRunner
from suture.engine.backup import BackupStore
from suture.engine.config import Config
from suture.engine.decide import decide
from suture.engine.errors import ActionError, SutureError
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.catalog import Catalog, Change
from suture.engine.loader import PlaybookSet
from suture.engine.playbook import ContainerCondition, Playbook, leaves
from suture.engine.rules import Match, Rules
from suture.engine.store import Store
from suture.engine.validation import Verdict

from .effects import Effects
from .signals import MatcherCache, SignalBoard, Transition
from .telemetry import Telemetry
from .sources.base import Line, MetricSample, ProbeResult
from .sources.containers import ContainerState, ContainerWatcher
from .sources.metrics import MetricsSampler
from .sources.files import Checkpoints, FileSource
from .sources.probes import Probe, build_probe, probe_registry

log = logging.getLogger("suture")

TICK = 0.5  # seconds between window/validation checks when nothing arrives
ALERTS = frozenset({"proposed", "rolled_back", "conflict", "suspended", "exhausted", "inconclusive", "failed"})
RESCAN = 1.0  # seconds between glob rescans when the file watcher is quiet
# watchfiles wakes every `step` ms to look for events: the trade between detection latency
# and idle CPU (step 5 ms cost ~2% of a core idle here; 20 ms adds ~15 ms to detection)
TAIL_STEP_MS, TAIL_DEBOUNCE_MS = 20, 20
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
        self.rules = Rules()
        self.matchers = MatcherCache()
        self.board = SignalBoard([], matchers=self.matchers)
        self.playbooks: dict[str, Playbook] = {}
        self.playbook_set: PlaybookSet | None = None
        self.runs: list[FixRun] = []
        self.probe_results: dict[str, ProbeResult] = {}
        self.catalog: Catalog | None = None
        self.started_at = 0.0
        self.loaded_at = 0.0
        self.last_check = 0.0
        self.reloads = 0
        self.reload_errors = 0
        self.ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._catalog_lock = threading.Lock()
        self._trigger_at: float | None = None  # read time of the line being processed
        self.telemetry = Telemetry(self)
        self.api_url: str | None = None  # set by sidecar.api.serve
        self._sources: dict[str, FileSource] = {}

    # -- events --

    def emit(self, kind: str, message: str, **data: Any) -> None:
        event = Event(kind=kind, at=self.clock(), message=message, data=data)
        level = logging.WARNING if kind in ALERTS or kind in ("error", "reload_failed") else logging.INFO
        log.log(level, "%-12s %s", kind, message)
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
        for outcome in self.executor.recover(self.clock()):
            self.emit("recovered", f"{outcome.fix_id} ({outcome.playbook_id}): {outcome.status}: {outcome.detail}",
                      fix_id=outcome.fix_id, status=outcome.status)
        self.catalog = Catalog(cfg.playbooks, cfg)
        result, _ = self.catalog.refresh()
        self.install(result)

    def install(self, result: PlaybookSet, change: Change | None = None) -> None:
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
                    self._handle(item)
                now = self.clock()
                if now - last_tick >= TICK:
                    last_tick = now
                    self.tick(now)
        finally:
            self.shutdown()
        return 0

    def _handle(self, item: Any) -> None:
        if isinstance(item, _Batch):
            try:
                for line in item.lines:
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

    def observe_line(self, line: Line) -> None:
        transitions, matched = self.board.line(line.source, line.text, line.at)
        for run in self.runs:
            run.judge.line(line.source, matched, line.at)
        self._trigger_at = line.at
        try:
            for t in transitions:
                self._apply_transition(t)
        finally:
            self._trigger_at = None

    def observe_probe(self, result: ProbeResult) -> None:
        self.probe_results[result.name] = result
        self.last_check = result.at
        for run in self.runs:
            run.judge.probe(result.name, result.healthy, result.latency_ms, result.at)
        for t in self.board.probe(result.name, result.healthy, result.latency_ms, result.at):
            self._apply_transition(t)

    def tick(self, now: float) -> None:
        for t in self.board.tick(now):
            self._apply_transition(t)
        for run in list(self.runs):
            verdict = run.judge.verdict(now)
            if verdict.final:
                self._conclude(run, verdict, now)

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
            outcomes=self.store.outcomes(pb.id),
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
        self.emit(
            "decided",
            f"{pb.id}{key}: base confidence {pb.confidence:g}, {decision.successes} success(es) / "
            f"{decision.failures} failure(s) -> adjusted {decision.adjusted_confidence:.1f} vs threshold "
            f"{decision.threshold:g}: {decision.verdict.upper()} ({decision.reason})",
            playbook_id=pb.id, verdict=decision.verdict, adjusted=decision.adjusted_confidence,
        )
        result = self.executor.start(pb, decision, now=now, facts=match.facts, errors_before=errors_before)
        if isinstance(result, Outcome):
            self._report(result)
            return
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

    def _conclude(self, run: FixRun, verdict: Verdict, now: float) -> None:
        assert self.executor is not None
        self.runs.remove(run)
        outcome = self.executor.settle(run, verdict, now)
        self.telemetry.fix_duration.observe(max(0.0, now - run.started_at))
        self._report(outcome)

    def _report(self, outcome: Outcome) -> None:
        self.telemetry.fixes.labels(outcome.playbook_id, outcome.status).inc()
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
                    name, src.file, checkpoints=checkpoints, max_line_bytes=self.config.max_line_bytes
                )
        # One poll round here, on the core, before `ready`: it fixes where each file starts
        # (its end on a first start) so nothing appended after start-up is taken for history.
        for source in self._sources.values():
            for line in source.poll():
                self.observe_line(line)
            source.commit()
        checkpoints.save()
        if self._sources:
            self._spawn("tailer", self._tail_loop, checkpoints)
        self._spawn("reload", self._reload_loop)
        self._spawn("metrics", self._metrics_loop)
        self._spawn("containers", self._container_loop)
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
        try:
            target(*args)
        except Exception:
            log.exception("thread %s failed; stopping", name)
            self.stop.set()

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
            folder, stop_event=self.stop, debounce=100, step=50, rust_timeout=int(RELOAD_RESCAN * 1000),
            yield_on_timeout=True, raise_interrupt=False, watch_filter=None,
        ):
            self.check_playbooks()

    def check_playbooks(self) -> Change | None:
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
            checkpoints.save()

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
            if self.stop.wait(probe.interval):
                return

    def _metrics_loop(self) -> None:
        sampler = MetricsSampler(processes=self.config.processes)
        while not self.stop.is_set():
            samples = sampler.sample(self.clock())
            if samples:
                self._put(samples)
            if self.stop.wait(self.config.metrics_interval):
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

    def _docker_client(self) -> Any:
        runner = self.effects
        if isinstance(runner, Effects):
            return runner.docker()
        raise ActionError("no container engine configured")

    def observe_metrics(self, samples: list[MetricSample]) -> None:
        for sample in samples:
            for run in self.runs:
                run.judge.metric(sample.name, sample.value, sample.at)
            for t in self.board.metric(sample.name, sample.value, sample.at):
                self._apply_transition(t)

    def observe_containers(self, states: list[ContainerState]) -> None:
        for st in states:
            for run in self.runs:
                run.judge.container(st.name, st.state, st.restarted, st.at)
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

    # -- stopping --

    def shutdown(self) -> None:
        self.stop.set()
        now = self.clock()
        for run in list(self.runs):
            self.runs.remove(run)
            if self.executor is not None:
                outcome = self.executor.settle(run, Verdict(state="failed", reason="suture stopped during the validation window"), now)
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
