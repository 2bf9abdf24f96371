"""Confidence models and the decision gates."""

from __future__ import annotations

import pytest
from suture.engine.decide import Gate, Outcomes, adjusted_confidence, decide
from suture.engine.playbook import Learning

from .conftest import RATE_LIMIT, playbook

BETA = Learning(model="beta", prior_weight=10)
LINEAR = Learning(model="linear")


def test_beta_base_70_reaches_85_after_ten_successes():
    """Ten clean successes lift a base-70 playbook to the default threshold."""
    assert adjusted_confidence(70, Outcomes(successes=9), BETA) < 85
    assert adjusted_confidence(70, Outcomes(successes=10), BETA) == pytest.approx(85.0)


def test_beta_base_95_drops_below_85_after_two_failures():
    """One failure keeps a base-95 playbook above 85; two take it below."""
    assert adjusted_confidence(95, Outcomes(failures=1), BETA) > 85
    assert adjusted_confidence(95, Outcomes(failures=2), BETA) < 85


def test_beta_without_history_is_the_base():
    """No outcomes: the prior mean, i.e. the base confidence."""
    assert adjusted_confidence(70, Outcomes(), BETA) == pytest.approx(70.0)


def test_beta_prior_weight_sets_how_fast_history_counts():
    """A heavier prior moves slower."""
    light = adjusted_confidence(70, Outcomes(successes=5), Learning(prior_weight=5))
    heavy = adjusted_confidence(70, Outcomes(successes=5), Learning(prior_weight=50))
    assert light > heavy > 70


def test_fleet_outcomes_count_like_local_ones():
    """Outcomes from other sidecars move the estimate the same way."""
    local = adjusted_confidence(70, Outcomes(successes=4), BETA)
    fleet = adjusted_confidence(70, Outcomes(successes=2, fleet_successes=2), BETA)
    assert local == pytest.approx(fleet)


@pytest.mark.parametrize(
    "base, successes, failures, expected",
    [(70, 0, 0, 70), (70, 10, 0, 80), (70, 0, 10, 60), (95, 9, 1, 100), (55, 0, 5, 50), (80, 1, 1, 80)],
)
def test_linear_rule_of_the_replaced_system(base, successes, failures, expected):
    """base + (success_rate - 0.5) * 20, clamped to 50..100."""
    assert adjusted_confidence(base, Outcomes(successes=successes, failures=failures), LINEAR) == pytest.approx(expected)


OPEN, NONE = Gate(), Outcomes()


def _decide(pb, *, gate=OPEN, outcomes=NONE, threshold=85, now=1000.0, fixes_per_hour=20):
    return decide(pb, key="", labels={}, outcomes=outcomes, gate=gate, threshold=threshold,
                  learning=BETA, fixes_per_hour=fixes_per_hour, now=now)


def test_at_or_above_threshold_applies():
    """Confidence 90 against threshold 85 applies."""
    assert _decide(playbook(RATE_LIMIT)).verdict == "apply"
    assert _decide(playbook(RATE_LIMIT), threshold=90).verdict == "apply"


def test_below_threshold_proposes():
    """Confidence 90 against threshold 95 only proposes."""
    d = _decide(playbook(RATE_LIMIT), threshold=95)
    assert (d.verdict, d.reason) == ("propose", "confidence 90.0 < threshold 95")


def test_cooldown_skips_and_backs_off_after_failures():
    """Within the cooldown it skips; each failure in a row doubles the cooldown."""
    pb = playbook(RATE_LIMIT)  # cooldown 1m
    assert _decide(pb, gate=Gate(last_started_at=1000 - 30), now=1000).verdict == "skip"
    assert _decide(pb, gate=Gate(last_started_at=1000 - 61), now=1000).verdict == "apply"
    backed_off = Gate(last_started_at=1000 - 61, consecutive_failures=2)
    assert _decide(pb, gate=backed_off, now=1000).verdict == "skip"
    assert _decide(pb, gate=backed_off, now=1000 + 180).verdict == "apply"


def test_in_flight_and_suspended_skip():
    """A fix in progress or a suspended playbook never starts another."""
    pb = playbook(RATE_LIMIT)
    assert _decide(pb, gate=Gate(in_flight=True)).verdict == "skip"
    assert _decide(pb, gate=Gate(suspended=True)).verdict == "skip"


def test_modes_shadow_and_ask():
    """shadow records only; ask always proposes, even at full confidence."""
    assert _decide(playbook(RATE_LIMIT + "    mode: shadow\n")).verdict == "shadow"
    assert _decide(playbook(RATE_LIMIT + "    mode: ask\n")).verdict == "propose"


def test_global_cap_turns_applies_into_proposals():
    """Past the fixes-per-hour cap, a confident fix is proposed instead."""
    d = _decide(playbook(RATE_LIMIT), gate=Gate(fixes_last_hour=5), fixes_per_hour=5)
    assert d.verdict == "propose"
