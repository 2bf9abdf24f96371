"""``GET /api/dashboard/state``: every probe, watched metric and source, each healthy, warning or critical.

What decides a colour, in one place per kind:

- a probe is critical when its last check failed, amber when that check is stale (older than
  three intervals, or than an interval, its timeout and 2 s if that is longer) or slow (over
  80% of its timeout), unknown until first checked;
- a metric or container condition is critical while it holds, amber while it is seen but not
  yet for its ``for:``; the host's CPU, memory and disk are shown even when no playbook watches
  them, amber from :data:`HOST_WARNING` percent;
- a source is critical while a diagnosis on it holds, amber when it matches no file, has read
  errors, its container stream is not following, or matching lines are seen below a diagnosis.

Each item carries its recent samples (``series``), kept here while someone reads the state.
Everything the sidecar knows comes from one :meth:`Sidecar.snapshot`; metric values come from
the view's own sampler (at most once per metrics interval), so reading the state never waits
for the sidecar's samples.
"""

from __future__ import annotations

import glob
import itertools
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from .routes import iso
from .snapshot import Snapshot, SourceView
from .sources.scrape import redact_url, scrape_level, scrape_numbers

if TYPE_CHECKING:
    from .public import PublicSidecar
    from .sources.metrics import MetricsSampler

SERIES = 120  # recent samples kept per probe, metric and source (while someone reads the state)
CORE_TIMEOUT = 3.0
HOST_METRICS = ("cpu_percent", "memory_percent", "disk_percent")  # shown even when no playbook watches them
HOST_WARNING = 90.0


class Series:
    """Recent (time, value) points per key, appended when the state is read."""

    def __init__(self) -> None:
        self._points: dict[str, deque[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, at: float, value: float | None) -> list[list[float]]:
        with self._lock:
            points = self._points.setdefault(key, deque(maxlen=SERIES))
            if value is not None and (not points or at > points[-1][0]):
                points.append((at, float(value)))
            return [[round(t, 3), v] for t, v in points]


class StateView:
    """The state route, and the samples it keeps (its own metrics sampler, recent points)."""

    def __init__(self, sidecar: PublicSidecar) -> None:
        self.sidecar = sidecar
        self.series = Series()
        self._sampler: MetricsSampler | None = None
        self._sample_lock = threading.Lock()
        self._sampled_at = 0.0
        self._values: dict[str, float] = {}

    def dashboard_state(self) -> dict[str, Any]:
        sc = self.sidecar
        view = sc.snapshot(timeout=CORE_TIMEOUT)
        now = view.at
        values = self._sample_metrics(now)
        metrics = []
        for c in view.conditions:
            if c.kind not in ("metric", "container"):
                continue
            value = values.get(c.subject) if c.kind == "metric" else None
            series = self.series.add(f"metric:{c.subject}", self._sampled_at, value)
            level = "critical" if c.holding else "warning" if c.pending else \
                "healthy" if value is not None or c.kind == "container" else "unknown"
            metrics.append({"name": c.subject, "kind": c.kind, "condition": c.condition, "playbooks": list(c.playbooks),
                            "holding": c.holding, "pending": c.pending, "status": level, "value": value,
                            "series": series, "detail": c.condition + (f" (now {value:g})" if value is not None else "")})
        for name in HOST_METRICS:
            if any(m["name"] == name for m in metrics):
                continue
            value = values.get(name)
            level = "unknown" if value is None else "warning" if value >= HOST_WARNING else "healthy"
            metrics.append({"name": name, "kind": "metric", "playbooks": [], "status": level, "value": value,
                            "series": self.series.add(f"metric:{name}", self._sampled_at, value),
                            "detail": (f"{value:g}%" if value is not None else "first sample pending")
                            + f" (no playbook watches it; amber from {HOST_WARNING:g}%)"})
        return {
            "now": _iso(now), "started_at": _iso(view.started_at), "name": sc.config.name,
            "fleet": sc.config.fleet_pg is not None,  # the page reads GET /api/fleet only then
            "running": view.running, "events_seq": view.events_seq,
            "threshold": sc.config.threshold, "playbooks_version": view.version,
            "active_fixes": [{"fix_id": r.fix_id, "playbook_id": r.playbook_id, "started_at": _iso(r.started_at),
                              "ends_at": _iso(r.ends_at)} for r in view.runs],
            "probes": self._probes(view), "metrics": metrics, "sources": self._sources(view),
        }

    def _probes(self, view: Snapshot) -> list[dict[str, Any]]:
        now = view.at
        out = []
        for name, cfg in sorted(self.sidecar.config.probes.items()):
            r = view.probes.get(name)
            series = self.series.add(f"probe:{name}", r.at if r else now, r.latency_ms if r else None)
            if r is None:
                level, detail = "unknown", "not checked yet"
            else:
                stale = now - r.at > max(3 * cfg.interval, cfg.interval + cfg.timeout + 2)
                slow = r.latency_ms is not None and r.latency_ms > 0.8 * cfg.timeout * 1000
                level = "critical" if not r.healthy else "warning" if stale or slow else "healthy"
                detail = r.detail or ("healthy" if r.healthy else "unhealthy")
                if stale:
                    detail += f" (last checked {now - r.at:.0f}s ago)"
            out.append({"name": name, "kind": cfg.kind, "target": cfg.target, "status": level, "detail": detail,
                        "latency_ms": r.latency_ms if r else None, "checked_at": _iso(r.at) if r else None,
                        "interval": cfg.interval, "series": series})
        return out

    def _sources(self, view: Snapshot) -> list[dict[str, Any]]:
        logs: dict[str, list[dict[str, Any]]] = {}
        for c in view.conditions:
            if c.kind == "log":
                logs.setdefault(c.subject, []).append({
                    "condition": c.condition, "playbooks": list(c.playbooks), "count": c.count,
                    "at_least": c.at_least, "at_most": c.at_most, "holding": c.holding})
        out = []
        for name, cfg in sorted(self.sidecar.config.sources.items()):
            source = view.sources.get(name)
            stats = dict(source.counters) if source else {}
            conditions = logs.get(name, [])
            level, detail = _source_level(source, cfg.file, cfg.container, stats, conditions)
            out.append({"name": name, "pattern": cfg.file or cfg.container or "", "status": level, "detail": detail,
                        "stats": stats, "conditions": conditions, "last_write_at": _iso(_newest_write(cfg.file)),
                        "series": self.series.add(f"source:{name}", view.at, stats.get("lines"))})
        for name, scrape in sorted(self.sidecar.config.scrapes.items()):
            counted = view.scrapes.get(name)
            level, detail = scrape_level(counted)
            numbers = scrape_numbers(counted)
            out.append({"name": name, "pattern": f"{scrape.kind} {redact_url(scrape.url)}", "status": level,
                        "detail": detail, "stats": numbers, "conditions": [], "last_write_at": None,
                        "series": self.series.add(f"source:{name}", view.at, numbers.get("samples"))})
        return out

    def _sample_metrics(self, now: float) -> dict[str, float]:
        """Metric values for the page: its own sampler, at most once per metrics interval, off the core."""
        if now - self._sampled_at < self.sidecar.config.metrics_interval or not self._sample_lock.acquire(False):
            return dict(self._values)
        try:
            from .sources.metrics import MetricsSampler

            if self._sampler is None:
                self._sampler = MetricsSampler(processes=self.sidecar.config.processes)
            self._values = {s.name: s.value for s in self._sampler.sample(now)}
            self._sampled_at = now
            return dict(self._values)
        finally:
            self._sample_lock.release()


def _source_level(source: SourceView | None, file: str | None, container: str | None, stats: dict[str, int],
                  conditions: list[dict[str, Any]]) -> tuple[str, str]:
    """A source's colour and why (the first that applies, worst first)."""
    if source is None:
        return "unknown", "not followed yet"
    if any(c["holding"] for c in conditions):
        return "critical", "a diagnosis holds"
    if source.kind == "container":
        if source.state != "following":
            return "warning", f"{source.state}: {source.detail}"
        return "healthy", f"following container {container}"
    if file and not stats.get("files"):
        return "warning", f"no file matches {file}"
    if stats.get("errors"):
        return "warning", f"{stats['errors']} read error(s)"
    if any(c["count"] and c["at_least"] for c in conditions):
        return "warning", "matching lines seen, below a diagnosis"
    return "healthy", "following"


def _iso(value: float | None) -> str | None:
    return iso(value, milliseconds=True)


def _newest_write(pattern: str | None) -> float | None:
    """When a file of the source was last written (at most 200 files looked at)."""
    if not pattern:
        return None
    newest = None
    for path in itertools.islice(glob.iglob(pattern), 200):
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        newest = mtime if newest is None else max(newest, mtime)
    return newest
