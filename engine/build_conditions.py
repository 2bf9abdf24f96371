"""Conditions from their validated YAML: ``all``/``any``/``not`` and one builder per leaf kind.

:data:`LEAVES` maps each leaf's keyword (as the schema and a playbook write it) to its
builder; a new kind of condition adds its builder there (a test checks the table against
the schema). Each builder checks what the schema cannot say (a regex that compiles, group
names it has, exactly one bound) and records problems on the :class:`~.build.Builder`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .build import Builder, as_int
from .playbook import (
    AllOf,
    AnyOf,
    Condition,
    ContainerCondition,
    Leaf,
    LogCondition,
    MetricCondition,
    NotOf,
    ProbeCondition,
)
from .yaml_document import PathKey

DEFAULT_WITHIN = 60.0  # a log condition's window in ``when`` when it names none
DEFAULT_RESTARTS_WITHIN = 600.0

LeafBuilder = Callable[[Builder, dict[str, Any], PathKey, bool], Leaf]


def condition(b: Builder, node: dict[str, Any], path: PathKey, *, in_expect: bool) -> Condition:
    """A condition tree; ``in_expect``: it is a validation expectation (other defaults apply)."""
    ((kind, body),) = node.items()
    here = (*path, kind)
    if kind == "all":
        return AllOf(items=tuple(condition(b, c, (*here, i), in_expect=in_expect) for i, c in enumerate(body)))
    if kind == "any":
        return AnyOf(items=tuple(condition(b, c, (*here, i), in_expect=in_expect) for i, c in enumerate(body)))
    if kind == "not":
        return NotOf(item=condition(b, body, here, in_expect=in_expect))
    return LEAVES[kind](b, body, here, in_expect)


def log(b: Builder, body: dict[str, Any], path: PathKey, in_expect: bool) -> LogCondition:
    """At least one line within a minute by default; in ``expect``, no line in the whole window."""
    compiled = b.regex((*path, "pattern"), body["pattern"])
    at_least, at_most = as_int(body.get("at_least")), as_int(body.get("at_most"))
    if at_least is not None and at_most is not None:
        b.problem((*path, "at_most"), "use at_least or at_most, not both", key=True)
    if at_least is None and at_most is None:
        if in_expect:
            at_most = 0
        else:
            at_least = 1
    group_by = tuple(body.get("group_by", ()))
    if compiled is not None:
        for i, name in enumerate(group_by):
            if name not in compiled.groupindex:
                known = ", ".join(compiled.groupindex) or "none"
                b.problem((*path, "group_by", i),
                          f"group_by '{name}' is not a named group of the pattern (named groups: {known})")
    within_text = body.get("within")
    if within_text is not None:
        within: float | None = b.duration((*path, "within"), within_text, DEFAULT_WITHIN)
    else:
        within = None if in_expect else DEFAULT_WITHIN
    return LogCondition(source=body["source"], pattern=body["pattern"], at_least=at_least, at_most=at_most,
                        within=within, group_by=group_by, at=b.where(path))


def metric(b: Builder, body: dict[str, Any], path: PathKey, in_expect: bool) -> MetricCondition:
    above, below = body.get("above"), body.get("below")
    if above is None and below is None:
        b.problem(path, "expected exactly one of above, below; got neither")
    elif above is not None and below is not None:
        b.problem((*path, "below"), "expected exactly one of above, below; got both", key=True)
    return MetricCondition(name=body["name"], above=above, below=below,
                           for_s=b.duration((*path, "for"), body.get("for"), 0.0), at=b.where(path))


def probe(b: Builder, body: dict[str, Any], path: PathKey, in_expect: bool) -> ProbeCondition:
    latency = body.get("latency_ms", {})
    if "status" not in body and not latency:
        b.problem(path, "a probe condition needs status, latency_ms or both")
    above, below = latency.get("above"), latency.get("below")
    if above is not None and below is not None and below <= above:
        b.problem((*path, "latency_ms"), f"below ({below}) must be greater than above ({above})")
    return ProbeCondition(name=body["name"], status=body.get("status"), latency_above_ms=above,
                          latency_below_ms=below, for_s=b.duration((*path, "for"), body.get("for"), 0.0),
                          at=b.where(path))


def container(b: Builder, body: dict[str, Any], path: PathKey, in_expect: bool) -> ContainerCondition:
    restarts = body.get("restarts")
    if ("state" in body) == (restarts is not None):
        got = "both" if restarts is not None else "neither"
        b.problem(path, f"expected exactly one of state, restarts; got {got}")
    within = (b.duration((*path, "restarts", "within"), restarts.get("within"), DEFAULT_RESTARTS_WITHIN)
              if restarts else None)
    return ContainerCondition(name=body["name"], state=body.get("state"),
                              restarts_at_least=as_int(restarts["at_least"]) if restarts else None,
                              restarts_within=within, at=b.where(path))


LEAVES: Mapping[str, LeafBuilder] = {"log": log, "metric": metric, "probe": probe, "container": container}
