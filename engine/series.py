"""Series a ``metric`` condition watches, in bounded rings, and what the condition says of each now.

    watch = SeriesWatch(leaf)                      # one per non-plain metric condition
    watch.add("http_requests_total", (("code", "500"),), 1234.0, at=t)
    for labels, said in watch.judge(now).items():  # Said: holds / why not / the numbers behind it
        ...

Each sample of the condition's metric (``<name>_bucket`` for a ``quantile``) whose labels match
goes into the ring of its series. The *base* value of a series at each sample is the raw value,
the per-second ``rate`` over ``rate_over`` seconds, or the ``quantile`` of the bucket increases
over ``over`` seconds; the condition then compares the latest base value with its bound, fits a
line through the base values of the last ``over`` seconds (``predict``), or scores the latest
against the median and MAD of the ``baseline`` before it (``anomaly``). Nothing holds before
there is enough to judge (two samples for a rate, :data:`MIN_FIT_POINTS` over half the window
for a fit, :data:`MIN_BASELINE` points over half the baseline for an anomaly): the answer is
then "no data", never true.

Memory is bounded: a ring keeps only the samples its horizon needs, at most :data:`MAX_POINTS`;
at most :data:`MAX_SERIES` series per condition (the least recently seen one is dropped and
counted); a series not seen for :data:`STALE` seconds is forgotten. A point costs about 100
bytes (a tuple of two floats in a deque), so a series costs at most about 2 x MAX_POINTS x 100 B
(raw and base rings) = 800 KB, and a condition at most MAX_SERIES times that; a 5 s scrape
with a 1 h baseline keeps 720 points (about 72 KB) per ring. tests/test_series.py measures it.
Pure: no clock, no I/O.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from .conditions import MetricReading, unmet
from .playbook import LogCondition, MetricCondition
from .trend_specs import Anomaly
from .trends import MAD_SCALE, MIN_FIT_POINTS, Baseline, Point, baseline, fit, histogram_quantile, increase, rate

Labels = tuple[tuple[str, str], ...]
MAX_POINTS = 4096
MAX_SERIES = 256
STALE = 300.0
MIN_BASELINE = 10  # points in an anomaly's baseline before it may fire
RELATIVE_FLOOR = 0.01  # an anomaly's spread is at least 1 % of the baseline median (a flat series is not news)


@dataclass(frozen=True, slots=True)
class Said:
    """What the condition says of one series now: holds, or why not; ``known`` False: not enough data."""

    holds: bool
    known: bool
    value: float | None
    why: str  # the comparison, in words (for the history and `suture explain`)
    numbers: Mapping[str, float] = field(default_factory=dict)  # slope, predicted, median, mad, z, n, ...


@dataclass(slots=True)
class _Series:
    raw: deque[Point]
    base: deque[Point]
    buckets: deque[tuple[float, tuple[tuple[float, float], ...]]]  # quantile: (t, cumulative (le, count))
    seen: float = 0.0
    good_since: float | None = None


class SeriesWatch:
    def __init__(self, leaf: MetricCondition) -> None:
        self.leaf = leaf
        self.series: OrderedDict[Labels, _Series] = OrderedDict()
        self.dropped = 0  # series forgotten at the MAX_SERIES cap
        self._res = [(k, re.compile(v)) for k, v in leaf.labels_re]
        self.metric = leaf.name + "_bucket" if leaf.quantile is not None else leaf.name

    # -- in --

    def wants(self, name: str) -> bool:
        return name == self.metric

    def matches(self, labels: Labels) -> bool:
        have = dict(labels)
        return (all(have.get(k) == v for k, v in self.leaf.labels)
                and all(rx.fullmatch(have.get(k, "")) is not None for k, rx in self._res))

    def add_many(self, samples: list[tuple[Labels, float]], at: float) -> None:
        """One scrape's samples of :attr:`metric` (a histogram's buckets must come together)."""
        if self.leaf.quantile is None:
            for labels, value in samples:
                self.add(labels, value, at)
            return
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for labels, value in samples:
            le = dict(labels).get("le")
            bound = _float(le)
            if bound is None:
                continue
            rest = tuple(kv for kv in labels if kv[0] != "le")
            groups.setdefault(rest, []).append((bound, value))
        for rest, buckets in groups.items():
            if self.matches(rest):
                self._bucket(rest, tuple(sorted(buckets)), at)

    def add(self, labels: Labels, value: float, at: float) -> None:
        if not math.isfinite(value) or not self.matches(labels):
            return
        s = self._series(labels, at)
        if s.raw and at <= s.raw[-1][0]:
            return  # a repeated or older sample says nothing new
        s.raw.append((at, value))
        self._trim(s.raw, at, self._raw_horizon())
        if self.leaf.rate_over:
            r = rate([p for p in s.raw if p[0] >= at - self.leaf.rate_over])
            if r is not None:
                s.base.append((at, r))
        else:
            s.base.append((at, value))
        self._trim(s.base, at, self._base_horizon())

    def _bucket(self, labels: Labels, buckets: tuple[tuple[float, float], ...], at: float) -> None:
        s = self._series(labels, at)
        if s.buckets and at <= s.buckets[-1][0]:
            return
        s.buckets.append((at, buckets))
        self._trim_buckets(s, at)
        first = s.buckets[0][1] if self.leaf.over else ()
        q = histogram_quantile(self.leaf.quantile or 0.0, _increases(first, buckets) if first else list(buckets))
        if q is not None:
            s.base.append((at, q))
            self._trim(s.base, at, self._base_horizon())

    def _series(self, labels: Labels, at: float) -> _Series:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = _Series(deque(maxlen=MAX_POINTS), deque(maxlen=MAX_POINTS), deque(maxlen=MAX_POINTS))
            while len(self.series) > MAX_SERIES:
                self.series.popitem(last=False)
                self.dropped += 1
        else:
            self.series.move_to_end(labels)
        s.seen = at
        return s

    def _raw_horizon(self) -> float:
        return self.leaf.rate_over or 0.0

    def _base_horizon(self) -> float:
        leaf = self.leaf
        if leaf.anomaly:
            return leaf.anomaly.baseline
        if leaf.predict:
            return leaf.over or 0.0
        return 0.0

    def _trim_buckets(self, s: _Series, at: float) -> None:
        keep = self.leaf.over or 0.0
        while len(s.buckets) > 1 and s.buckets[0][0] < at - keep:
            s.buckets.popleft()

    @staticmethod
    def _trim(ring: deque[Point], at: float, horizon: float) -> None:
        """Keep what the horizon needs, and the one point just before it (a rate needs its start)."""
        while len(ring) > 1 and ring[1][0] <= at - horizon:
            ring.popleft()

    def expire(self, now: float) -> None:
        for labels in [k for k, s in self.series.items() if now - s.seen > STALE]:
            del self.series[labels]

    # -- out --

    def judge(self, now: float) -> dict[Labels, Said]:
        """What the condition says of every series now (``for`` not applied: the caller sustains)."""
        return {labels: self.said(s, now) for labels, s in self.series.items()}

    def said(self, s: _Series, now: float) -> Said:
        leaf = self.leaf
        if not s.base:
            return Said(False, False, None, f"{leaf.series()}: not enough samples yet")
        value = s.base[-1][1]
        if leaf.predict:
            return self._predict(s, value, now)
        if leaf.anomaly:
            return self._anomaly(s, value)
        why = unmet(leaf, MetricReading(value))  # the one place a bound is compared (engine.conditions)
        return Said(why is None, True, value, why or f"{leaf.series()} = {value:g}", {"value": value})

    def _predict(self, s: _Series, value: float, now: float) -> Said:
        leaf, p = self.leaf, self.leaf.predict
        assert p is not None
        over = leaf.over or 0.0
        points = [pt for pt in s.base if pt[0] >= now - over]
        line = fit(points)
        if line is None or line.span < over / 2:
            return Said(False, False, value, f"{leaf.series()}: {len(points)} sample(s) over "
                                             f"{(points[-1][0] - points[0][0]) if points else 0:g}s, the fit needs "
                                             f"{MIN_FIT_POINTS} over at least {over / 2:g}s")
        predicted = line.at(now + p.within)
        if p.above is not None:
            ok = line.slope > 0 and predicted > p.above
            bound = f"above {p.above:g}"
        else:
            ok = line.slope < 0 and p.below is not None and predicted < p.below
            bound = f"below {p.below:g}"
        numbers = {"value": value, "slope_per_s": line.slope, "predicted": predicted, "points": float(line.n),
                   "span_s": line.span}
        why = (f"{leaf.series()} = {value:g}, slope {line.slope:.6g}/s over {line.span:g}s: predicted "
               f"{predicted:.6g} in {p.within:g}s (expected {bound})")
        return Said(ok, True, value, why, numbers)

    def _anomaly(self, s: _Series, value: float) -> Said:
        leaf, a = self.leaf, self.leaf.anomaly
        assert a is not None
        history = list(s.base)[:-1]
        base = baseline([v for _, v in history])
        span = history[-1][0] - history[0][0] if history else 0.0
        if base is None or base.n < MIN_BASELINE or span < a.baseline / 2:
            return Said(False, False, value, f"{leaf.series()}: baseline of {len(history)} sample(s) over {span:g}s, "
                                             f"needs {MIN_BASELINE} over at least {a.baseline / 2:g}s")
        return anomalous(leaf.series(), a, value, base.median, base.mad, base.n,
                         floor=abs(base.median) * RELATIVE_FLOOR)


def anomalous(what: str, a: Anomaly, value: float, med: float, mad: float, n: int, *, floor: float) -> Said:
    """The anomaly verdict for ``value`` against a baseline (median, MAD of n values); ``floor``: least spread."""
    spread = max(mad * MAD_SCALE, floor, 1e-12)
    z = (value - med) / spread
    ok = z > a.sigma if a.direction == "above" else z < -a.sigma if a.direction == "below" else abs(z) > a.sigma
    numbers = {"value": value, "median": med, "mad": mad, "spread": spread, "z": z, "baseline_points": float(n)}
    why = (f"{what} = {value:g}: {z:+.2f} sigma from the baseline median {med:g} (robust spread {spread:.4g}, "
           f"{n} points; fires past {a.sigma:g} {a.direction})")
    return Said(ok, True, value, why, numbers)


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _increases(first: tuple[tuple[float, float], ...], last: tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
    """Per-bucket growth between two scrapes of a histogram (a bucket that fell: its counter was reset)."""
    before = dict(first)
    return [(le, increase([(0.0, before[le]), (1.0, count)]) if le in before else count) for le, count in last]


class LogRate:
    """A ``log`` condition's ``anomaly``: lines matched per bucket against the baseline's buckets.

    Buckets are ``max(10 s, baseline / 60)`` wide (a 1 h baseline: 60 one-minute buckets), empty
    ones counted as 0. The current count is the larger of the bucket filling now and the last
    complete one (so a burst does not stop counting at a bucket edge); the baseline is the complete
    buckets before those. Its spread is at least 1 line: on a quiet log (median 0, MAD 0) it takes
    more than ``sigma`` lines in a bucket to fire, not one. Memory: the baseline's buckets (ints).
    """

    def __init__(self, leaf: LogCondition) -> None:
        assert leaf.anomaly is not None
        self.leaf = leaf
        self.anomaly = leaf.anomaly
        self.width = max(10.0, leaf.anomaly.baseline / 60)
        self.keep = math.ceil(leaf.anomaly.baseline / self.width) + 2
        self.counts: deque[int] = deque(maxlen=self.keep)
        self.last: int | None = None  # index of the bucket counts[-1] is
        self._baseline: tuple[int | None, Baseline | None] = (None, None)  # the baseline changes once a bucket

    def add(self, at: float) -> None:
        self.advance(at)
        if self.counts:
            self.counts[-1] += 1

    def advance(self, now: float) -> None:
        index = math.floor(now / self.width)
        if self.last is None:
            self.counts.append(0)
            self.last = index
            return
        if index <= self.last:
            return  # an older line (replayed times) counts in the bucket filling now
        for _ in range(min(index - self.last, self.keep)):
            self.counts.append(0)
        self.last = index

    def said(self, now: float) -> Said:
        self.advance(now)
        counts = self.counts
        what = f"lines of {self.leaf.source} matching /{self.leaf.pattern}/ per {self.width:g}s"
        history = list(itertools.islice(counts, 0, max(0, len(counts) - 2)))
        if len(history) < MIN_BASELINE or len(history) * self.width < self.anomaly.baseline / 2:
            return Said(False, False, None, f"{what}: a baseline of {len(history)} bucket(s), needs "
                                            f"{max(MIN_BASELINE, math.ceil(self.anomaly.baseline / 2 / self.width))}")
        current = counts[-1] if self.anomaly.direction != "above" or len(counts) < 2 else max(counts[-1], counts[-2])
        if self.anomaly.direction != "above" and len(counts) >= 2:
            current = counts[-2]  # a falling rate is judged on complete buckets only
        if self._baseline[0] != self.last:  # per line, only the current count moves: the median is per bucket
            self._baseline = (self.last, baseline([float(c) for c in history]))
        base = self._baseline[1]
        assert base is not None
        return anomalous(what, self.anomaly, float(current), base.median, base.mad, base.n, floor=1.0)
