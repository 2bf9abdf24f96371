"""Rate, quantile, predict, anomaly, alert and scrape conditions, as the board diagnoses them and the judge
validates them (issue 16 item 4), with times given: every sample is at a second we choose.

Each test writes the condition as a playbook would, builds it with the real loader code, and feeds
the board (and, for expectations, the judge) samples shaped like the scrapes they stand for.
"""

from __future__ import annotations

import math
import random
import tracemalloc

from suture.engine.alerts import AlertState
from suture.engine.playbook import MetricCondition, Playbook
from suture.engine.series import MAX_POINTS, SeriesWatch
from suture.engine.validation import Judge
from suture.sidecar.signals import SignalBoard

from .conftest import playbook

T0 = 1_790_000_000.0  # epoch-sized times: the fit must not lose precision on them


def pb_when(condition: str, expect: str = "{probe: {name: api, status: healthy}}") -> Playbook:
    return playbook(f"""
        id: p
        when: {condition}
        confidence: 50
        fix: [{{restart: {{container: app}}}}]
        validate: {{window: 60s, expect: [{expect}]}}
    """)


def holds(board: SignalBoard) -> bool:
    return bool(board.holding())


def leaf_of(pb: Playbook) -> MetricCondition:
    assert isinstance(pb.when, MetricCondition)
    return pb.when


# -- rate ------------------------------------------------------------------------------


def test_a_counter_rate_over_its_bound_holds_only_for_its_labels_and_after_for():
    pb = pb_when('{metric: {name: http_requests_total, labels: {code: "500"}, rate: {above: 5, over: 1m}, for: 30s}}')
    board = SignalBoard([pb])
    for i in range(0, 200, 5):  # 500s grow 10/s, 200s grow 100/s (other labels never count)
        board.metrics("http_requests_total", [((("code", "500"),), 10.0 * i), ((("code", "200"),), 100.0 * i)],
                      T0 + i)
        if T0 + i < T0 + 35:
            assert not holds(board)
    assert holds(board)


def test_a_counter_reset_is_growth_not_a_negative_rate():
    pb = pb_when("{metric: {name: jobs_total, rate: {above: 5, over: 1m}}}")
    board = SignalBoard([pb])
    value = 0.0
    for i in range(0, 120, 5):
        value = 30.0 if i == 60 else value + 30.0  # the process restarted at 60 s: 30 more since then
        board.metric("jobs_total", value, T0 + i)
    assert holds(board)
    watch = next(iter(board.sustained.values())).watch  # type: ignore[union-attr]
    (said,) = watch.judge(T0 + 115).values()
    assert said.value == 6.0  # 30 every 5 s, across the reset


def test_a_falling_rate_retracts():
    pb = pb_when("{metric: {name: errors_total, rate: {above: 1, over: 30s}}}")
    board = SignalBoard([pb])
    for i in range(0, 60, 5):
        board.metric("errors_total", 5.0 * i, T0 + i)
    assert holds(board)
    for i in range(60, 120, 5):
        board.metric("errors_total", 300.0, T0 + i)
    assert not holds(board)


def test_labels_re_chooses_series_by_full_match():
    pb = pb_when('{metric: {name: http_requests_total, labels_re: {code: "5.."}, rate: {above: 1, over: 1m}}}')
    board = SignalBoard([pb])
    for i in range(0, 60, 5):
        board.metrics("http_requests_total", [((("code", "5000"),), 100.0 * i), ((("code", "404"),), 100.0 * i)],
                      T0 + i)
    assert not holds(board)  # 5000 is not a full match of 5..; 404 is not either
    board.metrics("http_requests_total", [((("code", "503"),), 0.0)], T0 + 60)
    board.metrics("http_requests_total", [((("code", "503"),), 10.0)], T0 + 65)
    assert holds(board)


# -- quantile ----------------------------------------------------------------------------


def buckets(counts: dict[str, float], extra: tuple[tuple[str, str], ...] = ()) -> list:
    return [(tuple(sorted((*extra, ("le", le)))), c) for le, c in counts.items()]


def test_a_histogram_quantile_over_bucket_increases():
    pb = pb_when("{metric: {name: http_request_duration_seconds, quantile: 0.99, over: 1m, above: 0.5}}")
    board = SignalBoard([pb])
    fast = {"0.1": 0.0, "0.5": 0.0, "1": 0.0, "+Inf": 0.0}
    for i in range(0, 60, 5):  # every request fast: 99th percentile under 0.1
        fast = {le: c + 10.0 for le, c in fast.items()}
        board.metrics("http_request_duration_seconds_bucket", buckets(fast), T0 + i)
    assert not holds(board)
    slow = dict(fast)
    for i in range(60, 120, 5):  # now every request takes 0.5-1 s
        slow = {"0.1": slow["0.1"], "0.5": slow["0.5"], "1": slow["1"] + 10, "+Inf": slow["+Inf"] + 10}
        board.metrics("http_request_duration_seconds_bucket", buckets(slow), T0 + i)
    assert holds(board)
    watch = next(iter(board.sustained.values())).watch  # type: ignore[union-attr]
    (said,) = watch.judge(T0 + 115).values()
    assert said.value is not None and 0.5 < said.value <= 1.0


# -- predict -----------------------------------------------------------------------------


PREDICT = "{metric: {name: disk_percent, predict: {above: 95, within: 1h}, over: 30m}}"


def test_a_linearly_filling_disk_fires_before_the_bound():
    board = SignalBoard([pb_when(PREDICT)])
    fired_at = None
    for i in range(0, 4 * 3600, 60):  # 40 % + 1 % every 2 minutes: 95 % at 110 min
        value = 40 + i / 120
        board.metric("disk_percent", value, T0 + i)
        if holds(board) and fired_at is None:
            fired_at = i
    assert fired_at is not None
    assert 40 + fired_at / 120 < 95  # before the bound
    assert fired_at >= 900  # not before half the fitted window was seen
    assert fired_at / 60 <= 110 - 55  # an hour ahead, give or take the fit


def test_a_flat_or_falling_series_never_predicts_a_crossing():
    rnd = random.Random(4)
    for shape in (lambda i: 94.0, lambda i: 94.9 - i / 10_000, lambda i: 90 + rnd.uniform(-0.05, 0.05)):
        board = SignalBoard([pb_when(PREDICT)])
        for i in range(0, 4 * 3600, 60):
            board.metric("disk_percent", shape(i), T0 + i)
            assert not holds(board)


def test_predict_says_nothing_before_the_window_has_enough():
    board = SignalBoard([pb_when(PREDICT)])
    for i in range(0, 600, 60):  # 10 min of a steep climb: under half of the 30 min window
        board.metric("disk_percent", 50 + i / 10, T0 + i)
    assert not holds(board)
    watch = next(iter(board.sustained.values())).watch  # type: ignore[union-attr]
    (said,) = watch.judge(T0 + 540).values()
    assert not said.known and "the fit needs 5 over at least 900s" in said.why


def test_predict_explains_its_slope_and_prediction():
    board = SignalBoard([pb_when(PREDICT)])
    for i in range(0, 3600, 60):
        board.metric("disk_percent", 40 + i / 120, T0 + i)
    watch = next(iter(board.sustained.values())).watch  # type: ignore[union-attr]
    (said,) = watch.judge(T0 + 3540).values()
    assert said.holds and math.isclose(said.numbers["slope_per_s"], 1 / 120, rel_tol=1e-6)
    assert math.isclose(said.numbers["predicted"], 40 + (3540 + 3600) / 120, rel_tol=1e-6)
    assert "slope 0.00833333/s" in said.why


# -- anomaly -----------------------------------------------------------------------------


ANOMALY = "{metric: {name: latency_p99, anomaly: {sigma: 3, baseline: 10m}}}"


def noisy(seed: int = 1):
    rnd = random.Random(seed)
    return lambda: 0.2 + rnd.gauss(0, 0.01)


def test_a_value_far_from_its_baseline_is_an_anomaly():
    board = SignalBoard([pb_when(ANOMALY)])
    value = noisy()
    for i in range(0, 1200, 10):
        board.metric("latency_p99", value(), T0 + i)
        assert not holds(board)
    board.metric("latency_p99", 0.5, T0 + 1200)
    assert holds(board)
    watch = next(iter(board.sustained.values())).watch  # type: ignore[union-attr]
    (said,) = watch.judge(T0 + 1200).values()
    assert said.numbers["z"] > 3 and abs(said.numbers["median"] - 0.2) < 0.01


def test_one_spike_in_the_baseline_does_not_blind_it():
    board = SignalBoard([pb_when(ANOMALY)])
    value = noisy(2)
    for i in range(0, 1200, 10):
        board.metric("latency_p99", 50.0 if i == 600 else value(), T0 + i)  # one absurd sample half way
    board.metric("latency_p99", 0.5, T0 + 1200)
    assert holds(board)  # a mean and standard deviation would have been dragged far off by the spike


def test_no_anomaly_before_a_minimum_baseline():
    board = SignalBoard([pb_when(ANOMALY)])
    for i in range(0, 200, 10):  # 200 s of a 600 s baseline
        board.metric("latency_p99", 0.2, T0 + i)
    board.metric("latency_p99", 100.0, T0 + 200)
    assert not holds(board)


def test_a_flat_baseline_is_not_news_below_one_percent():
    board = SignalBoard([pb_when(ANOMALY)])
    for i in range(0, 1200, 10):
        board.metric("latency_p99", 0.2, T0 + i)
    board.metric("latency_p99", 0.2001, T0 + 1200)
    assert not holds(board)
    board.metric("latency_p99", 0.3, T0 + 1210)
    assert holds(board)


def test_a_log_error_rate_anomaly_against_its_own_baseline():
    pb = pb_when("{log: {source: app, pattern: ERROR, anomaly: {sigma: 3, baseline: 10m}}}")
    board = SignalBoard([pb])
    rnd = random.Random(3)
    t = T0
    while t < T0 + 900:  # about one error every 5 s (one or two per 10 s bucket)
        t += rnd.uniform(2, 8)
        board.line("app", "ERROR upstream hiccup", t)
        board.tick(t)
        assert not holds(board)
    for k in range(30):  # a burst: 30 errors in 3 s
        board.line("app", "ERROR upstream down", t + k * 0.1)
    assert holds(board)


def test_a_quiet_log_needs_more_than_one_line_to_be_an_anomaly():
    pb = pb_when("{log: {source: app, pattern: ERROR, anomaly: {sigma: 3, baseline: 10m}}}")
    board = SignalBoard([pb])
    for i in range(0, 900, 5):
        board.line("app", "INFO fine", T0 + i)
        board.tick(T0 + i)
    board.line("app", "ERROR once", T0 + 901)
    assert not holds(board)  # median 0, MAD 0: the spread is floored at one line
    for k in range(5):
        board.line("app", "ERROR again", T0 + 902 + k * 0.1)
    assert holds(board)


# -- alert and scrape ---------------------------------------------------------------------


def alert(state: str, at: float, fingerprint: str = "abc", **labels: str) -> AlertState:
    pairs = tuple(sorted({"alertname": "HighErrorRate", **labels}.items()))
    return AlertState(fingerprint=fingerprint, name="HighErrorRate", labels=pairs, state=state,  # type: ignore[arg-type]
                      starts_at=None, ends_at=None, at=at)


def test_an_alert_firing_for_its_duration_holds_and_its_resolution_retracts():
    board = SignalBoard([pb_when("{alert: {name: HighErrorRate, labels: {service: orders}, for: 1m}}")])
    board.alert(alert("firing", T0, fingerprint="x", service="payments"))
    board.alert(alert("firing", T0, service="orders"))
    board.tick(T0 + 30)
    assert not holds(board)
    board.alert(alert("firing", T0 + 45, service="orders"))  # the same alert again: still since T0
    board.tick(T0 + 61)
    assert holds(board)
    board.alert(alert("resolved", T0 + 90, service="orders"))
    assert not holds(board)


def test_the_judge_passes_an_alert_expectation_on_its_resolved_notification():
    pb = pb_when("{probe: {name: api, status: unhealthy}}", "{alert: {name: HighErrorRate, state: resolved}}")
    judge = Judge(pb.validate, T0)
    judge.alert(alert("firing", T0 + 5))
    judge.alert(alert("resolved", T0 + 20))
    assert judge.verdict(T0 + 60).state == "passed"
    silent = Judge(pb.validate, T0)
    assert silent.verdict(T0 + 60).state == "inconclusive"  # no notification: never a pass
    still = Judge(pb.validate, T0)
    still.alert(alert("firing", T0 + 30))
    assert still.verdict(T0 + 60).state == "failed"


def test_scrape_status_is_the_scrapers_probe():
    board = SignalBoard([pb_when("{scrape: {name: app_metrics, status: down, for: 10s}}")])
    board.probe("scrape.app_metrics", False, None, T0)
    board.probe("scrape.app_metrics", False, None, T0 + 11)
    assert holds(board)
    board.probe("scrape.app_metrics", True, 3.0, T0 + 16)
    assert not holds(board)


# -- validation through the same metric ---------------------------------------------------


def test_the_judge_validates_a_rate_every_series_must_hold():
    pb = pb_when("{probe: {name: api, status: unhealthy}}",
                 '{metric: {name: http_requests_total, labels_re: {code: "5.."}, rate: {below: 1, over: 20s}}}')
    judge = Judge(pb.validate, T0)
    for i in range(0, 61, 5):
        judge.metrics("http_requests_total", [((("code", "500"),), 100.0), ((("code", "503"),), 100.0 + i)], T0 + i)
    verdict = judge.verdict(T0 + 61)
    assert verdict.state == "breached" and 'code=~"5.."' in verdict.reason and "expected below 1" in verdict.reason
    calm = Judge(pb.validate, T0)
    for i in range(0, 61, 5):
        calm.metrics("http_requests_total", [((("code", "500"),), 100.0), ((("code", "503"),), 100.0)], T0 + i)
    assert calm.verdict(T0 + 61).state == "passed"


# -- bounds ---------------------------------------------------------------------------------


def test_memory_per_series_is_bounded_as_documented():
    """At most MAX_POINTS points per ring, whatever the rate of samples; about 100 bytes a point."""
    leaf = leaf_of(pb_when("{metric: {name: m, anomaly: {baseline: 1d}}}"))
    watch = SeriesWatch(leaf)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(3 * MAX_POINTS):
        watch.add((), float(i % 7), T0 + i)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    (series,) = watch.series.values()
    assert len(series.base) == MAX_POINTS and len(series.raw) == 1
    assert grown < MAX_POINTS * 2 * 130, grown  # two rings of 4096 points, ~100 B each, and slack


def test_series_over_the_cap_are_dropped_and_counted_and_stale_ones_forgotten():
    leaf = leaf_of(pb_when("{metric: {name: m, labels_re: {id: '.*'}, above: 1}}"))
    watch = SeriesWatch(leaf)
    for i in range(300):
        watch.add((("id", str(i)),), 2.0, T0 + i)
    assert len(watch.series) == 256 and watch.dropped == 44
    watch.expire(T0 + 299 + 301)
    assert watch.series == {}
