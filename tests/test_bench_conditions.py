"""The condition bench (tests/bench/conditions.py) runs, in a short simulated hour, and its baselines compute what
suture computes: on every sample and tick both give the same verdict, so the bench compares like with like.
Nothing about speed is asserted (the machine is shared)."""

from __future__ import annotations

import pytest

from tests.bench import conditions

pytestmark = pytest.mark.slow


def test_the_bench_prints_a_row_per_condition(capsys: pytest.CaptureFixture[str]) -> None:
    conditions.main(hours=0.25)
    out = capsys.readouterr().out
    assert "python tests/bench/run.py conditions" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| condition")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == [kind.name for kind in conditions.KINDS]
    for row in rows:
        assert row.endswith(" |") and row.split(" | ")[-1].startswith("0 of "), row  # no verdict differs


def test_each_condition_holds_for_part_of_the_run() -> None:
    """The data exercise every condition: each holds after some samples and not after others."""
    for kind in conditions.KINDS:
        result = conditions.measure(kind, 1.5)
        assert result.differ == 0, kind.name
        assert 0 < result.held < len(result.sample_ns), kind.name
