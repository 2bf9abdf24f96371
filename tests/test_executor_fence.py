"""A fix under a fleet lease (issue 15 item 3): every journal step carries the fencing token, and a token found
stale before any step that changes something ends the fix as failed with its files rolled back.

The fence here is a scripted one (the sidecar's asks PostgreSQL, tests/test_fleet_gate.py and
tests/test_fleet_replicas.py): it answers "held" for the first ``n`` checks, then "lost". Every
cut-off point is tried, so no step between the plan and the verdict acts on a stale token.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import pytest
from suture.engine.executor import FixRun
from suture.engine.playbook import Exec
from suture.engine.validation import Judgement

from .conftest import RATE_LIMIT, playbook
from .test_executor import _decision, _executor, parts  # noqa: F401 (fixture)


@dataclass
class ScriptedFence:
    held_for: int  # checks answered "held" before the lease is lost
    token: int = 41
    checks: list[str] = field(default_factory=list)

    def lost(self) -> str | None:
        self.checks.append("check")
        return None if len(self.checks) <= self.held_for else "a newer lease (token 42, held by orders-2) replaced it"


class Runner:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, action, context) -> str:
        self.ran.append(action.describe())
        return "ok"


EXEC_PB = RATE_LIMIT.replace("fix:\n", "fix:\n      - exec: {argv: [/bin/true], timeout: 5s}\n", 1)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def steps(store, fix_id):
    return [(s["step"], json.loads(s["detail"] or "{}")) for s in store.steps(fix_id)]


def test_every_step_of_a_fenced_fix_carries_its_token(parts, target, clock):
    _config, store, _ = parts
    pb = playbook(RATE_LIMIT)
    ex = _executor(parts)
    run = ex.start(pb, _decision(pb, store, clock), now=clock(), fix_id="f-fenced", fence=ScriptedFence(held_for=99))
    assert isinstance(run, FixRun)
    outcome = ex.settle(run, Judgement(state="passed", reason="clean"), clock())
    assert outcome.status == "succeeded"
    journal = steps(store, "f-fenced")
    assert [s for s, _ in journal] == ["matched", "decided", "planned", "backed_up", "applied", "validating",
                                       "verdict", "succeeded"]
    assert all(detail.get("fence") == 41 for _, detail in journal)
    other = ex.start(pb, _decision(pb, store, clock), now=clock() + 7200)  # a fix without a lease carries none
    assert all("fence" not in d for _, d in steps(store, other.fix_id))


@pytest.mark.parametrize("held_for", [0, 1, 2, 3, 4])
def test_a_token_lost_before_any_step_ends_the_fix_failed_and_rolled_back(parts, target, clock, held_for):
    """Lost before the backup, the write, the effect, after the effect, or at the verdict: failed, file as before."""
    _config, store, _ = parts
    before = sha(target / "config/settings.yaml")
    pb = playbook(EXEC_PB)
    assert any(isinstance(a, Exec) for a in pb.fix)
    runner = Runner()
    ex = _executor(parts, effects=runner)
    fence = ScriptedFence(held_for=held_for)
    result = ex.start(pb, _decision(pb, store, clock), now=clock(), fix_id="f-1", fence=fence)
    if isinstance(result, FixRun):
        result = ex.settle(result, Judgement(state="passed", reason="clean"), clock())
    assert result.status == "failed", (held_for, result.detail)
    assert "a newer lease (token 42, held by orders-2) replaced it" in result.detail
    assert "fencing token 41" in result.detail
    assert sha(target / "config/settings.yaml") == before
    assert len(fence.checks) == held_for + 1  # nothing asked after the first refusal
    if held_for <= 1:  # refused before its effect ran
        assert runner.ran == []
    assert ex.fences == {}  # the fix ended: its fence is gone with it


def test_a_check_that_cannot_reach_the_fleet_fails_closed(parts, target, clock):
    _config, store, _ = parts
    pb = playbook(RATE_LIMIT)
    ex = _executor(parts)

    class Unreachable:
        token = 9

        def lost(self) -> str | None:
            return "the fleet cannot confirm the lease (connection refused)"

    result = ex.start(pb, _decision(pb, store, clock), now=clock(), fix_id="f-2", fence=Unreachable())
    assert result.status == "failed" and "cannot confirm the lease" in result.detail
    assert [s for s, _ in steps(store, "f-2")][-1] == "failed"
