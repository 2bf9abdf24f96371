"""The core's part of the public :class:`~.snapshot.Snapshot`, read from its state on its own thread."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from suture.engine.playbook import ContainerCondition, LogCondition, MetricCondition, leaves

from .snapshot import ConditionKind, ConditionView, RunView, Snapshot

if TYPE_CHECKING:  # the core imports this module; this one only reads the core's public attributes
    from .core import Core

BUSIEST_OF = 100  # keys of a grouped log condition looked at for its count


def core_snapshot(core: Core) -> Snapshot:
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
        kind: ConditionKind = "metric" if isinstance(sustained, MetricCondition) else \
            "container" if isinstance(sustained, ContainerCondition) else "probe"
        conditions.append(ConditionView(
            signal=signal, kind=kind, subject=sustained.name, condition=sustained.describe(),
            playbooks=tuple(owners.get(signal, ())), holding=entry.holding,
            pending=entry.good_since is not None and not entry.holding))
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
