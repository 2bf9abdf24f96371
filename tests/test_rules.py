"""Playbooks compiled to durable_rules, and facts through a real durable_rules Host."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest
from suture.engine.playbook import leaves
from suture.engine.rules import Fact, Rules, compile_rules, to_dnf

from .conftest import RATE_LIMIT, playbook

GOLDEN = Path(__file__).parent / "golden"

JOINED = """
    id: slow-endpoint
    when:
      all:
        - log: {source: app, pattern: 'timeout on (?P<endpoint>/\\S+)', at_least: 2, within: 1m, group_by: [endpoint]}
        - log: {source: app, pattern: '5\\d\\d on (?P<endpoint>/\\S+)', at_least: 1, within: 1m, group_by: [endpoint]}
        - not: {probe: {name: api, status: unhealthy}}
    confidence: 80
    fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 5, max: 60}}]
    validate: {window: 1m, expect: [{log: {source: app, pattern: 'timeout on'}}]}
"""

EITHER = """
    id: either
    when:
      any:
        - log: {source: app, pattern: 'A'}
        - all:
            - log: {source: app, pattern: 'B'}
            - not: {log: {source: app, pattern: 'C'}}
    confidence: 80
    fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 5}}]
    validate: {window: 1m, expect: [{log: {source: app, pattern: 'A'}}]}
"""


def _facts(pb, labels=None):
    return [Fact(signal=leaf.signal, labels=labels or {}) for leaf in leaves(pb.when)]


@pytest.mark.parametrize("name, text", [("rate_limit", RATE_LIMIT), ("joined", JOINED), ("either", EITHER)])
def test_compiled_rules_match_golden_files(name, text):
    """The durable_rules JSON of each playbook is stable (SUTURE_UPDATE_GOLDEN=1 rewrites it)."""
    compiled = json.dumps(compile_rules([playbook(text)]), indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / f"rules_{name}.json"
    if os.environ.get("SUTURE_UPDATE_GOLDEN") or not golden.exists():
        golden.write_text(compiled)
    assert compiled == golden.read_text()


def test_dnf_applies_de_morgan_to_not_of_all():
    """not(all(a, b)) becomes two alternatives: not a, or not b."""
    pb = playbook(
        """
        id: dm
        when: {not: {all: [{log: {source: app, pattern: a}}, {log: {source: app, pattern: b}}]}}
        confidence: 50
        fix: [{adjust: {file: c.yaml, key: k, add: 1}}]
        validate: {window: 1m, expect: [{log: {source: app, pattern: a}}]}
        """
    )
    dnf = to_dnf(pb.when)
    assert [(len(p), len(n)) for p, n in dnf] == [(0, 1), (0, 1)]


def test_all_conditions_fire_once_when_the_last_fact_arrives():
    """A conjunction fires once, when its last fact is asserted, not before."""
    pb = playbook(RATE_LIMIT)
    rules = Rules()
    assert rules.load([pb]) == []
    (fact,) = _facts(pb)
    matches = rules.assert_fact(fact)
    assert [m.playbook_id for m in matches] == ["rate-limit-backoff"]
    assert rules.assert_fact(fact) == []
    rules.close()


def test_refires_after_the_fact_is_retracted_and_asserted_again():
    """An edge-triggered rule fires again on a new incident."""
    pb = playbook(RATE_LIMIT)
    rules = Rules()
    rules.load([pb])
    (fact,) = _facts(pb)
    rules.assert_fact(fact)
    rules.retract_fact(fact)
    assert len(rules.assert_fact(fact)) == 1
    rules.close()


def test_group_by_labels_are_joined_by_durable_rules():
    """Two conditions grouped by endpoint fire only for the same endpoint, and carry it as the key."""
    pb = playbook(JOINED)
    timeouts, errors, _ = leaves(pb.when)
    rules = Rules()
    rules.load([pb])
    assert rules.assert_fact(Fact(signal=timeouts.signal, labels={"endpoint": "/orders"})) == []
    assert rules.assert_fact(Fact(signal=errors.signal, labels={"endpoint": "/users"})) == []
    matches = rules.assert_fact(Fact(signal=errors.signal, labels={"endpoint": "/orders"}))
    assert [(m.playbook_id, m.key) for m in matches] == [("slow-endpoint", "endpoint=/orders")]
    rules.close()


def test_a_negated_condition_blocks_until_its_fact_is_retracted():
    """`not` holds back a match while its fact holds, and lets it through on retract."""
    pb = playbook(JOINED)
    timeouts, errors, unhealthy = leaves(pb.when)
    rules = Rules()
    rules.load([pb])
    rules.assert_fact(Fact(signal=unhealthy.signal))
    rules.assert_fact(Fact(signal=timeouts.signal, labels={"endpoint": "/a"}))
    assert rules.assert_fact(Fact(signal=errors.signal, labels={"endpoint": "/a"})) == []
    matches = rules.retract_fact(Fact(signal=unhealthy.signal))
    assert [m.key for m in matches] == ["endpoint=/a"]
    rules.close()


def test_any_fires_for_either_branch():
    """Each alternative of `any` is its own rule."""
    pb = playbook(EITHER)
    a, b, _c = leaves(pb.when)
    rules = Rules()
    rules.load([pb])
    assert [m.rule for m in rules.assert_fact(Fact(signal=b.signal))] == ["either#1"]
    assert [m.rule for m in rules.assert_fact(Fact(signal=a.signal))] == ["either#0"]
    rules.close()


def test_reload_carries_facts_over_without_firing_again():
    """Swapping in the same playbooks keeps the facts and does not repeat a match."""
    pb = playbook(RATE_LIMIT)
    rules = Rules()
    rules.load([pb])
    (fact,) = _facts(pb)
    assert len(rules.assert_fact(fact)) == 1
    assert rules.load([pb]) == []
    assert rules.generation == "suture_g2"
    assert rules.assert_fact(fact) == []  # still holds in the new generation
    rules.close()


def test_reload_fires_a_new_playbook_whose_diagnosis_already_holds():
    """A playbook added while its condition is true fires at once."""
    pb = playbook(RATE_LIMIT)
    other = playbook(RATE_LIMIT.replace("rate-limit-backoff", "second-opinion"))
    rules = Rules()
    rules.load([pb])
    rules.assert_fact(_facts(pb)[0])
    assert [m.playbook_id for m in rules.load([pb, other])] == ["second-opinion"]
    rules.close()


def test_deleted_generations_free_their_memory():
    """Hundreds of reloads with live facts keep RSS flat (old rulesets are fully deleted)."""
    pbs = [playbook(RATE_LIMIT.replace("rate-limit-backoff", f"pb-{i}").replace("429", f"4{i:02d}")) for i in range(20)]
    rules = Rules()
    rules.load(pbs)
    for pb in pbs:
        rules.assert_fact(_facts(pb)[0])
    for _ in range(50):
        rules.load(pbs)
    before = psutil.Process().memory_info().rss
    for _ in range(300):
        rules.load(pbs)
    grown = psutil.Process().memory_info().rss - before
    assert len(rules._host._ruleset_list) == 1
    assert grown < 8 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB over 300 reloads"
    rules.close()


def test_closing_a_generation_with_partial_matches_does_not_crash():
    """durable_rules' delete_state crashed on a state where no action ran; ours always runs one."""
    import subprocess
    import sys

    script = (
        "from tests.conftest import RATE_LIMIT, JOINED_FOR_CRASH, playbook\n"
        "from suture.engine.rules import Rules, Fact\n"
        "from suture.engine.playbook import leaves\n"
        "pb = playbook(JOINED_FOR_CRASH)\n"
        "for n in range(3):\n"
        "    r = Rules(); r.load([pb])\n"
        "    for leaf in leaves(pb.when)[:n]: r.assert_fact(Fact(signal=leaf.signal))\n"
        "    r.load([pb]); r.close()\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr[-2000:]
