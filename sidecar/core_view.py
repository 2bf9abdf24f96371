"""The core's part of the public :class:`~.snapshot.Snapshot`, read from its state on its own thread."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from suture.engine.executor import FixRun
from suture.engine.loader import PlaybookSet
from suture.engine.playbook import AlertCondition, ContainerCondition, LogCondition, MetricCondition, Playbook, leaves
from suture.engine.rules import Match

from .signals import SignalBoard
from .snapshot import ConditionKind, ConditionView, RunView, Snapshot
from .sources.base import ProbeResult


class _Applying(Protocol):
    fix_id: str
    playbook: Playbook
    started_at: float


class _Fixes(Protocol):
    runs: list[FixRun]

    def applying(self) -> Sequence[_Applying]: ...


class CoreState(Protocol):
    """What of the core a snapshot reads (the core imports this module, never the other way)."""

    clock: Callable[[], float]
    board: SignalBoard
    playbook_set: PlaybookSet | None
    deferred: list[tuple[str, Match]]
    started_at: float
    loaded_at: float
    last_check: float
    reloads: int
    reload_errors: int
    core_errors: int

    @property
    def fixes(self) -> _Fixes: ...

    @property
    def playbooks(self) -> Mapping[str, Playbook]: ...

    @property
    def probe_results(self) -> Mapping[str, ProbeResult]: ...

BUSIEST_OF = 100  # keys of a grouped log condition looked at for its count


def core_snapshot(core: CoreState) -> Snapshot:
    now = core.clock()
    board = core.board
    owners: dict[str, list[str]] = {}
    matches: dict[tuple[str, str], int] = {}
    for pb in core.playbooks.values():
        for leaf in leaves(pb.when):
            owners.setdefault(leaf.signal, []).append(pb.id)
            if isinstance(leaf, LogCondition):
                shared = board.matches.get((leaf.source, leaf.pattern, leaf.group_by))
                matches[(pb.id, leaf.at.path)] = shared.total if shared else 0
    conditions: list[ConditionView] = []
    for signal, entry in board.sustained.items():
        sustained = entry.leaf
        kind: ConditionKind = ("metric" if isinstance(sustained, MetricCondition) else
                               "container" if isinstance(sustained, ContainerCondition) else
                               "alert" if isinstance(sustained, AlertCondition) else "probe")
        conditions.append(ConditionView(
            signal=signal, kind=kind, subject=sustained.name, condition=sustained.describe(),
            playbooks=tuple(owners.get(signal, ())), holding=entry.holding,
            pending=entry.good_since is not None and not entry.holding))
    for signal, anomaly in board.anomalies.items():
        conditions.append(ConditionView(
            signal=signal, kind="log", subject=anomaly.leaf.source, condition=anomaly.leaf.describe(),
            playbooks=tuple(owners.get(signal, ())), holding=anomaly.holding))
    for signal, window in board.logs.items():
        leaf = window.leaf
        keys = list(itertools.islice(window.matches.times, BUSIEST_OF)) or [""]
        conditions.append(ConditionView(
            signal=signal, kind="log", subject=leaf.source, condition=leaf.describe(),
            playbooks=tuple(owners.get(signal, ())), holding=bool(window.holding),
            count=max(window.count(key, now) for key in keys), at_least=leaf.at_least, at_most=leaf.at_most))
    runs = [RunView(fix_id=r.fix_id, playbook_id=r.playbook.id, phase="validating", started_at=r.started_at,
                    ends_at=r.judge.ends_at, backup_id=r.manifest.id if r.manifest else None)
            for r in core.fixes.runs]
    runs += [RunView(fix_id=w.fix_id, playbook_id=w.playbook.id, phase="applying", started_at=w.started_at,
                     ends_at=None) for w in core.fixes.applying()]
    ps = core.playbook_set
    return Snapshot(
        at=now, started_at=core.started_at, loaded_at=core.loaded_at, last_check=core.last_check, running=True,
        version=ps.version if ps else None, playbooks=dict(core.playbooks), problems=len(ps.problems) if ps else 0,
        playbook_problems=tuple(ps.problems) if ps else (),
        probes=dict(core.probe_results), runs=tuple(runs), conditions=tuple(conditions),
        signals_active=len(board.holding()), condition_matches=matches, deferred=len(core.deferred),
        reloads=core.reloads, reload_errors=core.reload_errors, core_errors=core.core_errors)
