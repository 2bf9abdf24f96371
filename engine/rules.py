"""The one adapter that owns durable_rules.

Playbooks are compiled to durable_rules' JSON ruleset format (pure, and
golden-tested), then registered on one explicitly built Host under a
versioned name (``suture_g1``, ``suture_g2``, ...), because a name can be
registered only once. Facts are *signals*: a leaf condition that is true now,
for one group key (``{"id", "signal", "labels"}``); the sidecar asserts a fact
when its leaf becomes true and retracts it when it becomes false, so the engine
holds few facts and every rule fires on an edge, not on every line.

A playbook's ``when`` is put in disjunctive normal form: each conjunction is a
rule whose positive leaves are ``all`` patterns and whose negated leaves are
``$not`` patterns. Leaves that share a label name (a ``group_by`` group, a
container name) are joined through durable_rules references, so "the same
endpoint in two conditions" is matched by the engine, not beside it.

The Host is built without its background dispatch timers: everything we
assert runs its actions synchronously in ``assert_fact``/``retract_fact``,
and durable_rules timers are not used, so the engine stays free of threads.
A rule's action only records a :class:`Match`; the caller decides what to do.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import durable_rules_engine
from durable import engine as dr

from .errors import RulesError
from .playbook import AllOf, AnyOf, Condition, ContainerCondition, Leaf, NotOf, Playbook

READY_SIGNAL = "$ready"
READY_RULE = "$ready"
MAX_CONJUNCTIONS = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Fact:
    """A leaf condition that holds now, for one group key."""

    signal: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    @property
    def id(self) -> str:
        return f"{self.signal}|{self.key}"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "signal": self.signal, "labels": dict(self.labels)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """A playbook whose diagnosis became true, with the facts that made it so."""

    playbook_id: str
    rule: str
    labels: Mapping[str, str]
    facts: tuple[str, ...]

    @property
    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


# --- compiling ---------------------------------------------------------------------------

Conjunction = tuple[tuple[Leaf, ...], tuple[Leaf, ...]]  # (positive, negated)


def to_dnf(condition: Condition, negate: bool = False) -> list[Conjunction]:
    """The condition as an OR of ANDs of (possibly negated) leaves."""
    if isinstance(condition, NotOf):
        return to_dnf(condition.item, not negate)
    if isinstance(condition, (AllOf, AnyOf)):
        parts = [to_dnf(item, negate) for item in condition.items]
        conjunctive = isinstance(condition, AllOf) != negate  # De Morgan
        if not conjunctive:
            return [c for part in parts for c in part]
        out: list[Conjunction] = []
        for combo in itertools.product(*parts):
            pos = tuple(leaf for p, _ in combo for leaf in p)
            neg = tuple(leaf for _, n in combo for leaf in n)
            out.append((pos, neg))
            if len(out) > MAX_CONJUNCTIONS:
                raise RulesError(f"the condition expands to more than {MAX_CONJUNCTIONS} alternatives")
        return out
    return [((), (condition,))] if negate else [((condition,), ())]


def leaf_labels(leaf: Leaf) -> tuple[str, ...]:
    """Label names a leaf's facts carry, on which conjunctions join.

    Log facts carry their ``group_by`` groups; container facts carry ``container``,
    so a log condition grouped by a ``container`` group joins with container conditions.
    """
    if isinstance(leaf, ContainerCondition):
        return ("container",)
    return tuple(getattr(leaf, "group_by", ()))


def sustained_fact(leaf: Leaf) -> Fact:
    """The fact a probe, metric or container leaf asserts: a container's carries its name (see leaf_labels)."""
    labels = {"container": leaf.name} if isinstance(leaf, ContainerCondition) else {}
    return Fact(signal=leaf.signal, labels=labels)


def compile_playbook(pb: Playbook) -> dict[str, dict[str, Any]]:
    """``{rule_name: definition}`` for one playbook, in durable_rules' JSON form."""
    rules: dict[str, dict[str, Any]] = {}
    for i, (pos, neg) in enumerate(to_dnf(pb.when)):
        binders: dict[str, str] = {}  # label name -> alias of the first positive leaf carrying it
        patterns: list[dict[str, Any]] = []
        if not pos:
            patterns.append({"ready": {"signal": READY_SIGNAL}})
        for j, leaf in enumerate(pos):
            alias = f"p{j}"
            terms: list[dict[str, Any]] = [{"signal": leaf.signal}]
            for name in leaf_labels(leaf):
                if name in binders:
                    terms.append({f"labels.{name}": {binders[name]: f"labels.{name}"}})
                else:
                    binders[name] = alias
            patterns.append({alias: terms[0] if len(terms) == 1 else {"$and": terms}})
        for k, leaf in enumerate(neg):
            terms = [{"signal": leaf.signal}]
            for name in leaf_labels(leaf):
                if name in binders:
                    terms.append({f"labels.{name}": {binders[name]: f"labels.{name}"}})
            patterns.append({f"n{k}$not": terms[0] if len(terms) == 1 else {"$and": terms}})
        rules[f"{pb.id}#{i}"] = {"all": patterns}
    return rules


def compile_rules(playbooks: Iterable[Playbook]) -> dict[str, dict[str, Any]]:
    """The whole ruleset body for a playbook set (rule names are ``<playbook id>#<n>``)."""
    out: dict[str, dict[str, Any]] = {}
    for pb in sorted(playbooks, key=lambda p: p.id):
        out.update(compile_playbook(pb))
    return out


def signals_of(definition: Mapping[str, Any]) -> set[str]:
    """Every signal name a compiled ruleset refers to."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "signal" and isinstance(v, str):
                    found.add(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(definition)
    return found


# --- the host ----------------------------------------------------------------------------


class _Host(dr.Host):  # type: ignore[misc]  # durable_rules ships no type hints
    """durable_rules' Host without its background dispatch threads (see module doc)."""

    def _run(self) -> None:
        return None


@dataclass(slots=True)
class _Generation:
    name: str
    signals: set[str]
    playbooks: dict[str, Playbook]
    fired: set[tuple[str, frozenset[str]]] = field(default_factory=set)


class Rules:
    """Playbooks in, matches out. One Host; one live generation at a time."""

    def __init__(self) -> None:
        self._host = _Host()
        self._count = 0
        self._gen: _Generation | None = None
        self._facts: dict[str, Fact] = {}  # every fact that holds now, asserted or not
        self._pending: list[Match] = []

    @property
    def generation(self) -> str | None:
        return self._gen.name if self._gen else None

    @property
    def signals(self) -> frozenset[str]:
        return frozenset(self._gen.signals) if self._gen else frozenset()

    def facts(self) -> list[Fact]:
        return list(self._facts.values())

    def load(self, playbooks: Sequence[Playbook], facts: Iterable[Fact] | None = None) -> list[Match]:
        """Swap in a new generation built from ``playbooks``; carry the facts that hold over.

        ``facts`` replaces the facts held (the sidecar passes what its signals say holds
        now, so facts of signals no playbook uses any more are dropped); by default every
        fact held is carried.

        Returns the matches of the new generation that were not already
        matched by the old one for the same facts (a new playbook whose
        diagnosis already holds fires; an unchanged one does not fire again).
        """
        definition = compile_rules(playbooks)
        self._count += 1
        name = f"suture_g{self._count}"
        runnable: dict[str, dict[str, Any]] = {rule: {**body, "run": self._recorder(rule)} for rule, body in definition.items()}
        # Always-firing no-op rule: durable_rules' delete_state segfaults on a state in which no
        # action ever ran, so every generation runs this one as soon as it starts (see _delete).
        runnable[READY_RULE] = {"all": [{"m": {"signal": READY_SIGNAL}}], "run": _noop}
        try:
            self._host.register_rulesets({name: runnable})
        except Exception as exc:  # durable_rules raises bare Exception for bad definitions
            raise RulesError(f"durable_rules refused the ruleset: {exc}") from exc
        if facts is not None:
            self._facts = {f.id: f for f in facts}
        old = self._gen
        new = _Generation(name=name, signals=signals_of(definition) | {READY_SIGNAL}, playbooks={p.id: p for p in playbooks})
        self._gen = new
        self._pending = []
        self._post(new, Fact(signal=READY_SIGNAL), assert_=True)
        for fact in list(self._facts.values()):
            if fact.signal in new.signals:
                self._post(new, fact, assert_=True)
        matches = self._drain()
        if old is not None:
            carried = {(m.playbook_id, frozenset(m.facts)) for m in matches} & old.fired
            matches = [m for m in matches if (m.playbook_id, frozenset(m.facts)) not in carried]
            self._delete(old)
        return matches

    def assert_fact(self, fact: Fact) -> list[Match]:
        """Record that ``fact`` holds; return the playbooks it completes."""
        if fact.id in self._facts:
            return []
        self._facts[fact.id] = fact
        if self._gen is None or fact.signal not in self._gen.signals:
            return []
        self._post(self._gen, fact, assert_=True)
        return self._drain()

    def retract_fact(self, fact: Fact) -> list[Match]:
        """Record that ``fact`` no longer holds; return playbooks whose `not` it completes."""
        held = self._facts.pop(fact.id, None)
        if held is None or self._gen is None:
            return []
        self._gen.fired = {f for f in self._gen.fired if fact.id not in f[1]}
        if held.signal not in self._gen.signals:
            return []
        self._post(self._gen, held, assert_=False)
        return self._drain()

    def close(self) -> None:
        if self._gen is not None:
            self._delete(self._gen)
            self._gen = None

    # -- internals --

    def _recorder(self, rule: str) -> Callable[[Any], None]:
        playbook_id = rule.split("#", 1)[0]

        def record(c: Any) -> None:
            matched = c._m or {}
            labels: dict[str, str] = {}
            ids = []
            for alias, fact in sorted(matched.items()):
                ids.append(fact["id"])
                if alias.startswith("p"):
                    labels.update(fact.get("labels") or {})
            gen = self._gen
            if gen is not None and playbook_id in gen.playbooks:
                wanted = gen.playbooks[playbook_id].group_by
                labels = {k: v for k, v in labels.items() if k in wanted}
            self._pending.append(Match(playbook_id=playbook_id, rule=rule, labels=labels, facts=tuple(sorted(ids))))

        return record

    def _post(self, gen: _Generation, fact: Fact, *, assert_: bool) -> None:
        call = self._host.assert_fact if assert_ else self._host.retract_fact
        try:
            call(gen.name, fact.as_json())
        except dr.MessageNotHandledException:
            pass  # no rule of this generation looks at that signal
        except dr.MessageObservedException as exc:
            raise RulesError(f"fact {fact.id} was asserted twice") from exc

    def _drain(self) -> list[Match]:
        out, self._pending = self._pending, []
        if self._gen is not None:
            for m in out:
                self._gen.fired.add((m.playbook_id, frozenset(m.facts)))
        return out

    def _delete(self, gen: _Generation) -> None:
        """Free a generation entirely (RSS stays flat only when all four steps run)."""
        ruleset = self._host._ruleset_directory.pop(gen.name, None)
        if ruleset is None:
            return
        self._host._ruleset_list.remove(ruleset)
        ruleset.delete_state(None)  # safe: the READY rule has run in this state
        durable_rules_engine.delete_ruleset(ruleset._handle)


def _noop(_c: Any) -> None:
    return None


def explain_rules(playbooks: Iterable[Playbook]) -> str:
    """The compiled ruleset as stable, indented JSON (used by golden tests and `suture check -v`)."""
    return json.dumps(compile_rules(playbooks), indent=2, sort_keys=True)
