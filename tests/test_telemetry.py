"""/metrics from a snapshot alone: Telemetry reads a Callable[[], Snapshot], never a sidecar."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

from suture.sidecar.snapshot import RunView, Snapshot, SourceView
from suture.sidecar.sources.base import ProbeResult
from suture.sidecar.telemetry import Telemetry

SIDECAR = Path(__file__).resolve().parent.parent / "sidecar"


def snapshot(**fields) -> Snapshot:
    return replace(Snapshot.empty(100.0), running=True, version="v1", **fields)


def scrape(view: Snapshot) -> dict[str, float]:
    out = {}
    for line in Telemetry(lambda: view).render().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_source_counters_come_from_the_snapshot() -> None:
    """Per source its counters; container streams also their attaches and duplicates, file sources not."""
    m = scrape(snapshot(sources={
        "app": SourceView(name="app", kind="file", counters={"lines": 3, "bytes": 40, "files": 1}),
        "worker": SourceView(name="worker", kind="container", counters={"lines": 2, "files": 1, "attaches": 1,
                                                                         "duplicates": 0})}))
    assert (m['suture_source_lines_total{source="app"}'], m['suture_source_bytes_total{source="app"}'],
            m['suture_container_log_attaches_total{source="worker"}']) == (3, 40, 1)
    assert 'suture_container_log_attaches_total{source="app"}' not in m


def test_matches_probes_and_counters_come_from_the_snapshot() -> None:
    """Matches per playbook condition, probe up and latency in seconds, and the sidecar's own counters."""
    m = scrape(snapshot(condition_matches={("timeouts", "when.log"): 2}, signals_active=1, problems=2, reloads=4,
                        probes={"api": ProbeResult(name="api", healthy=True, latency_ms=250.0, detail="", at=99.0)},
                        thread_restarts=1, core_errors=5))
    assert m['suture_condition_matches_total{condition="when.log",playbook="timeouts"}'] == 2
    assert (m['suture_probe_up{probe="api"}'], m['suture_probe_latency_seconds{probe="api"}']) == (1.0, 0.25)
    assert (m["suture_signals_active"], m["suture_playbook_problems"], m["suture_reloads_total"],
            m["suture_thread_restarts_total"], m["suture_core_errors_total"]) == (1, 2, 4, 1, 5)


def test_fixes_in_progress_counts_those_validating() -> None:
    """The gauge counts fixes in their validation window, not those whose effects still run."""
    runs = (RunView(fix_id="f-1", playbook_id="p", phase="validating", started_at=1.0, ends_at=9.0),
            RunView(fix_id="f-2", playbook_id="p", phase="applying", started_at=2.0, ends_at=None))
    assert scrape(snapshot(runs=runs))["suture_fixes_in_progress"] == 1


def test_telemetry_does_not_import_the_runtime() -> None:
    """No import of sidecar.runtime in telemetry.py, not even for type checking (no runtime <-> telemetry circle)."""
    tree = ast.parse((SIDECAR / "telemetry.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m and m.endswith("runtime")}


def test_a_sidecar_not_open_yet_is_scraped_as_empty() -> None:
    """Snapshot.empty: no sources, probes or playbooks, every counter 0 (what a scrape before start-up shows)."""
    m = scrape(Snapshot.empty(0.0))
    assert (m["suture_playbooks_loaded"], m["suture_fixes_in_progress"], m["suture_reloads_total"]) == (0, 0, 0)
