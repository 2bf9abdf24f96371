"""``GET /api/dashboard/state``: every probe, watched metric and source, each healthy, warning or critical.

What decides a colour, in one place per kind:

- a probe is critical when its last check failed, amber when that check is stale (older than
  three intervals) or slow (over 80% of its timeout), unknown until first checked;
- a metric or container condition is critical while it holds, amber while it is seen but not
  yet for its ``for:``; the host's CPU, memory and disk are shown even when no playbook watches
  them, amber from :data:`HOST_WARNING` percent;
- a source is critical while a diagnosis on it holds, amber when it matches no file, has read
  errors, its container stream is not following, or matching lines are seen below a diagnosis.

Each item carries its recent samples (``series``), kept here while someone reads the state.
"""

from __future__ import annotations

import glob
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from suture.engine.playbook import ContainerCondition, MetricCondition, leaves

from .routes import iso

if TYPE_CHECKING:
    from .runtime import Sidecar
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

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.series = Series()
        self._sampler: MetricsSampler | None = None
        self._sample_lock = threading.Lock()
        self._sampled_at = 0.0
        self._values: dict[str, float] = {}

    def dashboard_state(self) -> dict[str, Any]:
        sc = self.sidecar
        now = sc.clock()
        core = self._core(lambda: self._conditions(now))
        values = self._sample_metrics(now)
        metrics = []
        for leaf in core["sustained"]:
            value = values.get(leaf["name"]) if leaf["kind"] == "metric" else None
            series = self.series.add(f"metric:{leaf['name']}", self._sampled_at, value)
            level = "critical" if leaf["holding"] else "warning" if leaf["pending"] else \
                "healthy" if value is not None or leaf["kind"] == "container" else "unknown"
            metrics.append({**leaf, "status": level, "value": value, "series": series,
                            "detail": leaf["condition"] + (f" (now {value:g})" if value is not None else "")})
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
            "now": _iso(now), "started_at": _iso(sc.started_at), "name": sc.config.name,
            "running": sc.ready.is_set() and not sc.stop.is_set(), "events_seq": sc.events_seq,
            "threshold": sc.config.threshold, "playbooks_version": core["version"],
            "active_fixes": core["runs"], "probes": self._probes(now), "metrics": metrics,
            "sources": self._sources(now, core["logs"]),
        }

    def _core(self, fn: Callable[[], Any]) -> Any:
        return self.sidecar.call(fn, timeout=CORE_TIMEOUT)

    def _conditions(self, now: float) -> dict[str, Any]:
        """On the core: every `when` leaf's state, and the fixes in their window."""
        sc = self.sidecar
        board = sc.board
        owners: dict[str, list[str]] = {}
        for pb in sc.playbooks.values():
            for leaf in leaves(pb.when):
                owners.setdefault(leaf.signal, []).append(pb.id)
        sustained = []
        for signal, entry in board.sustained.items():
            leaf = entry.leaf
            if isinstance(leaf, MetricCondition | ContainerCondition):
                sustained.append({"name": leaf.name, "kind": "metric" if isinstance(leaf, MetricCondition) else "container",
                                  "condition": leaf.describe(), "playbooks": owners.get(signal, []),
                                  "holding": entry.holding, "pending": entry.good_since is not None and not entry.holding})
        logs: dict[str, list[dict[str, Any]]] = {}
        for signal, window in board.logs.items():
            leaf = window.leaf
            keys = list(itertools.islice(window.matches.times, 100)) or [""]
            logs.setdefault(leaf.source, []).append({
                "condition": leaf.describe(), "playbooks": owners.get(signal, []),
                "count": max(window.count(key, now) for key in keys), "at_least": leaf.at_least,
                "at_most": leaf.at_most, "holding": bool(window.holding)})
        runs = [{"fix_id": r.fix_id, "playbook_id": r.playbook.id, "started_at": _iso(r.started_at),
                 "ends_at": _iso(r.judge.ends_at)} for r in sc.runs]
        version = sc.playbook_set.version if sc.playbook_set else None
        return {"sustained": sustained, "logs": logs, "runs": runs, "version": version}

    def _probes(self, now: float) -> list[dict[str, Any]]:
        sc = self.sidecar
        results = dict(sc.probe_results)
        out = []
        for name, cfg in sorted(sc.config.probes.items()):
            r = results.get(name)
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

    def _sources(self, now: float, logs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        sc = self.sidecar
        tails, followers, counters = dict(sc._sources), dict(sc._container_logs), sc.source_counters()
        out = []
        for name, cfg in sorted(sc.config.sources.items()):
            tail, follower = tails.get(name), followers.get(name)
            stats = counters.get(name, {})
            conditions = logs.get(name, [])
            if tail is None and follower is None:
                level, detail = "unknown", "not followed yet"
            elif any(c["holding"] for c in conditions):
                level, detail = "critical", "a diagnosis holds"
            elif follower is not None and follower.state != "following":
                level, detail = "warning", f"{follower.state}: {follower.stats.detail}"
            elif follower is not None:
                level, detail = "healthy", f"following container {cfg.container}"
            elif cfg.file and not stats.get("files"):
                level, detail = "warning", f"no file matches {cfg.file}"
            elif stats.get("errors"):
                level, detail = "warning", f"{stats['errors']} read error(s)"
            elif any(c["count"] and c["at_least"] for c in conditions):
                level, detail = "warning", "matching lines seen, below a diagnosis"
            else:
                level, detail = "healthy", "following"
            out.append({"name": name, "pattern": cfg.file or cfg.container or "", "status": level, "detail": detail,
                        "stats": stats, "conditions": conditions, "last_write_at": _iso(_newest_write(cfg.file)),
                        "series": self.series.add(f"source:{name}", now, stats.get("lines"))})
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
