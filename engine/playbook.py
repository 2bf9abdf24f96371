"""The playbook model: frozen values built once from validated YAML.

Nothing here parses YAML or touches files; ``engine.loader`` builds these.
Leaf conditions carry a ``signal`` name derived from their content, so the
same condition written in two playbooks is one signal, evaluated once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .trend_specs import Anomaly, Predict

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``'500ms'`` -> 0.5, ``'2m'`` -> 120.0. Raises ValueError on anything else."""
    m = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not a duration (write 500ms, 30s, 2m, 1h or 1d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


@dataclass(frozen=True, slots=True, kw_only=True)
class Where:
    """Where a playbook element was written, for messages at run time."""

    file: str
    line: int
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} (at {self.path})"


def _signal_name(kind: str, payload: object) -> str:
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return f"{kind}-{digest}"


# --- conditions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LogCondition:
    """Lines of ``source`` matching ``pattern``: at least / at most N within a window."""

    source: str
    pattern: str
    at_least: int | None = None
    at_most: int | None = None
    within: float | None = None  # None in validate.expect: the validation window
    group_by: tuple[str, ...] = ()
    anomaly: Anomaly | None = None  # the match rate against its own baseline (then no at_least / at_most)
    at: Where = field(compare=False)

    @property
    def signal(self) -> str:
        payload: list[object] = [self.source, self.pattern, self.at_least, self.at_most, self.within,
                                 list(self.group_by)]
        if self.anomaly is not None:
            payload.append(dataclasses.asdict(self.anomaly))
        return _signal_name("log", payload)

    def describe(self) -> str:
        if self.anomaly is not None:
            return f"rate of {self.source} lines matching /{self.pattern}/ {self.anomaly.describe()}"
        bound = f"at least {self.at_least}" if self.at_least is not None else f"at most {self.at_most}"
        within = f" within {self.within:g}s" if self.within else ""
        return f"{bound} line(s) of {self.source} matching /{self.pattern}/{within}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricCondition:
    """A metric's series, transformed (``rate`` of a counter, ``quantile`` of a histogram) or not, compared
    with a bound, a predicted crossing (``predict``) or an ``anomaly`` against its own baseline, for ``for_s`` seconds.

    ``labels`` (exact) and ``labels_re`` (full-match regex) choose the series; in ``when`` the condition
    holds when it holds for some series, in ``validate.expect`` it must hold for every series seen.
    """

    name: str
    above: float | None = None
    below: float | None = None
    for_s: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()
    labels_re: tuple[tuple[str, str], ...] = ()
    rate_over: float | None = None  # per-second rate of a counter over this many seconds
    quantile: float | None = None  # of the histogram ``<name>_bucket``
    over: float | None = None  # quantile: the window of bucket increases; predict: the fitted window
    predict: Predict | None = None
    anomaly: Anomaly | None = None
    at: Where = field(compare=False)

    @property
    def plain(self) -> bool:
        """The latest sample of an unlabeled series against a bound (psutil, containers, JSON health)."""
        return not (self.labels or self.labels_re or self.rate_over or self.quantile is not None
                    or self.predict or self.anomaly)

    @property
    def signal(self) -> str:
        if self.plain:  # as before: a reload keeps these signals
            return _signal_name("metric", [self.name, self.above, self.below, self.for_s])
        return _signal_name("metric", [self.name, self.above, self.below, self.for_s, list(self.labels),
                                       list(self.labels_re), self.rate_over, self.quantile, self.over,
                                       dataclasses.asdict(self.predict) if self.predict else None,
                                       dataclasses.asdict(self.anomaly) if self.anomaly else None])

    def series(self) -> str:
        """The series as a person would write it: ``rate(http_requests_total{code="500"}[60s])``."""
        matchers = [f'{k}="{v}"' for k, v in self.labels] + [f'{k}=~"{v}"' for k, v in self.labels_re]
        text = self.name + ("{" + ",".join(matchers) + "}" if matchers else "")
        if self.quantile is not None:
            window = f"[{self.over:g}s]" if self.over else ""
            text = f"quantile {self.quantile:g} of {self.name}_bucket{text[len(self.name):]}{window}"
        if self.rate_over:
            text = f"rate({text}[{self.rate_over:g}s])"
        return text

    def describe(self) -> str:
        sustained = f" for {self.for_s:g}s" if self.for_s else ""
        if self.predict:
            return f"{self.series()} {self.predict.describe()} (fit over {self.over or 0:g}s){sustained}"
        if self.anomaly:
            return f"{self.series()} {self.anomaly.describe()}{sustained}"
        bounds = [f"{op} {v:g}" for op, v in ((">", self.above), ("<", self.below)) if v is not None]
        return f"{self.series()} {' and '.join(bounds)}{sustained}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertCondition:
    """An Alertmanager alert named ``name`` (its ``alertname``) with ``labels``, in ``state`` for ``for_s``."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()
    state: Literal["firing", "resolved"] = "firing"
    for_s: float = 0.0
    at: Where = field(compare=False)

    @property
    def signal(self) -> str:
        return _signal_name("alert", [self.name, list(self.labels), self.state, self.for_s])

    def describe(self) -> str:
        labels = "{" + ",".join(f'{k}="{v}"' for k, v in self.labels) + "}" if self.labels else ""
        sustained = f" for {self.for_s:g}s" if self.for_s else ""
        return f"alert {self.name}{labels} {self.state}{sustained}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeCondition:
    """A probe's status and/or latency, for at least ``for_s`` seconds."""

    name: str
    status: Literal["healthy", "unhealthy"] | None = None
    latency_above_ms: float | None = None
    latency_below_ms: float | None = None
    for_s: float = 0.0
    at: Where = field(compare=False)

    @property
    def signal(self) -> str:
        return _signal_name(
            "probe",
            [self.name, self.status, self.latency_above_ms, self.latency_below_ms, self.for_s],
        )

    def describe(self) -> str:
        parts: list[str] = []
        if self.status:
            parts.append(self.status)
        if self.latency_above_ms is not None:
            parts.append(f"latency > {self.latency_above_ms:g}ms")
        if self.latency_below_ms is not None:
            parts.append(f"latency < {self.latency_below_ms:g}ms")
        sustained = f" for {self.for_s:g}s" if self.for_s else ""
        return f"probe {self.name} {' and '.join(parts)}{sustained}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerCondition:
    """A container's state, or its restart count within a window."""

    name: str
    state: Literal["running", "exited", "restarting", "unhealthy"] | None = None
    restarts_at_least: int | None = None
    restarts_within: float | None = None
    at: Where = field(compare=False)

    @property
    def signal(self) -> str:
        return _signal_name(
            "container", [self.name, self.state, self.restarts_at_least, self.restarts_within]
        )

    def describe(self) -> str:
        if self.state:
            return f"container {self.name} is {self.state}"
        within = f" within {self.restarts_within:g}s" if self.restarts_within else ""
        return f"container {self.name} restarted at least {self.restarts_at_least} time(s){within}"


Leaf = LogCondition | MetricCondition | ProbeCondition | ContainerCondition | AlertCondition


@dataclass(frozen=True, slots=True, kw_only=True)
class AllOf:
    items: tuple[Condition, ...]

    def describe(self) -> str:
        return "all of (" + "; ".join(c.describe() for c in self.items) + ")"


@dataclass(frozen=True, slots=True, kw_only=True)
class AnyOf:
    items: tuple[Condition, ...]

    def describe(self) -> str:
        return "any of (" + "; ".join(c.describe() for c in self.items) + ")"


@dataclass(frozen=True, slots=True, kw_only=True)
class NotOf:
    item: Condition

    def describe(self) -> str:
        return "not (" + self.item.describe() + ")"


Condition = Leaf | AllOf | AnyOf | NotOf
LEAF_TYPES = (LogCondition, MetricCondition, ProbeCondition, ContainerCondition, AlertCondition)


def leaves(condition: Condition) -> list[Leaf]:
    """Every leaf of a condition tree, depth first."""
    if isinstance(condition, (AllOf, AnyOf)):
        return [leaf for item in condition.items for leaf in leaves(item)]
    if isinstance(condition, NotOf):
        return leaves(condition.item)
    return [condition]


def truth(condition: Condition, leaf: Callable[[Leaf], bool | None]) -> bool | None:
    """A condition tree's value from its leaves' values, where None is "not known" (Kleene's logic).

    ``all`` is False if any item is False, else unknown if any is unknown; ``any`` is True if
    any item is True, else unknown if any is unknown; ``not`` of unknown is unknown.
    """
    if isinstance(condition, AllOf):
        values = [truth(c, leaf) for c in condition.items]
        return False if False in values else None if None in values else True
    if isinstance(condition, AnyOf):
        values = [truth(c, leaf) for c in condition.items]
        return True if True in values else None if None in values else False
    if isinstance(condition, NotOf):
        value = truth(condition.item, leaf)
        return None if value is None else not value
    return leaf(condition)


# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Adjust:
    """Change a number found by ``key`` or by ``regex`` (named group ``value``)."""

    keyword: ClassVar[str] = "adjust"  # how a playbook writes it

    file: str
    key: str | None = None
    regex: str | None = None
    op: Literal["multiply", "add", "set"]
    amount: float
    minimum: float | None = None
    maximum: float | None = None
    round_to: int | None = None
    at: Where = field(compare=False)

    def describe(self) -> str:
        target = f"{self.file}:{self.key}" if self.key else f"{self.file} /{self.regex}/"
        bounds = []
        if self.minimum is not None:
            bounds.append(f"min {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"max {self.maximum:g}")
        b = f" ({', '.join(bounds)})" if bounds else ""
        return f"{self.op} {target} by {self.amount:g}{b}" if self.op != "set" else f"set {target} to {self.amount:g}{b}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetValue:
    """Set ``key`` of a structured file to a literal value."""

    keyword: ClassVar[str] = "set"  # how a playbook writes it

    file: str
    key: str
    value: str | int | float | bool
    at: Where = field(compare=False)

    def describe(self) -> str:
        return f"set {self.file}:{self.key} to {self.value!r}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Replace:
    """Replace what ``regex`` matches in a text file with a literal."""

    keyword: ClassVar[str] = "replace"  # how a playbook writes it

    file: str
    regex: str
    with_: str
    at: Where = field(compare=False)

    def describe(self) -> str:
        return f"replace /{self.regex}/ in {self.file}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Restore:
    """Put back the last good version of a file (see engine.actions)."""

    keyword: ClassVar[str] = "restore"  # how a playbook writes it

    file: str
    at: Where = field(compare=False)

    def describe(self) -> str:
        return f"restore the last good {self.file}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """Stop a container (a stopped container is not restarted by its restart policy)."""

    keyword: ClassVar[str] = "stop"  # how a playbook writes it

    container: str
    timeout: float = 10.0
    at: Where = field(compare=False)

    def describe(self) -> str:
        return f"stop container {self.container}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Restart:
    """Restart a container (Docker Engine API) or signal a process by pid file."""

    keyword: ClassVar[str] = "restart"  # how a playbook writes it

    container: str | None = None
    pidfile: str | None = None
    signal: str = "SIGTERM"
    at: Where = field(compare=False)

    def describe(self) -> str:
        if self.container:
            return f"restart container {self.container}"
        return f"send {self.signal} to the process in {self.pidfile}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exec:
    """Run a program (never through a shell) with a timeout."""

    keyword: ClassVar[str] = "exec"  # how a playbook writes it

    argv: tuple[str, ...]
    timeout: float = 30.0
    at: Where = field(compare=False)

    def describe(self) -> str:
        return "run " + " ".join(json.dumps(a) if " " in a else a for a in self.argv)


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """POST a JSON body describing the fix to a webhook."""

    keyword: ClassVar[str] = "notify"  # how a playbook writes it

    webhook: str
    at: Where = field(compare=False)

    def describe(self) -> str:
        return f"notify {self.webhook}"


Action = Adjust | SetValue | Replace | Restore | Restart | Stop | Exec | Notify
FILE_ACTIONS = (Adjust, SetValue, Replace, Restore)
_ACTION_TYPES: dict[str, type[Action]] = {
    t.__name__: t for t in (Adjust, SetValue, Replace, Restore, Restart, Stop, Exec, Notify)
}


def action_as_json(action: Action) -> dict[str, object]:
    """An action as JSON data, for the journal: what a fix will do is on record before it starts."""
    data: dict[str, object] = {"kind": type(action).__name__}
    for name in (f.name for f in dataclasses.fields(action)):  # not the ClassVar keyword
        value = getattr(action, name)
        data[name] = {"file": value.file, "line": value.line, "path": value.path} if name == "at" else (
            list(value) if isinstance(value, tuple) else value)
    return data


def action_from_json(data: dict[str, object]) -> Action:
    """Back from :func:`action_as_json`; ValueError when the data is not an action this version knows."""
    fields = dict(data)
    kind = _ACTION_TYPES.get(str(fields.pop("kind", "")))
    if kind is None:
        raise ValueError(f"not an action: {data.get('kind')!r}")
    at = fields.pop("at", None)
    try:
        where = Where(**at) if isinstance(at, dict) else Where(file="journal", line=0, path="")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        return kind(**values, at=where)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ValueError(f"not a {kind.__name__} action: {exc}") from None


# --- the playbook ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Validate:
    window: float
    settle: float = 0.0
    expect: tuple[Condition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Learning:
    model: Literal["beta", "linear"] = "beta"
    prior_weight: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Examples:
    """Lines that must fire the playbook's log conditions, and lines that must not."""

    fires: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()
    fire_lines: tuple[int, ...] = field(default=(), compare=False)  # where each was written
    ignore_lines: tuple[int, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Playbook:
    id: str
    description: str = ""
    severity: Literal["info", "warning", "critical"] = "warning"
    tags: tuple[str, ...] = ()
    when: Condition
    confidence: float
    fix: tuple[Action, ...]
    on_rollback: tuple[Action, ...] = ()
    validate: Validate
    cooldown: float = 600.0
    max_attempts: int = 3
    mode: Literal["shadow", "ask", "auto"] = "auto"
    scope: Literal["replica", "fleet"] = "replica"  # fleet: a shared target, one sidecar of the group acts
    on_inconclusive: Literal["rollback", "keep"] = "rollback"
    learning: Learning | None = None
    examples: Examples = Examples()
    file: str
    digest: str  # sha256 of the file's bytes: the playbook's version

    @property
    def group_by(self) -> tuple[str, ...]:
        """The label names that key this playbook's windows, cooldowns and fixes."""
        names: list[str] = []
        for leaf in leaves(self.when):
            if isinstance(leaf, LogCondition):
                names.extend(n for n in leaf.group_by if n not in names)
        return tuple(names)

    def files(self) -> tuple[str, ...]:
        """Every file a fix (or its on_rollback) may change, in order, once each."""
        out: list[str] = []
        for action in (*self.fix, *self.on_rollback):
            if isinstance(action, FILE_ACTIONS) and action.file not in out:
                out.append(action.file)
        return tuple(out)
