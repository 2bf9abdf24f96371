"""The world around the core: the threads that wait on files, containers, probes, scrapes and the playbook folder.

Each loop turns what it sees into an observation and ``put``s it on the core's queue (a file or
container log batch is ``hand``ed: the loop waits until the core has taken it before moving
its checkpoint, which is also the backpressure). Every wait here is on ``stop`` or on the
world (inotify, a socket), never a bare sleep; a loop that raises is restarted with backoff
(:meth:`World.spawn`), so a source that meets input nobody foresaw never blinds the sidecar.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from suture.engine.catalog import Catalog, Reload
from suture.engine.config import Config
from suture.engine.errors import ActionError

from .observations import Containers, Lines, Metrics, Observation, Playbooks
from .signals import MatcherCache
from .sources.container_logs import ContainerLogSource, LogPositions
from .sources.containers import ContainerStats, ContainerWatcher
from .sources.files import Checkpoints, FileSource
from .sources.json_health import JsonHealthScraper
from .sources.metrics import MetricsSampler
from .sources.probes import Probe, build_probe, probe_registry
from .sources.scrape import PrometheusScraper, Scraper
from .watch import Pacer, Watcher

log = logging.getLogger("suture")

RESCAN = 1.0  # seconds between glob rescans when the file watcher is quiet (its safety net)
# The watcher (inotify) wakes the tailer at the first write, at no CPU while idle; reads are paced
# because each costs ~1.5 ms of CPU whatever it finds (glob, checkpoint save): a line after a quiet
# spell is read at once, a steady stream every 1/TAIL_RATE s at most (unpaced, a writer flushing
# every 10 ms cost ~20% of a core; see docs/benchmarks.md).
TAIL_RATE, TAIL_BURST = 20.0, 5  # reads per second in the long run, reads at once after a quiet spell
CHECKPOINT_SYNC = 5.0  # seconds between fsync'd saves of the read positions
RELOAD_RESCAN = 5.0  # seconds between playbook folder rescans when no event arrives
RELOAD_SETTLE = 0.1  # seconds of quiet after a change in the playbook folder before it is re-read


class World:
    def __init__(
        self,
        config: Config,
        *,
        stop: threading.Event,
        clock: Callable[[], float],
        env: Mapping[str, str],
        put: Callable[[Observation], bool],
        hand: Callable[[Observation], bool],
        first: Callable[[Observation], object],
        emit: Callable[[str, str], None],
        watched: Callable[[], frozenset[str]],
        metric_containers: Callable[[], frozenset[str]],
        docker: Callable[[], Any] | None,
        catalog: Catalog,
        matchers: MatcherCache,
    ) -> None:
        self.config = config
        self.stop = stop
        self.clock = clock
        self.env = env
        self.put = put  # to the core's queue (False: stopping)
        self.hand = hand  # to the core, waiting until it is taken (False: stopping)
        self.first = first  # straight to the core, before the loops start
        self.emit = emit
        self.watched = watched  # containers that conditions name (the set follows reloads)
        self.metric_containers = metric_containers
        self.docker = docker
        self.catalog = catalog
        self.matchers = matchers
        self.thread_restarts = 0
        self.threads: list[threading.Thread] = []
        self.sources: dict[str, FileSource] = {}
        self.container_logs: dict[str, ContainerLogSource] = {}
        self.scrapers: dict[str, Scraper] = {}  # prometheus: and json: sources
        self._catalog_lock = threading.Lock()
        self._wake_lock = threading.Lock()
        self._wakers: list[threading.Event] = []
        self._checkpoint_synced = 0.0

    def start(self) -> None:
        """Open the sources, read each file up to now (on the caller's thread), start every loop."""
        checkpoints = Checkpoints(self.config.state_dir / "checkpoints.json")
        for name, src in self.config.sources.items():
            if src.file:
                self.sources[name] = FileSource(
                    name, src.file, checkpoints=checkpoints, max_line_bytes=self.config.max_line_bytes, blocks=True,
                    clock=self.clock
                )
        # One poll round here, on the core, before `ready`: it fixes where each file starts
        # (its end on a first start) so nothing appended after start-up is taken for history.
        for name, source in self.sources.items():
            lines = source.poll()
            if lines:
                self.first(Lines(name, lines))
            source.commit()
        checkpoints.save()
        if self.sources:
            self.spawn("tailer", self._tail_loop, checkpoints)
        self.spawn("reload", self._reload_loop)
        self.spawn("metrics", self._metrics_loop)
        self.spawn("containers", self._container_loop)
        self.spawn("container-metrics", self._container_metrics_loop)
        positions = LogPositions(self.config.state_dir / "container-logs.json")
        for name, src in self.config.sources.items():
            if src.container:
                follower = ContainerLogSource(name, src.container, self._docker_client, positions=positions,
                                              clock=self.clock, max_line_bytes=self.config.max_line_bytes)
                self.container_logs[name] = follower
                self.spawn(f"container-logs-{name}", self._container_log_loop, follower)
        probes = probe_registry(self.env)
        for cfg in self.config.probes.values():
            try:
                probe = build_probe(cfg, probes)
            except KeyError as exc:
                self.emit("error", f"probe {cfg.name}: {exc.args[0]}")
                continue
            self.spawn(f"probe-{cfg.name}", self._probe_loop, probe)
        for scrape in self.config.scrapes.values():
            scraper = JsonHealthScraper(scrape) if scrape.kind == "json" else PrometheusScraper(scrape)
            self.scrapers[scrape.name] = scraper
            self.spawn(f"scrape-{scrape.name}", self._scrape_loop, scraper)

    def spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=self._guard, args=(name, target, *args), name=f"suture-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

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
        """Read every source whenever a watched folder changes, and every RESCAN seconds regardless.

        The watcher blocks on inotify (no CPU while idle, no step to wait out: a line is read
        as soon as it is written); the rescan catches whatever events cannot show (a folder made
        after start, a network filesystem, no inotify at all).
        """
        dirs = sorted({d for s in self.sources.values() for d in s.watch_dirs()})
        watcher, pacer = Watcher(dirs), Pacer(TAIL_RATE, TAIL_BURST)
        watcher.close_on(self.stop, name="suture-tailer-stop")  # a blocking wait ends at once on stop
        try:
            while not self.stop.is_set():
                self._drain_sources(checkpoints)
                if watcher.wait(RESCAN) and (pause := pacer.delay()):
                    self.stop.wait(pause)
        finally:
            watcher.close()

    def _reload_loop(self) -> None:
        """Watch the playbook folder; hand every changed, re-read set to the core."""
        folder = self.config.playbooks
        while not self.stop.is_set() and not folder.is_dir():
            self.stop.wait(RELOAD_RESCAN)
        # Editors that save by rename and ConfigMap `..data` symlink swaps are both changes in
        # the folder; the periodic rescan catches anything the events miss. `settle`: a file
        # saved in place (truncate, then write) is read whole, not half written.
        with Watcher([folder]) as watcher:
            watcher.close_on(self.stop, name="suture-reload-stop")
            while not self.stop.is_set():
                watcher.wait(RELOAD_RESCAN, settle=RELOAD_SETTLE)
                if not self.stop.is_set():
                    self.check_playbooks()

    def check_playbooks(self) -> Reload | None:
        """Re-read the playbook folder (off the core); queue the swap if anything changed."""
        if self.catalog is None:
            return None
        with self._catalog_lock:
            result, change = self.catalog.refresh()
        if change is not None:
            self.matchers.prepare(result.playbooks)  # compile here, not on the core
            self.put(Playbooks(result, change))
        return change

    def _drain_sources(self, checkpoints: Checkpoints) -> None:
        """Poll every source until nothing is left, handing each batch to the core."""
        busy = True
        while busy and not self.stop.is_set():
            busy = False
            for name, source in self.sources.items():
                lines = source.poll()
                busy = busy or bool(lines) or source.backlog
                if lines and not self.hand(Lines(name, lines)):
                    return  # stopping: the batch is not committed, so it is read again next start
                source.commit()  # also records resets (truncation, rotation) seen by an empty poll
            # after every batch, so a killed process restarts exactly there; fsync'd now and then,
            # for power cuts (an fsync per batch cost ~8% of a core at 1,000 lines/s)
            durable = time.monotonic() - self._checkpoint_synced >= CHECKPOINT_SYNC
            checkpoints.save(durable=durable)
            if durable:
                self._checkpoint_synced = time.monotonic()

    def _probe_loop(self, probe: Probe) -> None:
        while not self.stop.is_set():
            result = probe.check(self.clock())
            self.put(result)
            if self._nap(probe.interval):
                return

    def _scrape_loop(self, scraper: Scraper) -> None:
        """Scrape every interval (from the start of one scrape to the next): the samples as one batch, then the status."""
        while not self.stop.is_set():
            began = time.monotonic()
            scraped = scraper.scrape(self.clock())
            if scraped.samples and not self.put(Metrics(scraped.samples)):
                return
            if not self.put(scraped.result) or self._nap(scraper.interval - (time.monotonic() - began)):
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

    def _metrics_loop(self) -> None:
        sampler = MetricsSampler(processes=self.config.processes)
        while not self.stop.is_set():
            samples = sampler.sample(self.clock())
            if samples:
                self.put(Metrics(samples))
            if self._nap(self.config.metrics_interval):
                return

    def _container_loop(self) -> None:
        """Poll the containers that conditions name (the set follows reloads); no engine, no polling."""
        watcher: ContainerWatcher | None = None
        while not self.stop.is_set():
            names = self.watched()
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
                self.put(Containers(watcher.poll(self.clock())))
            if self.stop.wait(self.config.metrics_interval):
                return

    def _container_log_loop(self, source: ContainerLogSource) -> None:
        """Follow one container's logs; each batch goes to the core like a file's, then its position is kept."""
        batches = source.batches(self.stop)
        try:
            for lines in batches:
                if not self.hand(Lines(source.name, lines)):
                    return  # stopping: the position is not moved, so the batch is read again next start
                source.commit()
        finally:
            batches.close()

    def _container_metrics_loop(self) -> None:
        """CPU and memory of the containers metric conditions name (the set follows reloads)."""
        stats = ContainerStats(self._docker_client)
        while not self.stop.is_set():
            names = self.metric_containers()
            samples = stats.sample(names, self.clock()) if names else []
            if samples:
                self.put(Metrics(samples))
            if self._nap(self.config.metrics_interval):
                return

    def _docker_client(self) -> Any:
        if self.docker is None:
            raise ActionError("no container engine configured")
        return self.docker()


    def wake(self) -> None:
        """Probes and samplers: check now instead of at the end of the interval."""
        with self._wake_lock:
            for waker in self._wakers:
                waker.set()

    def close(self) -> None:
        for thread in self.threads:
            thread.join(timeout=2.0)
        for source in self.sources.values():
            source.close()
