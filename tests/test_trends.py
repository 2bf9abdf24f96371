"""engine/trends.py against models that are obviously right, and against Prometheus.

- increase / rate: a counter is generated as a model (non-negative increments, resets to zero
  then more increments, a sample at every step), so its true growth is known: the sum of the
  increments. A reset is only visible as a drop, so the model's post-reset value stays below
  the value before it (as a real restart from zero with a sample soon after does).
- fit: points exactly on a line (epoch-sized times with sub-second spacing too) must give the
  line back; any points must give the least-squares line computed exactly, with fractions, by
  the textbook formula (numpy is not in the venv).
- median / baseline: against statistics.median and a direct MAD; one spike moves the median by
  at most one order statistic.
- histogram_quantile: Prometheus's own test expectations (promql/testdata/histograms.test), a
  port of its bucketQuantile (promql/quantile.go) as a differential reference, and the
  defining property: the estimate lies in the bucket that holds the true empirical quantile.
"""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from suture.engine.trends import (
    MAD_SCALE,
    MIN_FIT_POINTS,
    Baseline,
    baseline,
    fit,
    histogram_quantile,
    increase,
    median,
    rate,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INF = math.inf
EPOCH = 1.8e9

# -- increase / rate ---------------------------------------------------------------------------


@st.composite
def counters(draw: st.DrawFn, integral: bool = True) -> tuple[list[tuple[float, float]], Fraction]:
    """A counter sampled after every step, and the growth it really had (the sum of its increments).

    Each step either counts on (value += d) or restarts from zero and counts d before the next
    sample. The restart is visible only as a drop, so d < the value before (a counter already at
    zero may count anything: nothing is lost)."""
    steps = draw(st.integers(0, 25))
    t = draw(st.floats(0, 2e9))
    amount = st.integers(0, 10**9).map(float) if integral else st.floats(0, 1e6)
    value = draw(amount)
    points, growth = [(t, value)], Fraction(0)
    for _ in range(steps):
        t += draw(st.floats(0.001, 60))
        if draw(st.sampled_from(["count", "count", "count", "reset"])) == "reset":
            if value > 0:
                d = float(draw(st.integers(0, int(value) - 1))) if integral else draw(
                    st.floats(0, value, exclude_max=True))
            else:
                d = draw(amount)
            growth += Fraction(d)
            value = d
        else:
            before, value = value, value + draw(amount)
            growth += Fraction(value) - Fraction(before)  # what the stored value really grew by
        points.append((t, value))
    return points, growth


@FAST
@given(counters())
def test_increase_is_the_sum_of_the_increments_resets_included(counter: tuple[list, Fraction]) -> None:
    points, growth = counter
    assert increase(points) == growth  # whole numbers below 2**53: exact


@FAST
@given(counters(integral=False))
def test_increase_of_a_float_counter_is_its_growth(counter: tuple[list, Fraction]) -> None:
    points, growth = counter
    scale = math.fsum(v for _, v in points) + 1
    assert abs(Fraction(increase(points)) - growth) <= Fraction(1e-12) * Fraction(scale)


@FAST
@given(counters())
def test_rate_is_growth_over_the_span(counter: tuple[list, Fraction]) -> None:
    points, growth = counter
    if len(points) < 2:
        assert rate(points) is None
        return
    span = points[-1][0] - points[0][0]
    assert span > 0
    assert rate(points) == float(growth) / span


@FAST
@given(st.floats(0, 2e9), st.lists(st.floats(0, 1e9), max_size=10))
def test_rate_needs_two_points_and_some_time(t: float, values: list[float]) -> None:
    assert rate([(t, v) for v in values[:1]]) is None
    if len(values) >= 2:
        assert rate([(t, v) for v in values]) is None  # every sample at one time: no span


def test_increase_reads_a_drop_as_a_restart_from_zero() -> None:
    # 10 -> 15 (+5), restart, 3 (+3), 7 (+4): grew by 12 over 30 s
    points = [(0.0, 10.0), (10.0, 15.0), (20.0, 3.0), (30.0, 7.0)]
    assert increase(points) == 12
    assert rate(points) == pytest.approx(12 / 30)


def test_a_restart_that_overtakes_the_last_sample_is_invisible() -> None:
    # As in Prometheus: 5 -> (restart) -> counted 8 by the next sample looks like +3, not +8.
    assert increase([(0.0, 5.0), (1.0, 8.0)]) == 3


def test_increase_of_nothing_is_nothing() -> None:
    assert increase([]) == 0
    assert increase([(1.0, 42.0)]) == 0


# -- fit ---------------------------------------------------------------------------------------


def exact_fit(points: list[tuple[float, float]]) -> tuple[Fraction, Fraction]:
    """Ordinary least squares by the textbook formula, in exact rational arithmetic."""
    n = len(points)
    ts = [Fraction(t) for t, _ in points]
    vs = [Fraction(v) for _, v in points]
    st_, sv = sum(ts), sum(vs)
    stt = sum(t * t for t in ts)
    stv = sum(t * v for t, v in zip(ts, vs, strict=True))
    slope = (n * stv - st_ * sv) / (n * stt - st_ * st_)
    return slope, (sv - slope * st_) / n


def times(draw: st.DrawFn, n: int) -> list[float]:
    """``n`` times in order: near 0 or near an epoch second of today (~1.8e9), sub-second apart."""
    t = draw(st.sampled_from([0.0, EPOCH])) + draw(st.floats(0, 1e6))
    out = [t]
    for _ in range(n - 1):
        t += draw(st.floats(0.001, 1))
        out.append(t)
    return out


@st.composite
def lines(draw: st.DrawFn) -> tuple[Fraction, Fraction, list[tuple[float, float]]]:
    """Points exactly on ``value = slope * t + intercept``: dyadic slope, intercept and times with
    few enough bits that every value is a float without rounding."""
    n = draw(st.integers(MIN_FIT_POINTS, 40))
    slope = Fraction(draw(st.integers(-64_000, 64_000)), 64)
    intercept = Fraction(draw(st.integers(-10**9, 10**9)), 64)
    t0 = draw(st.sampled_from([0, int(EPOCH)])) + draw(st.integers(0, 10**6))
    ticks = draw(st.lists(st.integers(1, 8), min_size=n - 1, max_size=n - 1))  # 1/8 s to 1 s apart
    ts = [Fraction(t0) + Fraction(sum(ticks[:i]), 8) for i in range(n)]
    points = [(float(t), float(slope * t + intercept)) for t in ts]
    assume(all(Fraction(v) == slope * t + intercept for t, (_, v) in zip(ts, points, strict=True)))
    return slope, intercept, points


@FAST
@given(lines())
def test_fit_gives_back_the_line_through_exact_points(line: tuple[Fraction, Fraction, list]) -> None:
    slope, intercept, points = line
    f = fit(points)
    assert f is not None
    assert f.n == len(points) and f.span == points[-1][0] - points[0][0]
    assert f.slope == pytest.approx(float(slope), rel=1e-9, abs=1e-12)
    # The intercept is the line at t = 0, up to 1.8e9 s before the data: it can be no closer
    # than the rounding of the values' mean (relative to the values), nor need it be.
    scale = max(abs(v) for _, v in points) + abs(float(intercept)) + 1
    assert abs(f.intercept - float(intercept)) <= 1e-9 * scale
    for t, v in points:  # ... and where the data is (what predict uses) the line is the data's
        assert abs(f.at(t) - v) <= 1e-9 * scale


@st.composite
def noisy(draw: st.DrawFn) -> list[tuple[float, float]]:
    n = draw(st.integers(MIN_FIT_POINTS, 40))
    slope, intercept = draw(st.floats(-1e3, 1e3)), draw(st.floats(-1e6, 1e6))
    noise = st.floats(-1e3, 1e3)
    return [(t, slope * t + intercept + draw(noise)) for t in times(draw, n)]


@FAST
@given(noisy())
def test_fit_is_the_exact_least_squares_line(points: list[tuple[float, float]]) -> None:
    slope, intercept = exact_fit(points)
    f = fit(points)
    assert f is not None
    # Error bounds from the sums fit() rounds: each product is off by a few ulps of its own size.
    n = len(points)
    mt, mv = sum(Fraction(t) for t, _ in points) / n, sum(Fraction(v) for _, v in points) / n
    stt = sum((Fraction(t) - mt) ** 2 for t, _ in points)
    spread = sum(abs(Fraction(t) - mt) * abs(Fraction(v) - mv) for t, v in points) / stt
    slope_tol = 1e-9 * float(max(abs(slope), spread))
    assert abs(f.slope - float(slope)) <= slope_tol
    top_t, top_v = max(abs(t) for t, _ in points), max(abs(v) for _, v in points)
    intercept_tol = 1e-9 * (top_v + abs(float(slope)) * top_t) + top_t * slope_tol
    assert abs(f.intercept - float(intercept)) <= intercept_tol


def test_fit_of_a_disk_filling_one_percent_a_minute() -> None:
    points = [(EPOCH + 60 * i, 50.0 + i) for i in range(10)]
    f = fit(points)
    assert f is not None
    assert f.slope == pytest.approx(1 / 60)
    assert f.at(EPOCH + 60 * 45) == pytest.approx(95.0)  # crosses 95 % 45 minutes in
    assert f.n == 10 and f.span == 540


@FAST
@given(st.data(), st.integers(0, MIN_FIT_POINTS - 1))
def test_fit_needs_five_points(data: st.DataObject, n: int) -> None:
    ts = times(data.draw, n) if n else []
    assert fit([(t, data.draw(st.floats(-1e6, 1e6))) for t in ts]) is None


def test_fit_of_points_all_at_one_round_time_is_none() -> None:
    assert fit([(100.0, v) for v in [1.0, 2.0, 3.0, 4.0, 5.0]]) is None


@FAST
@given(st.floats(0, 2e9), st.lists(st.floats(-1e6, 1e6), min_size=MIN_FIT_POINTS, max_size=20))
@example(t=1717986918.5515254, values=[0.0] * 5)  # the case that once returned a Fit of span 0
def test_fit_needs_more_than_one_time(t: float, values: list[float]) -> None:
    assert fit([(t, v) for v in values]) is None


# -- median / baseline / score -----------------------------------------------------------------

values = st.lists(st.floats(-1e12, 1e12), min_size=1, max_size=50)


@FAST
@given(values)
def test_median_is_statistics_median(xs: list[float]) -> None:
    assert median(xs) == statistics.median(xs)


@FAST
@given(values)
def test_baseline_is_median_and_mad(xs: list[float]) -> None:
    b = baseline(xs)
    m = statistics.median(xs)
    assert b == Baseline(median=m, mad=statistics.median([abs(x - m) for x in xs]), n=len(xs))
    assert b.spread == b.mad * MAD_SCALE


def test_baseline_of_nothing_is_none() -> None:
    assert baseline([]) is None


@FAST
@given(st.lists(st.floats(-1e6, 1e6), min_size=5, max_size=50), st.floats(1e3, 1e9), st.booleans())
def test_one_spike_moves_the_median_at_most_one_order_statistic(xs: list[float], size: float, up: bool) -> None:
    ordered, n = sorted(xs), len(xs)
    low, high = ordered[0], ordered[-1]
    spike = high + size * (high - low + 1) if up else low - size * (high - low + 1)
    before, after = baseline(xs), baseline([*xs, spike])
    assert before is not None and after is not None
    assert low <= after.median <= high
    # the middle pair is ordered[(n-1)//2] and ordered[n//2]: the spike shifts it by one at most
    assert ordered[max(0, (n - 1) // 2 - 1)] <= after.median <= ordered[min(n - 1, n // 2 + 1)]
    # the spread is no more than the values' own range, however far the spike
    assert after.mad <= high - low
    if after.spread > 0:  # the spike scores furthest (>=: a subnormal spread overflows every score to inf)
        assert abs(after.score(spike)) >= max(abs(after.score(high)), abs(after.score(low)))


@FAST
@given(values, st.floats(-1e12, 1e12))
def test_score_counts_robust_deviations_from_the_median(xs: list[float], v: float) -> None:
    b = baseline(xs)
    assert b is not None
    assert b.score(b.median) == 0
    s = b.score(v)
    assert math.copysign(1, s) == math.copysign(1, v - b.median) or s == 0
    if b.spread > 0:
        assert s == pytest.approx((v - b.median) / (b.mad * MAD_SCALE))
    elif v != b.median:
        assert s == math.copysign(INF, v - b.median)


def test_score_examples() -> None:
    b = baseline([1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert b == Baseline(median=5, mad=2, n=9)
    assert b.score(5 + 3 * 2 * MAD_SCALE) == pytest.approx(3)  # three robust deviations up
    assert b.score(5 - 2 * MAD_SCALE) == pytest.approx(-1)
    flat = baseline([7.0] * 6)
    assert flat.spread == 0
    assert flat.score(7.0) == 0
    assert flat.score(7.5) == INF and flat.score(6.0) == -INF


# -- histogram_quantile ------------------------------------------------------------------------


def prometheus_bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """promql/quantile.go bucketQuantile, line for line (without the 1e-12 precision fix, which
    whole-number counts never trigger)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -INF
    if q > 1:
        return INF
    bs = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(bs[-1][0]):
        return math.nan
    merged: list[list[float]] = []  # coalesceBuckets
    for le, c in bs:
        if merged and merged[-1][0] == le:
            merged[-1][1] += c
        else:
            merged.append([le, c])
    top = merged[0][1]  # ensureMonotonic
    for b in merged[1:]:
        top = b[1] = max(top, b[1])
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)  # sort.Search
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count) if count else math.nan  # Go: 0/0 is NaN


# promql/testdata/histograms.test, the two test histograms at 50m (and as 5m rates)
POSITIVE = [(0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (INF, 120.0)]
NEGATIVE = [(-0.2, 10.0), (-0.1, 20.0), (0.3, 20.0), (INF, 30.0)]
SUMMED = [(0.1, 100.0), (0.2, 190.0), (INF, 250.0)]  # request_duration_seconds summed by le


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0, POSITIVE, 0.0),
        (0, NEGATIVE, -0.2),
        (1, POSITIVE, 1.0),
        (1, NEGATIVE, 0.3),
        (0.2, POSITIVE, 0.048),
        (0.2, NEGATIVE, -0.2),
        (0.5, POSITIVE, 0.15),
        (0.5, NEGATIVE, -0.15),
        (0.8, POSITIVE, 0.72),
        (0.8, NEGATIVE, 0.3),
        (0.3, SUMMED, 0.075),
        (0.5, SUMMED, 0.1277777777777778),
    ],
)
def test_prometheus_histograms_test_expectations(q: float, buckets: list, expected: float) -> None:
    assert histogram_quantile(q, buckets) == pytest.approx(expected)
    as_rates = [(le, c / 300) for le, c in reversed(buckets)]  # rate(...[5m]), any order
    assert histogram_quantile(q, as_rates) == pytest.approx(expected)


def test_histogram_quantile_examples() -> None:
    # half the observations are at most 0.1: the median is interpolated to the top of that bucket
    assert histogram_quantile(0.5, [(0.1, 5), (0.5, 10), (INF, 10)]) == pytest.approx(0.1)
    assert histogram_quantile(0.25, [(0.1, 5), (0.5, 10), (INF, 10)]) == pytest.approx(0.05)
    # a rank past the last finite bound: that bound (nothing says how far beyond it the rest are)
    assert histogram_quantile(0.99, [(0.1, 5), (0.5, 10), (INF, 20)]) == 0.5
    # without a +Inf bucket, or without observations, there is no quantile
    assert histogram_quantile(0.5, [(0.1, 5), (0.5, 10)]) is None
    assert histogram_quantile(0.5, [(0.1, 0), (0.5, 0), (INF, 0)]) is None
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(INF, 10)]) is None  # only +Inf: no finite bound to answer


@pytest.mark.parametrize("q", [-0.1, 1.01, -INF, INF, math.nan])
def test_histogram_quantile_outside_0_1_is_none(q: float) -> None:
    # Prometheus answers -Inf / +Inf / NaN; suture says "no quantile" (its docstring: a sane q)
    assert histogram_quantile(q, POSITIVE) is None


@st.composite
def bucket_sets(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Distinct finite bounds plus +Inf, with whole-number counts that may even fall (a racing scrape)."""
    bounds = draw(st.lists(st.floats(-1e3, 1e3), min_size=0, max_size=8, unique=True))
    counts = draw(st.lists(st.integers(0, 1000), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    buckets = [(le, float(c)) for le, c in zip([*bounds, INF], counts, strict=True)]
    return draw(st.permutations(buckets))


@FAST
@given(st.floats(0, 1), bucket_sets())
def test_histogram_quantile_is_prometheus_bucket_quantile(q: float, buckets: list) -> None:
    reference = prometheus_bucket_quantile(q, buckets)
    got = histogram_quantile(q, buckets)
    if math.isnan(reference):
        lowest = min(buckets)
        if q == 0 and lowest[1] == 0 and lowest[0] > 0 and max(c for _, c in buckets) > 0:
            # Prometheus computes 0/0 for q = 0 with an empty lowest bucket; suture answers a number
            assert got is not None and math.isfinite(got)
        else:
            assert got is None
    else:  # the same formula, its terms in another order: a few ulps apart at most
        assert got == pytest.approx(reference, rel=1e-12, abs=0)


@st.composite
def observed(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    bounds = sorted(draw(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8, unique=True)))
    # some observations right on a bound: buckets are "less than or equal"
    xs = draw(st.lists(st.one_of(st.floats(-2e3, 2e3), st.sampled_from(bounds)), min_size=1, max_size=60))
    return bounds, xs


def true_quantile_bucket(q: float, bounds: list[float], xs: list[float]) -> tuple[list, float, float]:
    """The cumulative buckets of ``xs`` and the bounds of the bucket holding their empirical q-quantile."""
    buckets = [(le, float(sum(x <= le for x in xs))) for le in bounds] + [(INF, float(len(xs)))]
    k = max(1, math.ceil(q * len(xs)))  # the k-th smallest is the empirical q-quantile
    true = sorted(xs)[k - 1]
    i = next((i for i, le in enumerate(bounds) if true <= le), len(bounds))
    return buckets, bounds[i - 1] if i > 0 else -INF, bounds[i] if i < len(bounds) else INF


@FAST
@given(st.floats(0, 1, exclude_min=True), observed())
def test_histogram_quantile_lies_in_the_bucket_of_the_true_quantile(q: float, sample: tuple) -> None:
    bounds, xs = sample
    buckets, lower, upper = true_quantile_bucket(q, bounds, xs)
    got = histogram_quantile(q, buckets)
    assert got is not None
    # lower + (upper - lower) * fraction rounds three times: a few ulps of the bounds' size
    slack = 4 * 2**-52 * max((abs(b) for b in (lower, upper) if math.isfinite(b)), default=0)
    assert lower - slack <= got <= upper + slack


def test_histogram_quantile_never_leaves_the_bucket_by_rounding() -> None:
    buckets, lower, upper = true_quantile_bucket(1.0, [-1.0, -4.364626642615476e-29], [-0.5])
    assert lower <= histogram_quantile(1.0, buckets) <= upper
