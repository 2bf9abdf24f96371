"""What goes into the core: small frozen values, one type per kind of news.

The sources already speak in values (:class:`~.sources.base.Line`, ``Block``,
``ProbeResult``, ``MetricSample``, ``ContainerState``); this module adds the envelopes for
batches and for news that is not from the watched app: a new playbook set, an effect's
result, the passing of time, and a person's command (the API's, run on the core).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from suture.engine.alerts import AlertState
from suture.engine.catalog import Reload
from suture.engine.loader import PlaybookSet

from .sources.base import Block, Line, MetricSample, ProbeResult
from .sources.containers import ContainerState


@dataclass(frozen=True, slots=True)
class Lines:
    """A batch read from one source (a file tailer poll, a container log chunk)."""

    source: str
    lines: Sequence[Line | Block]


@dataclass(frozen=True, slots=True)
class Metrics:
    samples: Sequence[MetricSample]


@dataclass(frozen=True, slots=True)
class Alerts:
    """One webhook notification's alerts (Alertmanager), firing and resolved."""

    alerts: Sequence[AlertState]


@dataclass(frozen=True, slots=True)
class Containers:
    states: Sequence[ContainerState]


@dataclass(frozen=True, slots=True)
class Playbooks:
    """A playbook set to swap in (``change`` None: the first load)."""

    result: PlaybookSet
    change: Reload | None = None


@dataclass(frozen=True, slots=True)
class EffectDone:
    """An effect a worker ran for job ``job``: its result text, or the error it raised."""

    job: int
    at: float
    result: str = ""
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: windows age, validation windows may end."""

    at: float


@dataclass(frozen=True, slots=True)
class Command:
    """A person's request (approve, roll back, check now), run on the core between observations."""

    run: Callable[[], Any]


Observation = Lines | ProbeResult | Metrics | Alerts | Containers | Playbooks | EffectDone | Tick | Command

__all__ = [
    "AlertState",
    "Alerts",
    "Block",
    "Command",
    "ContainerState",
    "Containers",
    "EffectDone",
    "Line",
    "Lines",
    "MetricSample",
    "Metrics",
    "Observation",
    "Playbooks",
    "ProbeResult",
    "Tick",
]
