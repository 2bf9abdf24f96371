"""What a replay can judge from logs alone, and what it must assume.

A playbook's ``when`` is an OR of alternatives (its disjunctive normal form,
one compiled rule each, :func:`suture.engine.rules.to_dnf`). A recorded log
shows log conditions only: probes, metrics and containers are not in it.
So, alternative by alternative:

- one with a log condition is replayed; its other conditions are *assumed*,
  to hold (``assume="logs"``, the default, or ``"hold"``) or to fail
  (``"fail"``), and every firing of it names what it assumed;
- one without a log condition is *not evaluable from logs*: it is left out
  of the replay (a playbook left with none is not replayed at all), unless
  ``assume="hold"``, which replays it too, holding from the first line, its
  firings marked as resting on assumptions alone.

A negated non-log condition is never asserted, so in every mode it is
assumed not to hold, and a firing that relied on that says so
("not probe api unhealthy").

Pure: playbooks in, frozen views out. The replay compiles the rules from each
``LogView.replayed`` (the playbook, or a copy whose ``when`` keeps only the
replayed alternatives, in order), asserts ``LogView.holds`` from the first
line, lists ``LogView.blind``, and looks up what a firing assumed by the rule
that fired (``<playbook id>#<alternative>``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from suture.engine.playbook import AllOf, AnyOf, Condition, Leaf, LogCondition, NotOf, Playbook
from suture.engine.rules import Conjunction, to_dnf

Assume = Literal["logs", "hold", "fail"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Alternative:
    """One replayed alternative of a playbook (its rule ``<id>#<index>``), as a log sees it."""

    index: int
    from_logs: bool  # it has a log condition
    assumed: tuple[str, ...]  # its other conditions, as assumed: "probe api healthy", "not probe api unhealthy"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogView:
    """One playbook as a replay sees it: what is replayed, what is assumed, what is left out."""

    playbook_id: str
    has_logs: bool  # some alternative has a log condition: the playbook can be judged from logs at all
    replayed: Playbook | None  # the playbook with only the alternatives replayed; None: nothing to replay
    alternatives: tuple[Alternative, ...]  # of ``replayed``, by rule index
    blind: tuple[str, ...]  # alternatives without a log condition, described (replayed only with assume="hold")
    needs: tuple[Leaf, ...]  # non-log conditions a replayed alternative needs to hold: assumed to
    holds: tuple[Leaf, ...]  # those of them to assert as holding (none with assume="fail")

    def alternative(self, rule: str) -> Alternative | None:
        """The alternative a fired rule (``<id>#<index>``) stands for."""
        _, _, index = rule.rpartition("#")
        if not index.isdigit() or int(index) >= len(self.alternatives):
            return None
        return self.alternatives[int(index)]


def describe(conjunction: Conjunction) -> str:
    pos, neg = conjunction
    return " and ".join([leaf.describe() for leaf in pos] + [f"not {leaf.describe()}" for leaf in neg])


def log_view(pb: Playbook, assume: Assume = "logs") -> LogView:
    """What a replay of recorded logs evaluates of ``pb``, and what it must assume to do so."""
    conjunctions = to_dnf(pb.when)
    kept: list[Conjunction] = []
    blind: list[str] = []
    for conj in conjunctions:
        logged = any(isinstance(leaf, LogCondition) for side in conj for leaf in side)
        if not logged:
            blind.append(describe(conj))
        if logged or assume == "hold":
            kept.append(conj)
    needs: dict[str, Leaf] = {}
    for pos, _neg in kept:
        needs.update((leaf.signal, leaf) for leaf in pos if not isinstance(leaf, LogCondition))
    holds = {} if assume == "fail" else needs
    alternatives = tuple(_alternative(i, conj, assume, set(holds)) for i, conj in enumerate(kept))
    if not kept:
        replayed = None
    elif len(kept) == len(conjunctions):
        replayed = pb
    else:
        replayed = dataclasses.replace(pb, when=_rebuild(kept))
    return LogView(playbook_id=pb.id, has_logs=len(blind) < len(conjunctions), replayed=replayed,
                   alternatives=alternatives, blind=tuple(blind), needs=tuple(needs.values()),
                   holds=tuple(holds.values()))


def log_views(playbooks: Iterable[Playbook], assume: Assume = "logs") -> list[LogView]:
    return [log_view(pb, assume) for pb in playbooks]


def _alternative(index: int, conj: Conjunction, assume: Assume, held: set[str]) -> Alternative:
    pos, neg = conj
    assumed = [] if assume == "fail" else [leaf.describe() for leaf in pos if not isinstance(leaf, LogCondition)]
    assumed += [f"not {leaf.describe()}" for leaf in neg
                if not isinstance(leaf, LogCondition) and leaf.signal not in held]
    from_logs = any(isinstance(leaf, LogCondition) for side in conj for leaf in side)
    return Alternative(index=index, from_logs=from_logs, assumed=tuple(assumed))


def _rebuild(kept: list[Conjunction]) -> Condition:
    """A ``when`` whose normal form is exactly ``kept``, in order (so rule ``#i`` is ``kept[i]``)."""
    alls = tuple(AllOf(items=(*pos, *(NotOf(item=leaf) for leaf in neg))) for pos, neg in kept)
    return alls[0] if len(alls) == 1 else AnyOf(items=alls)
