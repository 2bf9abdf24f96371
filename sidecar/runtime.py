"""`suture run`: the core, fed by threads that wait on the world.

    world threads (world.py) ──observations──┐
    effect workers (workers.py) ──results────┼──► queue ──► core (core.py), on the caller's thread
    api thread ──commands (Command)──────────┘              signals → rules → decide → Fixes → executor

Only the core touches the engine (rules, store, executor), so nothing there needs a lock; the
core never waits: restarts, stops, execs and notifications go to the effect workers and come
back as observations. The tailer hands each batch over and waits for the core to take it
before advancing its checkpoint, which is also the backpressure: a busy core slows reading,
it never drops lines.

Stop: SIGINT/SIGTERM set ``stop``; every loop waits on that event, never sleeps; the core rolls
back a fix still in its validation window or waiting for an effect (a window cut short is
never a pass) and closes the history.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from suture.engine.actions import EffectRunner
from suture.engine.backup import BackupStore
from suture.engine.catalog import Catalog, Reload
from suture.engine.config import Config
from suture.engine.decide import Decision, Outcomes
from suture.engine.errors import SutureError
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.fleet import FleetHistory, GroupOutcomes, export_history
from suture.engine.notifications import Routes
from suture.engine.playbook import Playbook, leaves
from suture.engine.status import FINAL
from suture.engine.store import Store

from .core import Core, Decided, Meter
from .effects import Effects
from .events import ALERTS, Event, EventLog, Listener, clean, level_of
from .fleet_worker import Fleet, FleetWorker
from .heap import trim_heap
from .history import LiveHistory
from .notify_outbox import NotifyOutbox
from .observations import Command, Observation, Playbooks, Tick
from .seen import seen
from .signals import MatcherCache
from .snapshot import Snapshot, SourceView
from .telemetry import Telemetry
from .workers import EffectWorkers
from .world import World

log = logging.getLogger("suture")

TICK = 0.5  # seconds between window/validation checks when nothing arrives
TRIM_EVERY = 30.0  # seconds between handing freed heap back to the OS (malloc_trim)
def suture_version() -> str:
    """The installed suture's version (the group's replicas table shows it)."""
    try:
        return importlib.metadata.version("suture")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


FLEET_REFRESH = 30.0  # seconds between re-reads of the fleet's exports

__all__ = ["Event", "Listener", "Sidecar"]


@dataclass(slots=True)
class _Handed:
    """An observation whose sender waits until the core has taken it (log batches: their checkpoint)."""

    observation: Observation
    done: threading.Event = field(default_factory=threading.Event)


class _TelemetryMeter(Meter):
    def __init__(self, telemetry: Telemetry) -> None:
        self.t = telemetry

    def detection(self, seconds: float) -> None:
        self.t.detection.observe(seconds)

    def confidence(self, playbook_id: str, value: float) -> None:
        self.t.confidence.labels(playbook_id).set(value)

    def fix(self, playbook_id: str, status: str) -> None:
        self.t.fixes.labels(playbook_id, status).inc()

    def fix_duration(self, seconds: float) -> None:
        self.t.fix_duration.observe(seconds)


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
        decisions: Callable[[Decided], None] | None = None,
    ) -> None:
        self.config = config
        self.decisions = decisions  # every firing, as the core decided it (tests, benchmarks)
        self.hooks = dict(hooks or {})  # executor kill points, for the crash-recovery harness
        self.env = dict(os.environ if env is None else env)
        self.clock = clock
        self.stop = stop or threading.Event()
        self.listeners = list(listeners)
        self.queue: queue.Queue[Observation | _Handed] = queue.Queue(maxsize=64)
        self._own_effects = effects is None
        self.effects: EffectRunner = effects if effects is not None else Effects(config, stop=self.stop, clock=clock,
                                                                                env=self.env)
        self.events = EventLog()
        self.ready = threading.Event()
        self.matchers = MatcherCache()
        self.telemetry = Telemetry(self.snapshot)
        self.api_url: str | None = None  # set by sidecar.transport.serve
        self.fleet: FleetHistory | None = None  # other sidecars' outcomes (learning.fleet), when configured
        self.group: Fleet | None = None  # the fleet on PostgreSQL (fleet: in suture.yaml), when configured
        self.fleet_worker: FleetWorker | None = None
        self.core: Core | None = None
        self.world: World | None = None
        self.workers: EffectWorkers | None = None
        self.store: Store | None = None
        self.outbox: NotifyOutbox | None = None  # notify.webhook and notify.urls: the durable outbox's worker
        self._core_thread: int | None = None
        self._fleet_read_at = self._trimmed_at = 0.0

    # -- events --

    def emit(self, kind: str, message: str, **data: Any) -> None:
        if self.core is not None:
            self.core.emit(kind, message, **data)
        else:
            self._sink(Event(kind=kind, at=self.clock(), message=clean(message), data=data))

    def _sink(self, event: Event) -> None:
        log.log(level_of(event.kind), "%-12s %s", event.kind, event.message)
        self.events.append(event)
        if self.outbox is not None and (event.kind in FINAL or event.kind in ALERTS):
            self.outbox.poke()  # the store queued its notifications with the step; deliver them now
        if event.kind in FINAL and self.fleet is not None:
            self._share_history()
        if event.kind in FINAL and self.fleet_worker is not None:
            self.fleet_worker.poke()  # ship the outcome now, not at the next interval
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
        routes = Routes.of(cfg)
        self.store.notify_through(routes)  # before recovery: a fix it ends is notified too
        if routes.channels:
            self.outbox = NotifyOutbox(cfg, self.store, clock=self.clock,
                                       dashboard_url=lambda: cfg.notify_dashboard_url or self.api_url)
            self.telemetry.watch_notifications(self.outbox.stats)
        executor = Executor(config=cfg, store=self.store, backups=BackupStore(cfg.state_dir / "backups"),
                            effects=self.effects, hooks=self.hooks)
        removed = executor.prune_backups(self.clock())
        if removed:
            log.info("backups      pruned %d old backup(s) (keep_last %d, keep_days %g)", len(removed),
                     cfg.backups_keep_last, cfg.backups_keep_days)
        if cfg.fleet:
            self.fleet = FleetHistory(Path(cfg.fleet), cfg.name)
        self.group = Fleet.open(cfg, self.store)  # connects lazily: never waits here
        pooled: GroupOutcomes | None = self.group.pooled if self.group is not None else self.fleet
        self.workers = EffectWorkers(self.effects, self._put, clock=self.clock)
        self.core = Core(cfg, executor=executor, history=LiveHistory(self.store, pooled), clock=self.clock,
                         emit=self._sink, port=self.workers, meter=_TelemetryMeter(self.telemetry),
                         matchers=self.matchers, hooks=self.hooks, decisions=self.decisions,
                         fleet=self.group.gate if self.group is not None else None)
        for outcome in executor.recover(self.clock()):  # on_rollback runs inline: nothing is watched yet
            self.emit("recovered", f"{outcome.fix_id} ({outcome.playbook_id}): {outcome.status}: {outcome.detail}",
                      fix_id=outcome.fix_id, status=outcome.status)
        self._share_history()
        catalog = Catalog(cfg.playbooks, cfg)
        result, _ = catalog.refresh()
        self.core.install(Playbooks(result))
        core = self.core
        self.world = World(cfg, stop=self.stop, clock=self.clock, env=self.env, put=self._put, hand=self._hand,
                           first=core.observe, emit=self.emit, watched=lambda: core.watched_containers,
                           metric_containers=lambda: core.metric_containers,
                           docker=self.effects.docker if isinstance(self.effects, Effects) else None,
                           catalog=catalog, matchers=self.matchers)

    def install(self, result: Any, change: Reload | None = None) -> None:
        assert self.core is not None
        self.core.install(Playbooks(result, change))

    # -- the core's loop --

    def run(self) -> int:
        """Run until ``stop`` is set; return the exit code."""
        self.open()
        assert self.core is not None and self.world is not None
        core = self.core
        core.started_at = self.clock()
        self._core_thread = threading.get_ident()
        self.world.start()
        if self.outbox is not None:
            self.world.spawn("notify", self.outbox.run, self.stop)
        if self.group is not None:  # ships the journal to PostgreSQL and reads the group's outcomes
            self.fleet_worker = FleetWorker(self.group, version=suture_version(), started_at=time.time(),
                                            status=lambda: (len(core.playbooks), len(core.fixes.runs)))
            self.world.spawn("fleet", self.fleet_worker.run, self.stop)
        self.ready.set()
        last_tick = 0.0
        try:
            while not self.stop.is_set():
                try:
                    item = self.queue.get(timeout=TICK)
                except queue.Empty:
                    item = None
                if isinstance(item, _Handed):
                    try:
                        core.observe(item.observation)
                    finally:
                        item.done.set()
                elif item is not None:
                    core.observe(item)
                now = self.clock()
                if now - last_tick >= TICK:
                    last_tick = now
                    self._housekeeping(now)
                    core.observe(Tick(now))
        finally:
            self.shutdown()
        return 0

    def _housekeeping(self, now: float) -> None:
        if now - self._trimmed_at >= TRIM_EVERY:
            self._trimmed_at = now
            trim_heap()
        if self.fleet is not None and now - self._fleet_read_at >= FLEET_REFRESH:
            self._fleet_read_at = now
            with contextlib.suppress(Exception):
                self.fleet.refresh()

    def _put(self, item: Observation | _Handed) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=TICK)
                return True
            except queue.Full:
                continue
        return False

    def _hand(self, observation: Observation) -> bool:
        handed = _Handed(observation)
        if not self._put(handed):
            return False
        while not self.stop.is_set():
            if handed.done.wait(TICK):
                return True
        return handed.done.is_set()

    def offer(self, observation: Observation, timeout: float = 2.0) -> bool:
        """Put news from outside (the API's alert receiver) on the core's queue; False if it stayed full."""
        try:
            self.queue.put(observation, timeout=timeout)
        except queue.Full:
            return False
        return True

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the core thread and return its result (for the API)."""
        if threading.get_ident() == self._core_thread:
            return fn()
        done = threading.Event()
        box: dict[str, Any] = {}

        def task() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        if not self._put(Command(task)) or not done.wait(timeout):
            raise TimeoutError("the sidecar did not answer in time")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    # -- what the API asks (on the core, through call) --

    def start_fix(self, pb: Playbook, decision: Decision, now: float, **record: Any) -> FixRun | Outcome | str:
        assert self.core is not None
        return self.core.start_fix(pb, decision, now, **record)

    def rollback_by_person(self, backup_id: str, *, force: bool, by: str) -> tuple[list[str], Outcome | None]:
        assert self.core is not None
        return self.core.rollback_by_person(backup_id, force=force, by=by)

    def outcomes(self, playbook_id: str) -> Outcomes:
        assert self.core is not None
        return self.core.outcomes(playbook_id)

    def seen(self, pb: Playbook) -> list[dict[str, Any]]:
        """The numbers behind ``pb``'s trend conditions now (on the core thread)."""
        assert self.core is not None
        return seen(self.core.board, leaves(pb.when))

    def busy_with(self, pb: Playbook) -> str | None:
        """The fix (applying or validating) that touches one of ``pb``'s files, if any."""
        assert self.core is not None
        busy = self.core.fixes.busy_with(pb)
        return busy[0] if busy else None

    def check_playbooks(self) -> Reload | None:
        return self.world.check_playbooks() if self.world is not None else None

    def tick(self, now: float) -> None:
        if self.core is not None:
            self.core.tick(now)

    def check_now(self, timeout: float = 10.0) -> dict[str, Any]:
        """Sample every probe and metric now, wait for the results, and evaluate the rules (trigger-check)."""
        asked = self.clock()
        if self.world is not None:
            self.world.wake()
        probes = self.config.probes
        deadline = time.monotonic() + min(timeout, max((p.timeout for p in probes.values()), default=0) + 2)
        results: dict[str, Any] = {}
        while time.monotonic() < deadline and not self.stop.is_set():
            results = dict(self.core.probe_results) if self.core is not None else {}
            if len(results) >= len(probes) and all(r.at >= asked for n, r in results.items() if n in probes):
                break
            self.stop.wait(0.05)
        def tick_and_look() -> Snapshot:
            self.tick(self.clock())
            return self.snapshot_now()

        view = self.call(tick_and_look)
        fresh = sorted(n for n, r in view.probes.items() if r.at >= asked)
        return {"probes": fresh, "asked_at": asked, "signals_active": view.signals_active}

    # -- what it looks like (public; the core's own state is read on the core) --

    def snapshot_now(self) -> Snapshot:
        """The core's part of the snapshot (on the core thread)."""
        return self.core.snapshot() if self.core is not None else Snapshot.empty(self.clock())

    def snapshot(self, timeout: float = 5.0) -> Snapshot:
        """The public view (telemetry, API, dashboard): the core's part built on the core thread."""
        live = self.ready.is_set() and not self.stop.is_set()
        if self.core is None:
            return Snapshot.empty(self.clock())
        core = self.call(self.core.snapshot, timeout=timeout) if live else self.core.snapshot()
        sources: dict[str, SourceView] = {}
        world = self.world
        scrapes = {name: scraper.stats for name, scraper in dict(world.scrapers).items()} if world is not None else {}
        if world is not None:
            for name, tail in dict(world.sources).items():
                sources[name] = SourceView(name=name, kind="file", counters=dict(tail.stats))
            for name, follower in dict(world.container_logs).items():
                sources[name] = SourceView(name=name, kind="container", counters=follower.counters(),
                                           state=follower.state, detail=follower.stats.detail)
        return replace(core, running=live, thread_restarts=self.thread_restarts, events_seq=self.events.seq,
                       sources=sources, scrapes=scrapes,
                       fleet=self.group.background.state if self.group is not None else None,
                       fleet_overview=self.fleet_worker.overview if self.fleet_worker is not None else None)

    @property
    def thread_restarts(self) -> int:
        return self.world.thread_restarts if self.world is not None else 0

    @property
    def executor(self) -> Executor | None:
        return self.core.executor if self.core is not None else None

    @property
    def playbooks(self) -> dict[str, Playbook]:
        return self.core.playbooks if self.core is not None else {}

    @property
    def playbook_set(self) -> Any:
        return self.core.playbook_set if self.core is not None else None

    @property
    def runs(self) -> list[FixRun]:
        return list(self.core.fixes.runs) if self.core is not None else []

    @property
    def reload_errors(self) -> int:
        return self.core.reload_errors if self.core is not None else 0

    @property
    def core_errors(self) -> int:
        return self.core.core_errors if self.core is not None else 0

    @property
    def recent_events(self) -> Any:
        return self.events.recent

    @property
    def events_seq(self) -> int:
        return self.events.seq

    @property
    def events_changed(self) -> threading.Condition:
        return self.events.changed

    # -- fleet (learning.fleet: a shared folder) --

    def _share_history(self) -> None:
        """Write this sidecar's export to the fleet folder and re-read the others'."""
        if self.fleet is None or self.store is None:
            return
        try:
            export_history(self.store, self.fleet.folder, self.config.name)
        except SutureError as exc:
            log.warning("fleet        cannot export to %s: %s", self.fleet.folder, exc)
        self.fleet.refresh()
        self._fleet_read_at = self.clock()

    # -- stopping --

    def shutdown(self) -> None:
        self.stop.set()
        if self.fleet_worker is not None:
            self.fleet_worker.poke()  # its loop sees stop at once
        if self.outbox is not None:
            self.outbox.poke()
        if self.workers is not None:
            self.workers.close(timeout=1.0)
        if self.core is not None:
            self.core.shutdown()
        if self._own_effects and isinstance(self.effects, Effects):
            self.effects.close(timeout=1.0)
        if self.world is not None:
            self.world.close()  # the fleet thread among them: nothing ships from here on
        if self.group is not None:
            self.group.close()
        if self.store is not None:
            self.store.close()
            self.store = None
