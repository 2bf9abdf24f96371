"""What the sidecar looks like now, as plain frozen values: the only view telemetry, the API and the dashboard read.

The core builds its part on its own thread (so no dict is read while it changes); the
sidecar adds what its threads keep (sources, restarts). Readers never touch the core's
internals: a new field here is the way to show something new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from suture.engine.errors import Problem
from suture.engine.fleet_values import FleetState
from suture.engine.playbook import Playbook

from .fleet_view import FleetOverview
from .sources.base import ProbeResult
from .sources.scrape import ScrapeStats

ConditionKind = Literal["log", "probe", "metric", "container", "alert"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionView:
    """One `when` condition of the playbooks in force, and its state."""

    signal: str
    kind: ConditionKind
    subject: str  # the source of a log condition, the probe, metric or container name otherwise
    condition: str  # as a person reads it (Leaf.describe())
    playbooks: tuple[str, ...]
    holding: bool
    pending: bool = False  # a sustained condition seen but not yet for its `for:`
    count: int = 0  # log conditions: matching lines in the window now (the busiest key, of at most 100)
    at_least: int | None = None
    at_most: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunView:
    """A fix that is not final yet: its effects running, or in its validation window."""

    fix_id: str
    playbook_id: str
    phase: Literal["applying", "validating"]
    started_at: float
    ends_at: float | None  # the validation window's end (None while effects still run)
    backup_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceView:
    """A followed log source (files or a container's stream)."""

    name: str
    kind: Literal["file", "container"]
    counters: Mapping[str, int]
    state: str = "following"  # container streams: following | waiting | ... (the follower's own word)
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    at: float
    started_at: float
    loaded_at: float
    last_check: float
    running: bool
    version: str | None
    playbooks: Mapping[str, Playbook]
    problems: int  # problems of the playbook folder now
    probes: Mapping[str, ProbeResult]
    runs: tuple[RunView, ...]
    conditions: tuple[ConditionView, ...]
    signals_active: int  # facts held by the rules engine
    condition_matches: Mapping[tuple[str, str], int]  # (playbook, YAML path of the log condition) -> lines matched
    deferred: int = 0  # fixes waiting for another fix of the same file
    reloads: int = 0
    reload_errors: int = 0
    core_errors: int = 0
    thread_restarts: int = 0
    events_seq: int = 0
    sources: Mapping[str, SourceView] = field(default_factory=dict)
    fleet: FleetState | None = None  # the fleet connection on PostgreSQL (None: no fleet: configured)
    fleet_overview: FleetOverview | None = None  # the group as last read by the fleet worker (None: not yet)
    playbook_problems: tuple[Problem, ...] = ()  # each problem of the playbook folder now (``problems`` counts them)
    scrapes: Mapping[str, ScrapeStats] = field(default_factory=dict)  # prometheus: and json: sources, by name

    @classmethod
    def empty(cls, at: float) -> Snapshot:
        """A sidecar not open yet (or closed): nothing loaded, checked or running; its API still answers."""
        return cls(at=at, started_at=0.0, loaded_at=0.0, last_check=0.0, running=False, version=None, playbooks={},
                   problems=0, probes={}, runs=(), conditions=(), signals_active=0, condition_matches={})
