"""The numbers behind a trend decision: `suture explain` shows them now, and the fix's journal keeps them.

A sidecar is opened on a real DuckDB file (no threads: the test is its clock and its only source),
fed a filling disk and an error log, and asked what it sees; then it fires and the ``matched`` step
of the fix is read back from the history.
"""

from __future__ import annotations

import json
import math

from suture.engine.store import Store
from suture.sidecar import operations as ops
from suture.sidecar.history_commands import render_explain
from suture.sidecar.observations import Lines, Metrics
from suture.sidecar.runtime import Sidecar
from suture.sidecar.sources.base import Line, MetricSample

from .conftest import Clock, dedent, write_config

DISK = """
    id: disk-filling
    when: {metric: {name: disk_percent, labels: {mount: /data}, predict: {above: 95, within: 1h}, over: 10m}}
    confidence: 50
    fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]
    validate: {window: 1m, expect: [{metric: {name: disk_percent, below: 95}}]}
"""
ERRORS = """
    id: error-anomaly
    when: {log: {source: app, pattern: ERROR, anomaly: {sigma: 3, baseline: 10m}}}
    confidence: 50
    fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]
    validate: {window: 1m, expect: [{log: {source: app, pattern: ERROR, at_most: 0}}]}
"""


def opened(tmp_path, target, clock: Clock) -> Sidecar:
    cfg = write_config(tmp_path, target, threshold=85)
    (tmp_path / "playbooks" / "disk.yaml").write_text(dedent(DISK))
    (tmp_path / "playbooks" / "errors.yaml").write_text(dedent(ERRORS))
    sc = Sidecar(cfg, clock=clock)
    sc.open()
    return sc


def sample(value: float, at: float, mount: str) -> MetricSample:
    return MetricSample(name="disk_percent", value=value, at=at, labels=(("mount", mount),))


def disk(sc: Sidecar, clock: Clock, values, every: float = 15.0) -> None:
    for v in values:
        clock.advance(every)
        sc.core.observe(Metrics([sample(v, clock.now, "/data"), sample(10.0, clock.now, "/boot")]))


def matched_step(sc: Sidecar, playbook_id: str) -> dict:
    store: Store = sc.store
    rows = store.query("SELECT s.detail FROM fix_steps s JOIN fixes f ON f.id = s.fix_id "
                       "WHERE f.playbook_id = ? AND s.step = 'matched'", [playbook_id]).rows
    assert len(rows) == 1, rows
    return json.loads(rows[0][0])


def test_explain_shows_the_fitted_slope_before_the_prediction_fires(tmp_path, target, clock):
    sc = opened(tmp_path, target, clock)
    disk(sc, clock, [40.0 + 0.01 * i for i in range(30)])  # 0.01 per 15 s over 7.5 min: 95 is days away
    answer = ops.explain(sc, "disk-filling")
    [entry] = answer["signals"]
    [series] = entry["series"]  # only the /data series: /boot is not chosen by the labels
    assert series["labels"] == {"mount": "/data"} and series["known"] and not series["holds"]
    assert math.isclose(series["numbers"]["slope_per_s"], 0.01 / 15, rel_tol=1e-3)
    assert series["numbers"]["predicted"] < 95
    text = render_explain(answer)
    assert "signals (the numbers behind trend conditions)" in text
    assert "{mount=/data} no:" in text and "slope_per_s" in text
    sc.shutdown()


def test_the_matched_step_keeps_the_numbers_a_prediction_fired_on(tmp_path, target, clock):
    sc = opened(tmp_path, target, clock)
    disk(sc, clock, [50.0 + 0.5 * i for i in range(60)])  # 2 %/min: 95 within the hour
    seen = matched_step(sc, "disk-filling")["seen"]
    [entry] = seen
    assert entry["condition"].startswith("disk_percent")
    [series] = entry["series"]
    assert series["holds"] and series["numbers"]["slope_per_s"] > 0
    assert series["numbers"]["predicted"] >= 95 and series["value"] < 95  # fired before the bound
    sc.shutdown()


def test_a_log_anomaly_shows_its_baseline_and_z(tmp_path, target, clock):
    sc = opened(tmp_path, target, clock)
    for i in range(120):  # ten minutes of one ERROR every 10 s: the baseline
        clock.advance(5.0)
        if i % 2 == 0:
            sc.core.observe(Lines("app", [Line(source="app", text="ERROR one", at=clock.now)]))
    calm = ops.explain(sc, "error-anomaly")["signals"][0]["series"][0]
    assert calm["known"] and not calm["holds"] and "median" in calm["numbers"]
    for _ in range(60):  # then a burst
        sc.core.observe(Lines("app", [Line(source="app", text="ERROR burst", at=clock.now)]))
    seen = matched_step(sc, "error-anomaly")["seen"]
    numbers = seen[0]["series"][0]["numbers"]
    assert numbers["z"] >= 3 and numbers["value"] > numbers["median"]
    sc.shutdown()
