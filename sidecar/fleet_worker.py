"""The fleet's parts built from the config, and the loop that keeps them up to date.

    fleet = Fleet.open(config, store)        # None without fleet: in suture.yaml
    worker = FleetWorker(fleet)
    threading.Thread(target=worker.run, args=(stop,), name="fleet").start()
    worker.poke()                            # after a journal step: ship soon
    fleet.leases.acquire(...)                # the decision path (scope: fleet)
    fleet.pooled.outcomes(playbook_id)       # LiveHistory's fleet backend (never waits)
    fleet.state                              # /metrics and the dashboard

Two connections: one for the decision path (leases, suspensions, the hourly count), one for
the worker (migrations, shipping, pooled learning), so a long shipping batch never delays a
lease. The worker migrates the schema on its first pass that reaches PostgreSQL (until then,
the decision path's statements fail and it fails closed), ships every ``interval`` seconds
or at once when poked, heartbeats and reads the group's overview (the dashboard's) every pass, and
refreshes the pooled outcomes every ``refresh_every`` seconds.
A FleetUnavailable ends a pass, never the loop; the connection's backoff paces the retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from suture.engine.config import Config, FleetConfig
from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import Backoff, FleetState
from suture.engine.store import Store

from .fleet_gate import FleetGate
from .fleet_learning import PgFleetHistory
from .fleet_leases import Leases
from .fleet_outbox import Shipper, ShipReport
from .fleet_pg import DEFAULT_BACKOFF, FleetConnection
from .fleet_schema import migrate
from .fleet_suspensions import Suspensions
from .fleet_view import FleetOverview, heartbeat, read_overview


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    """One sidecar's view of its group: what the decision path asks, and what the worker keeps up."""

    config: FleetConfig
    name: str
    decisions: FleetConnection
    background: FleetConnection
    leases: Leases
    suspensions: Suspensions
    pooled: PgFleetHistory
    shipper: Shipper
    gate: FleetGate

    @classmethod
    def open(cls, config: Config, store: Store, *, backoff: Backoff = DEFAULT_BACKOFF) -> Self | None:
        """The fleet of ``config`` (None without ``fleet:``); connects lazily, so this never waits."""
        if config.fleet_pg is None:
            return None
        fc = config.fleet_pg
        decisions = FleetConnection.from_config(fc, name=config.name, backoff=backoff)
        background = FleetConnection.from_config(fc, name=f"{config.name} outbox", backoff=backoff)
        return cls(config=fc, name=config.name, decisions=decisions, background=background,
                   leases=Leases(decisions), suspensions=Suspensions(decisions),
                   pooled=PgFleetHistory(background, group=fc.group, own=config.name),
                   shipper=Shipper(store, background, group=fc.group, sidecar=config.name),
                   gate=FleetGate(fc, name=config.name, decisions=decisions))

    @property
    def state(self) -> FleetState:
        """The decision path's connection: what decides whether fleet fixes may be applied."""
        return self.decisions.state

    def close(self) -> None:
        self.shipper.close()
        self.decisions.close()
        self.background.close()


class FleetWorker:
    """Migrates, ships and refreshes; ``run`` is the loop a sidecar thread runs until ``stop`` is set."""

    def __init__(self, fleet: Fleet, *, interval: float = 5.0, refresh_every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, version: str = "",
                 status: Callable[[], tuple[int, int]] = lambda: (0, 0), started_at: float | None = None) -> None:
        self.fleet = fleet
        self.version = version  # this suture's version, in the group's replicas table
        self.status = status  # (playbooks loaded, fixes in flight) now, for the heartbeat
        self.started_at = started_at
        self.overview: FleetOverview | None = None  # the group as the last pass read it (the dashboard)
        self.interval = interval
        self.refresh_every = refresh_every
        self.clock = clock
        self.migrated = False
        self.shipped = ShipReport()  # totals since start
        self.last_error = ""
        self._refreshed_at: float | None = None
        self._wake = threading.Event()

    def poke(self) -> None:
        """Something was journaled: ship without waiting for the interval."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; to end it without waiting out the interval, set ``stop`` then ``poke()``."""
        while not stop.is_set():
            self.step()
            renew = self.fleet.gate.renew_every  # leases held: renew well before they expire
            self._wake.wait(self.interval if renew is None else min(self.interval, renew))
            self._wake.clear()

    def step(self) -> None:
        """One pass: migrate (once), keep leases up, ship what is pending, say this replica is alive, read
        the group's overview (the dashboard's), and refresh the pooled outcomes when due."""
        fleet = self.fleet
        try:
            if not self.migrated:
                migrate(fleet.background)
                self.migrated = True
            fleet.gate.keep_up(fleet.background)
            self.shipped = self.shipped + fleet.shipper.ship_all()
            playbooks, in_flight = self.status()
            heartbeat(fleet.background, group=fleet.config.group, sidecar=fleet.name, version=self.version,
                      playbooks=playbooks, in_flight=in_flight, started_at=self.started_at)
            self.overview = read_overview(fleet.background, fleet.config.group, own=fleet.name)
            now = self.clock()
            if self._refreshed_at is None or now - self._refreshed_at >= self.refresh_every:
                fleet.pooled.refresh()
                self._refreshed_at = now
            self.last_error = self.fleet.pooled.error
        except FleetUnavailable as exc:
            self.last_error = str(exc)
