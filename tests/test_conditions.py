"""holds(condition, reading): what each leaf condition means for one reading, decided in one place."""

from __future__ import annotations

import pytest
from suture.engine.conditions import (
    ContainerReading,
    Count,
    MetricReading,
    ProbeReading,
    Reading,
    counted,
    holds,
    unmet,
)
from suture.engine.playbook import (
    ContainerCondition,
    Leaf,
    LogCondition,
    MetricCondition,
    ProbeCondition,
    Where,
)

AT = Where(file="pb.yaml", line=3, path="when.metric")


def metric(**bounds: float) -> MetricCondition:
    return MetricCondition(name="cpu", at=AT, **bounds)


def probe(**kw: object) -> ProbeCondition:
    return ProbeCondition(name="api", at=AT, **kw)  # type: ignore[arg-type]


def log(**kw: int) -> LogCondition:
    return LogCondition(source="app", pattern="ERR", at=AT, **kw)  # type: ignore[arg-type]


def container(**kw: object) -> ContainerCondition:
    return ContainerCondition(name="worker", at=AT, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expected", "condition", "reading"),
    [
        (True, metric(above=90), MetricReading(91)),
        (False, metric(above=90), MetricReading(90)),
        (True, metric(below=10), MetricReading(9.5)),
        (False, metric(below=10), MetricReading(10)),
        (True, probe(status="healthy"), ProbeReading(healthy=True, latency_ms=5)),
        (False, probe(status="healthy"), ProbeReading(healthy=False)),
        (True, probe(status="unhealthy"), ProbeReading(healthy=False)),
        (True, probe(latency_above_ms=100), ProbeReading(healthy=True, latency_ms=150)),
        (False, probe(latency_above_ms=100), ProbeReading(healthy=True, latency_ms=100)),
        (False, probe(latency_above_ms=100), ProbeReading(healthy=False, latency_ms=None)),
        (True, probe(latency_below_ms=100), ProbeReading(healthy=True, latency_ms=99)),
        (False, probe(latency_below_ms=100), ProbeReading(healthy=True, latency_ms=None)),
        (True, probe(status="healthy", latency_above_ms=10, latency_below_ms=20), ProbeReading(healthy=True, latency_ms=15)),
        (False, probe(status="healthy", latency_above_ms=10, latency_below_ms=20), ProbeReading(healthy=True, latency_ms=25)),
        (True, container(state="exited"), ContainerReading("exited")),
        (False, container(state="exited"), ContainerReading("running")),
        (True, container(restarts_at_least=3), Count(3)),
        (False, container(restarts_at_least=3), Count(2)),
        (True, log(at_least=3), Count(3)),
        (False, log(at_least=3), Count(2)),
        (True, log(at_most=0), Count(0)),
        (False, log(at_most=0), Count(1)),
        (True, log(at_most=2), Count(2)),
    ],
)
def test_holds(expected: bool, condition: Leaf, reading: Reading) -> None:
    """Each bound a condition gives must hold for the reading; the edge of a bound is outside it."""
    assert holds(condition, reading) == expected


@pytest.mark.parametrize(
    ("expected", "condition", "reading"),
    [
        ("cpu = 80 (expected above 90)", metric(above=90), MetricReading(80)),
        ("cpu = 12.5 (expected below 10)", metric(below=10), MetricReading(12.5)),
        ("probe api is unhealthy (expected healthy)", probe(status="healthy"), ProbeReading(healthy=False)),
        ("probe api latency 300ms (expected below 250ms)", probe(latency_below_ms=250),
         ProbeReading(healthy=True, latency_ms=300)),
        ("probe api no latency (expected above 100ms)", probe(latency_above_ms=100), ProbeReading(healthy=False)),
        ("container worker is running (expected exited)", container(state="exited"), ContainerReading("running")),
        ("container worker restarted 1 time(s) (expected at least 3)", container(restarts_at_least=3), Count(1)),
        ("2 line(s) of app matched /ERR/ (expected at most 0)", log(at_most=0), Count(2)),
        ("1 line(s) of app matched /ERR/ (expected at least 3)", log(at_least=3), Count(1)),
    ],
)
def test_unmet_says_why(expected: str, condition: Leaf, reading: Reading) -> None:
    """The reason a condition does not hold names what was read and what was expected (for the history)."""
    assert unmet(condition, reading) == expected


def test_unmet_is_none_when_the_condition_holds() -> None:
    """Nothing to explain when the condition holds."""
    assert unmet(metric(above=1), MetricReading(2)) is None


def test_a_reading_of_another_kind_is_refused_saying_where() -> None:
    """A metric sample cannot judge a probe condition: TypeError naming the condition and where it was written."""
    with pytest.raises(TypeError, match=r"a MetricReading cannot judge probe api healthy \(pb.yaml:3 \(at when.metric\)\)"):
        holds(probe(status="healthy"), MetricReading(1))


@pytest.mark.parametrize(
    ("expected", "condition"),
    [
        (True, log(at_least=1)),
        (True, container(restarts_at_least=2)),
        (False, container(state="running")),
        (False, metric(above=1)),
        (False, probe(status="healthy")),
    ],
)
def test_counted(expected: bool, condition: Leaf) -> None:
    """Log conditions and restart counts are judged by a Count; the others by the latest reading."""
    assert counted(condition) == expected
