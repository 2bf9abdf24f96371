"""The numbers behind rate, quantile, predict and anomaly conditions: pure functions over samples.

A *point* is ``(t, value)``, ``t`` in seconds; a list of points is in time order. Nothing
here keeps state or reads a clock (``engine.series`` keeps the bounded rings; the caller
says what ``now`` is).

- :func:`increase` / :func:`rate`: a counter's growth, resets handled as Prometheus does (a
  value lower than the one before means the counter restarted from zero: the new value is
  all growth since the reset).
- :func:`fit` / :func:`Fit.at`: ordinary least squares of value on time (``predict_linear``).
- :func:`baseline` / :func:`Baseline.score`: median and MAD of a baseline (a single spike moves
  neither), and how many scaled MADs a value lies from the median.
- :func:`histogram_quantile`: the q-quantile of cumulative ``le`` buckets, interpolated
  linearly inside the bucket, as Prometheus's ``histogram_quantile``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
MAD_SCALE = 1.4826  # MAD * this estimates the standard deviation of normal data
MIN_FIT_POINTS = 5


def increase(points: Sequence[Point]) -> float:
    """How much a counter grew over ``points``: the positive steps, a drop counted as a reset to zero."""
    total = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        total += after - before if after >= before else after
    return total


def rate(points: Sequence[Point]) -> float | None:
    """Per-second growth between the first and last point (None with fewer than two, or no time between)."""
    if len(points) < 2:
        return None
    span = points[-1][0] - points[0][0]
    return increase(points) / span if span > 0 else None


@dataclass(frozen=True, slots=True)
class Fit:
    """``value = slope * t + intercept``, fitted over ``n`` points spanning ``span`` seconds."""

    slope: float
    intercept: float
    n: int
    span: float

    def at(self, t: float) -> float:
        return self.slope * t + self.intercept


def fit(points: Sequence[Point]) -> Fit | None:
    """Least squares over ``points`` (None with fewer than :data:`MIN_FIT_POINTS` or all at one time).

    Times are centred before summing, so epoch-sized times do not cost precision."""
    n = len(points)
    if n < MIN_FIT_POINTS or all(t == points[0][0] for t, _ in points):
        return None
    mean_t = math.fsum(t for t, _ in points) / n
    mean_v = math.fsum(v for _, v in points) / n
    stt = math.fsum((t - mean_t) ** 2 for t, _ in points)
    if stt <= 0:
        return None
    slope = math.fsum((t - mean_t) * (v - mean_v) for t, v in points) / stt
    return Fit(slope=slope, intercept=mean_v - slope * mean_t, n=n, span=points[-1][0] - points[0][0])


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    mad: float  # median absolute deviation (unscaled)
    n: int

    @property
    def spread(self) -> float:
        """The robust standard deviation (MAD x 1.4826)."""
        return self.mad * MAD_SCALE

    def score(self, value: float) -> float:
        """How many robust deviations ``value`` lies from the median (signed). A baseline without spread
        (every value equal) scores any other value infinitely far, the median itself 0."""
        if self.spread > 0:
            return (value - self.median) / self.spread
        if value == self.median:
            return 0.0
        return math.copysign(math.inf, value - self.median)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def baseline(values: Sequence[float]) -> Baseline | None:
    if not values:
        return None
    m = median(values)
    return Baseline(median=m, mad=median([abs(v - m) for v in values]), n=len(values))


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile from cumulative ``(le, count)`` buckets (any order); None without a +Inf bucket,
    observations or a sane q. Past the last finite bound: that bound (as Prometheus)."""
    if not 0 <= q <= 1 or not buckets:
        return None
    ordered = sorted(buckets)
    if not math.isinf(ordered[-1][0]):
        return None
    counts = [c for _, c in ordered]
    for i in range(1, len(counts)):  # cumulative counts never fall (a scrape racing an observation may)
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank)
    upper = ordered[index][0]
    if math.isinf(upper):
        finite = [le for le, _ in ordered if not math.isinf(le)]
        return finite[-1] if finite else None
    lower = ordered[index - 1][0] if index > 0 else min(0.0, upper)
    below = counts[index - 1] if index > 0 else 0.0
    inside = counts[index] - below
    if inside <= 0:
        return upper
    return min(upper, max(lower, lower + (upper - lower) * (rank - below) / inside))  # rounding stays in the bucket
