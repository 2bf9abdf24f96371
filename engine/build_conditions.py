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
    AlertCondition,
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
from .trend_specs import Anomaly, Predict
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
    if "anomaly" in body:
        if in_expect:
            b.problem((*path, "anomaly"), "anomaly needs a baseline longer than a validation window: use it in "
                                          "`when`, and at_most in `expect`", key=True)
        for key in ("at_least", "at_most", "within", "group_by"):
            if key in body:
                b.problem((*path, key), f"an anomaly condition counts its own buckets: drop {key}", key=True)
        return LogCondition(source=body["source"], pattern=body["pattern"],
                            anomaly=anomaly(b, body["anomaly"], (*path, "anomaly")), at=b.where(path))
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


DEFAULT_FIT_OVER = 1800.0  # predict: the fitted window when `over` is not given


def _bound(b: Builder, where: dict[str, Any], path: PathKey, what: str) -> tuple[float | None, float | None]:
    above, below = where.get("above"), where.get("below")
    if above is None and below is None:
        b.problem(path, f"{what}: expected exactly one of above, below; got neither")
    elif above is not None and below is not None:
        b.problem((*path, "below"), f"{what}: expected exactly one of above, below; got both", key=True)
    return above, below


def anomaly(b: Builder, body: dict[str, Any], path: PathKey) -> Anomaly:
    return Anomaly(sigma=float(body.get("sigma", 3.0)), baseline=b.duration((*path, "baseline"), body["baseline"], 3600.0),
                   direction=body.get("direction", "above"))


def metric(b: Builder, body: dict[str, Any], path: PathKey, in_expect: bool) -> MetricCondition:
    """A bound (top level, or inside ``rate``), a ``predict`` or an ``anomaly``: exactly one way to judge."""
    rate, pred, anom = body.get("rate"), body.get("predict"), body.get("anomaly")
    judged = [k for k in ("predict", "anomaly") if k in body]
    top = [k for k in ("above", "below") if k in body]
    in_rate = [k for k in ("above", "below") if rate and k in rate]
    if len(judged) > 1:
        b.problem((*path, "anomaly"), "use predict or anomaly, not both", key=True)
    if judged and in_expect:
        b.problem((*path, judged[0]), f"{judged[0]} needs a history longer than a validation window: use it in "
                                      "`when`, and a bound or a rate in `expect`", key=True)
    if judged and (top or in_rate):
        b.problem((*path, judged[0]), f"{judged[0]} sets its own bound: drop above/below", key=True)
    if top and in_rate:
        b.problem((*path, "rate"), "write the bound once: at the top or inside rate", key=True)
    if rate is not None and "quantile" in body:
        b.problem((*path, "rate"), "a quantile is of its buckets' increases already: use quantile with over, "
                                   "not rate", key=True)
    above = below = None
    if not judged:
        above, below = _bound(b, rate if rate is not None and in_rate else body,
                              (*path, "rate") if in_rate else path, "metric")
    prediction = None
    if pred is not None:
        p_above, p_below = _bound(b, pred, (*path, "predict"), "predict")
        prediction = Predict(within=b.duration((*path, "predict", "within"), pred["within"], 3600.0),
                             above=p_above, below=p_below)
    over = b.duration((*path, "over"), body.get("over"), DEFAULT_FIT_OVER if pred is not None else 0.0) or None
    if "over" in body and pred is None and "quantile" not in body:
        b.problem((*path, "over"), "over applies to predict and quantile (a rate has its own: rate.over)", key=True)
    labels_re = tuple(sorted(body.get("labels_re", {}).items()))
    for name, pattern in labels_re:
        b.regex((*path, "labels_re", name), pattern)
    return MetricCondition(
        name=body["name"], above=above, below=below,
        for_s=b.duration((*path, "for"), body.get("for"), 0.0),
        labels=tuple(sorted((k, str(v)) for k, v in body.get("labels", {}).items())), labels_re=labels_re,
        rate_over=b.duration((*path, "rate", "over"), rate["over"], 60.0) if rate is not None else None,
        quantile=float(body["quantile"]) if "quantile" in body else None, over=over,
        predict=prediction, anomaly=anomaly(b, anom, (*path, "anomaly")) if anom is not None else None,
        at=b.where(path))


def alert(b: Builder, body: dict[str, Any], path: PathKey, in_expect: bool) -> AlertCondition:
    return AlertCondition(name=body["name"], labels=tuple(sorted((k, str(v)) for k, v in body.get("labels", {}).items())),
                          state=body.get("state", "firing"), for_s=b.duration((*path, "for"), body.get("for"), 0.0),
                          at=b.where(path))


def scrape(b: Builder, body: dict[str, Any], path: PathKey, in_expect: bool) -> ProbeCondition:
    """A scraped source up or down: the probe the scraper reports as ``scrape.<source>``."""
    return ProbeCondition(name=f"scrape.{body['name']}",
                          status="healthy" if body.get("status", "down") == "up" else "unhealthy",
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


LEAVES: Mapping[str, LeafBuilder] = {"log": log, "metric": metric, "probe": probe, "container": container,
                                     "alert": alert, "scrape": scrape}
