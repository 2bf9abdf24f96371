"""Diagnosis and validation agree: a SignalBoard and a Judge fed the same readings say the same thing.

A playbook's ``when`` (the board: does the condition hold now?) and a fix's ``expect`` (the
judge: did it hold over the window?) are written in the same words, so for random conditions
(as the loader accepts them) and random readings, with no ``for`` duration:

- after each reading, the judge has a breach exactly when the board did not hold after some
  reading so far, and at the end of the window it passes exactly when the board held after
  every one;
- for counted conditions (log lines, restarts), the board holds after n events in its window
  exactly when the judge, given the same n events in its window, passes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from suture.engine.playbook import (
    ContainerCondition,
    Leaf,
    LogCondition,
    MetricCondition,
    Playbook,
    ProbeCondition,
    Validate,
    Where,
)
from suture.engine.validation import Judge
from suture.sidecar.signals import MatcherCache, SignalBoard

AT = Where(file="pb.yaml", line=1, path="when")
STATES = ("running", "exited", "restarting", "unhealthy")
WINDOW = 1000.0
PROPERTY = settings(max_examples=300, deadline=None)
MATCHERS = MatcherCache()  # the one pattern is compiled once for every example

numbers = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
latencies = st.none() | st.floats(min_value=0, max_value=5000, allow_nan=False)


@st.composite
def probes(draw: st.DrawFn) -> ProbeCondition:
    """A probe condition with at least one bound and, with both latency bounds, a band that is not empty."""
    status = draw(st.sampled_from([None, "healthy", "unhealthy"]))
    above = draw(st.none() | st.floats(min_value=0, max_value=2000))
    below = draw(st.none() | st.floats(min_value=0, max_value=4000))
    if above is not None and below is not None and below <= above:
        below = above + 1
    if status is None and above is None and below is None:
        status = "healthy"
    return ProbeCondition(name="api", status=status, latency_above_ms=above, latency_below_ms=below, at=AT)


metrics = st.one_of(
    st.builds(lambda v: MetricCondition(name="cpu", above=v, at=AT), numbers),
    st.builds(lambda v: MetricCondition(name="cpu", below=v, at=AT), numbers),
)
states = st.builds(lambda s: ContainerCondition(name="app", state=s, at=AT), st.sampled_from(STATES))


def probe_readings() -> st.SearchStrategy[tuple[bool, float | None]]:
    return st.tuples(st.booleans(), latencies)


def board_and_judge(condition: Leaf) -> tuple[SignalBoard, Judge]:
    """A board for a playbook whose ``when`` is ``condition``, and the judge of one whose ``expect`` is it."""
    validate = Validate(window=WINDOW, settle=0.0, expect=(condition,))
    pb = Playbook(id="p", when=condition, confidence=80, fix=(), validate=validate, file="pb.yaml", digest="")
    return SignalBoard([pb], matchers=MATCHERS), Judge(validate, 0.0)


def feed(board: SignalBoard, judge: Judge, condition: Leaf, reading: tuple[object, ...], at: float) -> None:
    if isinstance(condition, ProbeCondition):
        healthy, latency = reading
        board.probe("api", bool(healthy), latency, at)  # type: ignore[arg-type]
        judge.probe("api", bool(healthy), latency, at)  # type: ignore[arg-type]
    elif isinstance(condition, MetricCondition):
        (value,) = reading
        board.metric("cpu", value, at)  # type: ignore[arg-type]
        judge.metric("cpu", value, at)  # type: ignore[arg-type]
    else:
        (state,) = reading
        board.container("app", str(state), at)
        judge.container("app", str(state), False, at)


def readings_for(condition: Leaf) -> st.SearchStrategy[tuple[object, ...]]:
    if isinstance(condition, ProbeCondition):
        return probe_readings()
    if isinstance(condition, MetricCondition):
        return st.tuples(numbers)
    return st.tuples(st.sampled_from((*STATES, "created", "paused")))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Leaf, list[tuple[object, ...]]]:
    condition: Leaf = draw(st.one_of(probes(), metrics, states))
    return condition, draw(st.lists(readings_for(condition), max_size=12))


def holding(board: SignalBoard) -> bool:
    return bool(board.holding())


@PROPERTY
@given(cases())
def test_a_breach_is_exactly_a_reading_the_board_did_not_hold_for(case: tuple[Leaf, list[tuple[object, ...]]]) -> None:
    """For probe, metric and container-state conditions, reading by reading and at the window's end."""
    condition, readings = case
    board, judge = board_and_judge(condition)
    ever_unmet = False
    for i, reading in enumerate(readings):
        at = 1.0 + i
        feed(board, judge, condition, reading, at)
        ever_unmet |= not holding(board)
        assert ever_unmet == (judge.verdict(at).state == "breached"), (condition, readings[: i + 1])
    end = judge.verdict(WINDOW)
    expected = "inconclusive" if not readings else "breached" if ever_unmet else "passed"
    assert expected == end.state, (condition, readings)


@st.composite
def counted_cases(draw: st.DrawFn) -> tuple[Leaf, int]:
    bound = draw(st.integers(min_value=0, max_value=6))
    condition: Leaf = draw(st.sampled_from([
        LogCondition(source="app", pattern="ERR", at_least=max(bound, 1), within=WINDOW * 2, at=AT),
        LogCondition(source="app", pattern="ERR", at_most=bound, within=WINDOW * 2, at=AT),
        ContainerCondition(name="app", restarts_at_least=max(bound, 1), restarts_within=WINDOW * 2, at=AT),
    ]))
    return condition, draw(st.integers(min_value=0, max_value=8))


@PROPERTY
@given(counted_cases())
def test_counted_conditions_hold_for_the_same_counts(case: tuple[Leaf, int]) -> None:
    """n matching lines (or restarts) in both windows: the board holds exactly when the judge passes."""
    condition, n = case
    board, judge = board_and_judge(condition)
    board.start(0.0)
    for i in range(n + 1):  # one event more than counted: a line that matches nothing, a poll without restart
        at, counts = 1.0 + i, i < n
        if isinstance(condition, LogCondition):
            _, matched = board.line("app", "ERR" if counts else "fine", at)
            judge.line("app", matched, at)
        else:
            board.container("app", "running", at, restarted=counts)
            judge.container("app", "running", counts, at)

    assert holding(board) == (judge.verdict(WINDOW).state == "passed"), (condition, n)

