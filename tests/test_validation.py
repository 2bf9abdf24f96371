"""The Judge: a fix's validation window, from what the sidecar observes to a verdict."""

from __future__ import annotations

from suture.engine.validation import Judge

from .conftest import playbook

TEMPLATE = """
    id: p
    when: {{log: {{source: app, pattern: 'ERR'}}}}
    confidence: 80
    fix: [{{restart: {{container: app}}}}]
    validate:
      window: 60s
      settle: 10s
      expect: [{expect}]
"""


def judge(expect: str, started_at: float = 1000.0) -> Judge:
    return Judge(playbook(TEMPLATE.format(expect=expect)).validate, started_at)


def test_a_clean_full_window_passes() -> None:
    """Healthy probes from settle to the end of the window: passed."""
    j = judge("{probe: {name: api, status: healthy}}")
    for t in range(1010, 1061, 5):
        j.probe("api", True, 12.0, float(t))

    assert (j.verdict(1060.0).state, j.verdict(1060.0).reason) == ("passed", "all 1 expectation(s) held for the window")


def test_the_window_is_pending_until_it_ends() -> None:
    """Good readings so far do not end the window early."""
    j = judge("{probe: {name: api, status: healthy}}")
    j.probe("api", True, 12.0, 1020.0)

    assert j.verdict(1059.0).state == "pending"


def test_a_breach_after_settle_is_final_at_once() -> None:
    """One unhealthy probe after settle breaches (for: 0), before the window ends, saying why."""
    j = judge("{probe: {name: api, status: healthy}}")
    j.probe("api", False, None, 1011.0)

    verdict = j.verdict(1011.0)
    assert (verdict.state, verdict.reason) == ("breached", "probe api is unhealthy (expected healthy)")


def test_readings_during_settle_are_ignored() -> None:
    """What happens while the fix settles (a restart) counts for nothing, neither good nor bad."""
    j = judge("{probe: {name: api, status: healthy}}")
    j.probe("api", False, None, 1005.0)

    assert j.verdict(1060.0).state == "inconclusive"


def test_no_data_is_inconclusive_never_success() -> None:
    """An expectation that saw nothing in the window: inconclusive, naming it."""
    j = judge("{metric: {name: cpu_percent, below: 80}}")

    verdict = j.verdict(1060.0)
    assert (verdict.state, verdict.reason) == ("inconclusive", "no data in the window for: cpu_percent < 80")


def test_a_metric_must_stay_out_of_bounds_for_its_duration_to_breach() -> None:
    """With for: 20s, a bad sample corrected within 20s is no breach; 20s of bad samples is."""
    j = judge("{metric: {name: cpu_percent, below: 80, for: 20s}}")
    j.metric("cpu_percent", 95.0, 1010.0)
    j.metric("cpu_percent", 50.0, 1020.0)
    assert j.verdict(1020.0).state == "pending"

    j.metric("cpu_percent", 95.0, 1025.0)
    j.metric("cpu_percent", 96.0, 1045.0)
    verdict = j.verdict(1045.0)
    assert (verdict.state, verdict.reason) == ("breached", "cpu_percent = 96 (expected below 80)")


def test_at_most_log_lines_breach_on_the_first_line_too_many() -> None:
    """at_most 1: the second matching line breaches, saying how many matched."""
    j = judge("{log: {source: app, pattern: 'ERR', at_most: 1}}")
    (signal,) = [leaf.signal for leaf in j.log_conditions]
    j.line("app", {signal}, 1011.0)
    assert j.verdict(1011.0).state == "pending"

    j.line("app", {signal}, 1012.0)
    assert j.verdict(1012.0).reason == "2 line(s) of app matched /ERR/ (expected at most 1)"


def test_at_least_log_lines_are_counted_at_the_end_of_the_window() -> None:
    """at_least 2 with one matching line in the window fails when the window ends."""
    j = judge("{log: {source: app, pattern: 'OK', at_least: 2}}")
    (signal,) = [leaf.signal for leaf in j.log_conditions]
    j.line("app", {signal}, 1011.0)
    j.line("app", set(), 1012.0)

    verdict = j.verdict(1060.0)
    assert (verdict.state, verdict.reason) == ("failed", "expectation not met: at least 2 line(s) of app matching /OK/")
    assert j.errors_after() == 1


def test_a_container_state_expectation_breaches_on_another_state() -> None:
    """A container expected running that is seen exited breaches."""
    j = judge("{container: {name: app, state: running}}")
    j.container("app", "exited", False, 1015.0)

    assert j.verdict(1015.0).reason == "container app is exited (expected running)"


def test_restarts_are_counted_over_the_window() -> None:
    """A restart count expectation is judged at the end, by the restarts seen in the window."""
    j = judge("{container: {name: app, restarts: {at_least: 2}}}")
    j.container("app", "running", True, 1020.0)
    j.container("app", "running", True, 1030.0)

    assert j.verdict(1060.0).state == "passed"


def test_not_of_an_unknown_is_unknown() -> None:
    """`not` of an expectation without data is inconclusive, not passed."""
    j = judge("{not: {probe: {name: api, status: unhealthy}}}")

    verdict = j.verdict(1060.0)
    assert (verdict.state, verdict.reason) == ("inconclusive", "no data in the window for: not (probe api unhealthy)")


def test_measured_reports_each_expectation() -> None:
    """What the window saw, per expectation, for the history."""
    j = judge("{probe: {name: api, status: healthy}}")
    j.probe("api", True, 3.0, 1011.0)

    assert j.measured() == {"probe api healthy": {"observations": 1, "matches": 0, "breach": None}}
