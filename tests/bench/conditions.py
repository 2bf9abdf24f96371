"""Condition evaluation cost per sample: every metric and log condition kind, beside the same statistic
computed plainly with the standard library, in the same run.

Each condition is one playbook's ``when``, built by the real loader, on a :class:`SignalBoard` of its
own. One series is fed what the core feeds it (``SignalBoard.metrics`` with one scrape's samples of
the metric, a histogram's buckets together; ``SignalBoard.line`` for a log line): a sample every 5 s
of simulated time for 6 hours (2 with ``--quick``; the engine takes the clock as an argument, so
nothing waits), the data seeded and shaped so that each condition holds for part of the run. Timed
with ``perf_counter_ns`` around each call: the *sample* (the call, which also judges the series) and
one *tick* between two samples (``SignalBoard.tick``: the core ticks every ``runtime.TICK`` = 0.5 s,
which judges every series again, so a series gets 10 ticks per 5 s sample).

The baseline is timed interleaved with it, sample by sample (the order alternating), on the same
samples: a ``collections.deque`` of ``(t, value)`` over the same window, the same statistic computed
directly, the same verdict (its gating rules too: minimum points, half the window, the 1 % floor),
so both must agree on every sample and tick; the table counts the verdicts that differ:

- above/for: the latest value in a ``deque(maxlen=1)``, compared with the bound; since when it holds;
- rate: the points of the last minute; increase over ``itertools.pairwise`` (a drop is a reset) / span;
- quantile: the bucket counts (``le`` parsed with ``float``) of the last 5 min; per-bucket increases from
  the first to the latest; the rank found with ``bisect.bisect_left``, interpolated in its bucket;
- predict: the points of the last 30 min; ``statistics.linear_regression``, extrapolated an hour on;
- anomaly: the points of the last hour; ``statistics.median`` of the ones before the latest and of
  their absolute deviations (MAD x 1.4826), the latest's z-score;
- log anomaly: ``re.search`` of the pattern; one-minute buckets in a ``deque``; ``statistics.median``
  and MAD of the complete buckets, recomputed once per bucket (as suture does).

For the log anomaly a sample is a matching line (one every 5 s on average, bursts five times as
dense), fed as one line; the pattern's match is part of its cost, and of the baseline's.

Memory per series: what feeding the first 1.5 h (every window full by then) to a board (a
baseline) built beforehand left allocated (``tracemalloc``, in a second pass, untimed): the
series' rings, its last verdict and the text of it; the samples are generated as they are fed,
so what a ring keeps of them counts.

Columns: "samples holding", after how many samples suture's condition held (the data exercise it);
"% of a core", suture's samples plus a tick every 0.5 s, per second of simulated time.

    python tests/bench/run.py conditions            # 6 h simulated, ~20 s
    python tests/bench/run.py conditions --quick    # 2 h, ~7 s
"""

from __future__ import annotations

import abc
import bisect
import gc
import itertools
import math
import os
import random
import re
import statistics
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from suture.engine.loader import parse_playbook
from suture.sidecar.runtime import TICK
from suture.sidecar.signals import SignalBoard, Transition

INTERVAL = 5.0
HOURS, QUICK_HOURS = 6.0, 2.0
MEMORY_HOURS = 1.5  # every window (the longest: an hour) full: the state a series keeps from then on
T0 = 1_795_564_800.0  # 2026-11-25T00:00:00Z: epoch-sized times, as the sidecar's
LE = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
Labels = tuple[tuple[str, str], ...]
Samples = list[tuple[Labels, float]]


# -- the data: (t, what the board is fed) ------------------------------------------------------------


def _grid(hours: float) -> Iterator[float]:
    return (T0 + i * INTERVAL for i in range(int(hours * 3600 / INTERVAL)))


def queue_size(rnd: random.Random, hours: float) -> Iterator[tuple[float, Samples]]:
    """Around 700, over 1000 for ~10 minutes each hour."""
    for t in _grid(hours):
        yield t, [((), 700 + 400 * math.sin(2 * math.pi * (t - T0) / 3600) + rnd.gauss(0, 20))]


def errors_total(rnd: random.Random, hours: float) -> Iterator[tuple[float, Samples]]:
    """A counter of 500s: ~3/s, ~8/s for 10 minutes every 90; the process restarts (reset) every 2 h."""
    value = 0.0
    for t in _grid(hours):
        s = t - T0
        if s and s % 7200 == 0:
            value = 0.0
        value += rnd.uniform(0.6, 1.4) * (8 if s % 5400 < 600 else 3) * INTERVAL
        yield t, [((("code", "500"),), value)]


def duration_buckets(rnd: random.Random, hours: float) -> Iterator[tuple[float, Samples]]:
    """A histogram, 50 requests every 5 s, mostly under 0.1 s; 10 minutes every 70 slow (p99 past 0.5 s)."""
    counts = [0.0] * len(LE)
    names = [((("le", "+Inf" if math.isinf(le) else f"{le:g}"),)) for le in LE]
    for t in _grid(hours):
        slow = (t - T0) % 4200 < 600
        for _ in range(50):
            took = rnd.expovariate(1 / (0.4 if slow and rnd.random() < 0.1 else 0.03))
            for i in range(bisect.bisect_left(LE, took), len(LE)):
                counts[i] += 1
        yield t, [(name, c) for name, c in zip(names, counts, strict=True)]


def disk_percent(rnd: random.Random, hours: float) -> Iterator[tuple[float, Samples]]:
    """Filling from 40 % to ~97 % over 2 h, then cleaned up; +-0.2 of noise."""
    for t in _grid(hours):
        yield t, [((), 40 + 57 * ((t - T0) % 7200) / 7200 + rnd.uniform(-0.2, 0.2))]


def latency_p99(rnd: random.Random, hours: float) -> Iterator[tuple[float, Samples]]:
    """0.2 s +- 0.01; for one minute every 47, 0.35 s."""
    for t in _grid(hours):
        yield t, [((), 0.35 if (t - T0) % 2820 < 60 else 0.2 + rnd.gauss(0, 0.01))]


def error_lines(rnd: random.Random, hours: float) -> Iterator[tuple[float, str]]:
    """An ERROR line every 5 s on average (exponential gaps); 5 times as often for 3 minutes every 80."""
    t, end = T0, T0 + hours * 3600
    while True:
        t += rnd.expovariate((5 if (t - T0) % 4800 < 180 else 1) / INTERVAL)
        if t >= end:
            return
        yield t, f"2026-11-25T00:00:00Z ERROR upstream timeout after 30s (request {int(t) % 100_000})"


# -- the baseline: the same statistic, written plainly -------------------------------------------------


class Baseline(abc.ABC):
    """A condition's state, written plainly: ``add`` a sample, say whether it ``holds`` now."""

    @abc.abstractmethod
    def add(self, at: float, sample: Any) -> None: ...

    @abc.abstractmethod
    def holds(self, now: float) -> bool: ...

    def sample(self, at: float, sample: Any) -> bool:
        """What a sample costs: taken, then judged (as SignalBoard.metrics and .line judge at once)."""
        self.add(at, sample)
        return self.holds(at)


class Above(Baseline):
    def __init__(self) -> None:
        self.ring: deque[tuple[float, float]] = deque(maxlen=1)
        self.since: float | None = None

    def add(self, at: float, sample: Samples) -> None:
        self.ring.append((at, sample[0][1]))

    def holds(self, now: float) -> bool:
        at, value = self.ring[-1]
        if value <= 1000:
            self.since = None
        elif self.since is None:
            self.since = at
        return self.since is not None and now - self.since >= 120


class Window(Baseline):
    """The points of the last ``horizon`` seconds."""

    horizon: float

    def __init__(self) -> None:
        self.ring: deque[tuple[float, float]] = deque()

    def add(self, at: float, sample: Samples) -> None:
        self.ring.append((at, sample[0][1]))
        while self.ring[0][0] < at - self.horizon:
            self.ring.popleft()


class Rate(Window):
    horizon = 60.0
    value: float | None = None

    def add(self, at: float, sample: Samples) -> None:
        super().add(at, sample)
        ring = self.ring
        span = ring[-1][0] - ring[0][0]
        if span > 0:
            grew = sum(b - a if b >= a else b for (_, a), (_, b) in itertools.pairwise(ring))
            self.value = grew / span

    def holds(self, now: float) -> bool:
        return self.value is not None and self.value > 5


class Quantile(Baseline):
    def __init__(self) -> None:
        self.ring: deque[tuple[float, list[tuple[float, float]]]] = deque()
        self.value: float | None = None

    def add(self, at: float, sample: Samples) -> None:
        ring = self.ring
        ring.append((at, sorted((float(dict(labels)["le"]), count) for labels, count in sample)))
        while len(ring) > 1 and ring[0][0] < at - 300:
            ring.popleft()
        first, last = ring[0][1], ring[-1][1]
        les = [le for le, _ in last]
        cumulative = [c - c0 if c >= c0 else c for (_, c0), (_, c) in zip(first, last, strict=True)]
        total = cumulative[-1]
        if total <= 0:
            return
        rank = 0.99 * total
        i = bisect.bisect_left(cumulative, rank)
        if math.isinf(les[i]):
            self.value = les[i - 1]
            return
        lower, below = (les[i - 1], cumulative[i - 1]) if i else (0.0, 0.0)
        inside = cumulative[i] - below
        self.value = les[i] if inside <= 0 else lower + (les[i] - lower) * (rank - below) / inside

    def holds(self, now: float) -> bool:
        return self.value is not None and self.value > 0.5


class Predict(Window):
    horizon = 1800.0

    def holds(self, now: float) -> bool:
        points = [p for p in self.ring if p[0] >= now - self.horizon]
        if len(points) < 5 or points[-1][0] - points[0][0] < self.horizon / 2:
            return False
        line = statistics.linear_regression([t for t, _ in points], [v for _, v in points])
        return line.slope > 0 and line.slope * (now + 3600) + line.intercept > 95


def robust(values: list[float], *, relative: float = 0.0, floor: float = 0.0) -> tuple[float, float]:
    """(median, spread): MAD x 1.4826, at least ``relative`` x |median| and ``floor``."""
    med = statistics.median(values)
    mad = statistics.median([abs(v - med) for v in values])
    return med, max(mad * 1.4826, abs(med) * relative, floor, 1e-12)


class Anomaly(Window):
    horizon = 3600.0

    def holds(self, now: float) -> bool:
        *history, (_, value) = self.ring
        if len(history) < 10 or history[-1][0] - history[0][0] < 1800:
            return False
        med, spread = robust([v for _, v in history], relative=0.01)
        return (value - med) / spread > 3


class LogAnomaly(Baseline):
    WIDTH, KEEP = 60.0, 62  # one-minute buckets: the hour's 60, the one filling and the last complete one

    def __init__(self) -> None:
        self.pattern = re.compile("ERROR")
        self.counts: deque[int] = deque(maxlen=self.KEEP)
        self.last: int | None = None
        self.cached: tuple[int | None, float, float] = (None, 0.0, 0.0)  # bucket, median, spread

    def _advance(self, now: float) -> None:
        index = math.floor(now / self.WIDTH)
        if self.last is None or index > self.last:
            self.counts.extend([0] * (1 if self.last is None else min(index - self.last, self.KEEP)))
            self.last = index

    def add(self, at: float, sample: str) -> None:
        if self.pattern.search(sample):
            self._advance(at)
            self.counts[-1] += 1

    def holds(self, now: float) -> bool:
        self._advance(now)
        history = list(self.counts)[:-2]
        if len(history) < 30:
            return False
        if self.cached[0] != self.last:
            self.cached = (self.last, *robust([float(c) for c in history], floor=1.0))
        _, med, spread = self.cached
        return (max(self.counts[-1], self.counts[-2]) - med) / spread > 3


# -- the conditions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    when: str  # the playbook's `when`
    feed: Callable[[random.Random, float], Iterator[tuple[float, Any]]]
    baseline: Callable[[], Baseline]
    metric: str | None  # the metric fed; None: log lines of source app


KINDS = (
    Kind("metric above, for 2m", "{metric: {name: app_queue_size, above: 1000, for: 2m}}", queue_size, Above,
         "app_queue_size"),
    Kind("rate over 1m", '{metric: {name: http_requests_total, labels: {code: "500"}, rate: {above: 5, over: 1m}}}',
         errors_total, Rate, "http_requests_total"),
    Kind("quantile 0.99 over 5m, 12 buckets",
         "{metric: {name: http_request_duration_seconds, quantile: 0.99, over: 5m, above: 0.5}}", duration_buckets,
         Quantile, "http_request_duration_seconds_bucket"),
    Kind("predict over 30m", "{metric: {name: disk_percent, predict: {above: 95, within: 1h}, over: 30m}}",
         disk_percent, Predict, "disk_percent"),
    Kind("anomaly, baseline 1h", "{metric: {name: latency_p99, anomaly: {sigma: 3, baseline: 1h}}}", latency_p99,
         Anomaly, "latency_p99"),
    Kind("log anomaly, baseline 1h", "{log: {source: app, pattern: ERROR, anomaly: {sigma: 3, baseline: 1h}}}",
         error_lines, LogAnomaly, None),
)


def board_of(kind: Kind) -> SignalBoard:
    playbook = parse_playbook(f"""
id: bench
when: {kind.when}
confidence: 50
fix: [{{restart: {{container: app}}}}]
validate: {{window: 60s, expect: [{{probe: {{name: api, status: healthy}}}}]}}
""", "bench.yaml")
    return SignalBoard([playbook])


def stepper(kind: Kind, board: SignalBoard) -> Callable[[float, Any], list[Transition]]:
    """What the core calls for one sample: a scrape's samples of the metric, or one line."""
    if kind.metric is not None:
        metric = kind.metric
        return lambda at, samples: board.metrics(metric, samples, at)
    return lambda at, line: board.line("app", line, at)[0]


@dataclass
class Result:
    sample_ns: list[int]
    tick_ns: list[int]
    base_sample_ns: list[int]
    base_tick_ns: list[int]
    differ: int = 0  # verdicts (after a sample, after a tick) on which suture and the baseline differ
    held: int = 0  # samples after which suture's condition held


def _both(suture: Callable[..., list[Transition]], baseline: Callable[..., bool], args: tuple[Any, ...],
          suture_first: bool, times: list[int], base_times: list[int]) -> tuple[list[Transition], bool]:
    """One call of each on ``args``, timed, in the order given: (suture's transitions, the baseline's verdict)."""
    clock = time.perf_counter_ns
    calls: list[tuple[Callable[..., Any], list[int]]] = [(suture, times), (baseline, base_times)]
    answers = {}
    for call, into in calls if suture_first else calls[::-1]:
        t0 = clock()
        answer = call(*args)
        into.append(clock() - t0)
        answers[call] = answer
    return answers[suture], answers[baseline]


def measure(kind: Kind, hours: float) -> Result:
    """Each sample, then a tick half way to the next, fed to the board and to the baseline, timed."""
    data = list(kind.feed(random.Random(16), hours))
    board, base = board_of(kind), kind.baseline()
    step = stepper(kind, board)
    holding = False
    r = Result([], [], [], [])
    for i, (at, sample) in enumerate(data):
        between = (at + data[i + 1][0]) / 2 if i + 1 < len(data) else at + INTERVAL / 2
        for suture, baseline, args, times, base_times in (
                (step, base.sample, (at, sample), r.sample_ns, r.base_sample_ns),
                (board.tick, base.holds, (between,), r.tick_ns, r.base_tick_ns)):
            transitions, verdict = _both(suture, baseline, args, i % 2 == 0, times, base_times)
            for tr in transitions:
                holding = tr.holds
            r.differ += holding != verdict
            r.held += holding and times is r.sample_ns
    return r


def memory(kind: Kind, hours: float) -> tuple[int, int]:
    """Bytes still allocated after feeding the run to a board, and to a baseline, built beforehand: what the
    one series holds."""
    out = []
    for which in ("suture", "baseline"):
        rnd = random.Random(16)
        board = board_of(kind)
        step, tick = stepper(kind, board), board.tick
        base = kind.baseline()
        add, holds = (step, tick) if which == "suture" else (base.add, base.holds)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        at = T0
        for at, sample in kind.feed(rnd, hours):
            add(at, sample)  # suture judges as it takes a sample; the ticks between would keep nothing more
        holds(at + INTERVAL / 2)
        gc.collect()
        out.append(tracemalloc.get_traced_memory()[0] - before)
        tracemalloc.stop()
    return out[0], out[1]


def pct(values: list[int], p: float) -> float:
    """The p-th percentile, in µs."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] / 1000


def table(results: list[tuple[Kind, Result, tuple[int, int]]], hours: float) -> list[str]:
    rows = ["| condition | samples | samples holding | µs per sample p50 / p99: suture | baseline "
            "| µs per tick p50: suture / baseline | ms in all (samples and ticks): suture / baseline "
            "| suture % of a core per series | memory per series KiB: suture / baseline | verdicts that differ |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    span = hours * 3600
    for kind, r, (mem, base_mem) in results:
        n = len(r.sample_ns)
        total, base_total = sum(r.sample_ns) + sum(r.tick_ns), sum(r.base_sample_ns) + sum(r.base_tick_ns)
        # the core's cost per second: the samples, and a tick every TICK s (measured: one between two samples)
        core = 100 * (sum(r.sample_ns) + span / TICK * statistics.fmean(r.tick_ns)) / 1e9 / span
        rows.append(f"| {kind.name} | {n:,} | {r.held:,} | {pct(r.sample_ns, 50):.1f} / {pct(r.sample_ns, 99):.1f} "
                    f"| {pct(r.base_sample_ns, 50):.1f} / {pct(r.base_sample_ns, 99):.1f} "
                    f"| {pct(r.tick_ns, 50):.1f} / {pct(r.base_tick_ns, 50):.1f} "
                    f"| {total / 1e6:.0f} / {base_total / 1e6:.0f} | {core:.3f} "
                    f"| {mem / 1024:.1f} / {base_mem / 1024:.1f} | {r.differ} of {2 * n:,} |")
    return rows


def main(quick: bool = False, hours: float | None = None) -> None:
    hours = hours if hours is not None else QUICK_HOURS if quick else HOURS
    began = time.monotonic()
    results = [(kind, measure(kind, hours), memory(kind, min(hours, MEMORY_HOURS))) for kind in KINDS]
    print(f"Condition evaluation, one series per condition, a sample every {INTERVAL:g} s for {hours:g} h of "
          f"simulated time, each beside its baseline in the same run: `make bench` "
          f"(python tests/bench/run.py conditions{' --quick' if quick else ''}), {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}, {time.monotonic() - began:.0f} s in all")
    print()
    print("\n".join(table(results, hours)))


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
