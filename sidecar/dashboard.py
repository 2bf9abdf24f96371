"""The dashboard at ``/``: what suture sees, what it did, and a person's controls.

The page is plain files in ``static/`` (HTML, CSS, ES modules; no build step,
nothing from a CDN: sidecars often run without internet). It reads the routes
below and the API's own; every change it makes goes through the API's
mutating routes with the bearer token the person types in (kept in the tab's
sessionStorage only).

    GET /                                 the page (CSP: self only, no inline script; never framed)
    GET /static/{name}.js|.css|.svg       its files: only those in static/, by name (no folders)
    GET /api/dashboard/state              probes, watched metrics and sources, each healthy/warning/critical
    GET /api/dashboard/events             server-sent events from the sidecar's recent events
    GET /api/dashboard/fixes              the timeline: decision, confidence, edit, validation per fix
    GET /api/dashboard/trends             fixed queries of the history (per day, per playbook)
    GET /api/dashboard/playbooks          per playbook: suspended, adjusted confidence, last fix
    GET /api/dashboard/backups/{id}       what rolling a backup back would change

The page carries its security headers in its answer (:class:`~sidecar.api.Raw`);
the event stream is a :class:`~sidecar.api.Stream` for clients that accept
``text/event-stream`` (and the events so far, at once, for any other).
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suture.engine.backup import BACKUP_ID, read_nofollow
from suture.engine.errors import BackupError
from suture.engine.playbook import ContainerCondition, MetricCondition, leaves

from . import operations as ops
from .api import ApiError, Raw, Request, Route, Stream

if TYPE_CHECKING:
    from .api import Api
    from .runtime import Sidecar
    from .sources.metrics import MetricsSampler

STATIC = Path(__file__).with_name("static")
TYPES = {"js": "application/javascript", "css": "text/css", "svg": "image/svg+xml"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
MAX_STREAMS = 8  # each live stream holds one of the API server's threads
HEARTBEAT = 15.0  # seconds between keep-alive comments on a quiet stream
STREAM_LIFETIME = 600.0  # a stream ends after this; the browser reconnects with Last-Event-ID
WAIT = 1.0  # seconds a stream waits for events before it looks at stop and the client again
SERIES = 120  # recent samples kept per probe, metric and source (while someone reads the state)
CORE_TIMEOUT = 3.0
HOST_METRICS = ("cpu_percent", "memory_percent", "disk_percent")  # shown even when no playbook watches them
HOST_WARNING = 90.0

# -- response schemas (the fuzzer holds every answer to them) --
S, NS, N, INT = {"type": "string"}, {"type": ["string", "null"]}, {"type": ["number", "null"]}, {"type": "integer"}
LEVEL = {"enum": ["healthy", "warning", "critical", "unknown"]}
POINTS = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}


def _obj(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **optional}}


def _list(key: str, item: dict[str, Any], **more: Any) -> dict[str, Any]:
    return _obj({key: {"type": "array", "items": item}, **more})


HEALTH_ITEM = _obj({"name": S, "status": LEVEL, "detail": S, "series": POINTS})
STATE = _obj({"now": NS, "running": {"type": "boolean"}, "events_seq": INT, "threshold": {"type": "number"},
              "probes": {"type": "array", "items": HEALTH_ITEM}, "metrics": {"type": "array", "items": HEALTH_ITEM},
              "sources": {"type": "array", "items": HEALTH_ITEM}, "active_fixes": {"type": "array"}})
TIMELINE = _list("fixes", _obj({"id": S, "playbook_id": S, "status": S, "decision": S, "started_at": NS,
                                "finished_at": NS, "adjusted_confidence": N, "threshold": N,
                                "changes": {"type": "array"}, "verdict": NS, "seconds": N}),
                 playbooks={"type": "array", "items": S}, outcomes={"type": "array", "items": S})
TRENDS = _obj({"days": INT, "per_day": {"type": "array", "items": _obj({"day": S, "status": S, "fixes": INT})},
               "per_playbook": {"type": "array", "items": _obj({"playbook_id": S, "fixes": INT, "succeeded": INT,
                                                                "success_rate": N, "mttr_s": N})},
               "recovery": {"type": "array", "items": _obj({"playbook_id": S, "at": S, "seconds": N})},
               "confidence": {"type": "array", "items": _obj({"playbook_id": S, "at": S, "adjusted": N,
                                                              "threshold": N})}})
PLAYBOOKS = _list("playbooks", _obj({"id": S, "suspended": {"type": "boolean"}, "adjusted_confidence": N,
                                     "threshold": {"type": "number"}, "last_status": NS}))
# an event stream's schema describes one event (OpenAPI 3.1); `data` holds the event as JSON
EVENT = _obj({"data": S}, id=S, event=S)
PREVIEW = _obj({"backup_id": S, "fix_id": S, "playbook_id": S,
                "files": {"type": "array", "items": _obj({"path": S, "state": {"enum": [
                    "restore", "unchanged", "changed", "missing"]}})},
                "changes": {"type": "array"}, "needs_force": {"type": "boolean"}})


def _iso(value: float | datetime | None) -> str | None:
    if value is None or value == 0:
        return None
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC).timestamp()
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Series:
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


class Dashboard:
    """The dashboard's routes and the little state it keeps (recent samples, open streams)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.series = _Series()
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self._sampler: MetricsSampler | None = None
        self._sample_lock = threading.Lock()
        self._sampled_at = 0.0
        self._values: dict[str, float] = {}

    @property
    def sidecar(self) -> Sidecar:
        return self.api.sidecar

    def routes(self) -> list[Route]:
        days = {"type": "integer", "minimum": 1, "maximum": 366}
        return [
            Route("GET", "/", self.page, "The dashboard page.", content_type="text/html", response=S),
            *(Route("GET", f"/static/{{name}}.{ext}", getattr(self, f"static_{ext}"), f"A {ext} file of the page.",
                    content_type=kind, response=S) for ext, kind in TYPES.items()),
            Route("GET", "/api/dashboard/state", self.dashboard_state,
                  "Every probe, watched metric and source with its state (healthy, warning, critical).",
                  response=STATE),
            Route("GET", "/api/dashboard/events", self.dashboard_events,
                  "The sidecar's events as server-sent events (a live stream for Accept: text/event-stream).",
                  query={"after": {"type": "integer", "minimum": 0, "maximum": 999_999}},
                  content_type="text/event-stream", response=EVENT, wants_request=True),
            Route("GET", "/api/dashboard/fixes", self.dashboard_fixes,
                  "Fixes for the timeline, with decision, confidence, edit and validation.",
                  query={"limit": {"type": "integer", "minimum": 1, "maximum": 500},
                         "playbook": {"type": "string", "maxLength": 64}, "outcome": {"type": "string", "maxLength": 32},
                         "days": days},
                  response=TIMELINE),
            Route("GET", "/api/dashboard/trends", self.dashboard_trends,
                  "Fixes per day by outcome, success rate and time to recovery per playbook, confidence over time.",
                  query={"days": days}, response=TRENDS),
            Route("GET", "/api/dashboard/playbooks", self.dashboard_playbooks,
                  "Per loaded playbook: suspended or not, adjusted confidence, last fix.", response=PLAYBOOKS),
            Route("GET", "/api/dashboard/backups/{backup_id}", self.dashboard_backup,
                  "What rolling this backup back would change: each file restored, unchanged or changed since.",
                  response=PREVIEW),
        ]

    # -- the page and its files --

    def page(self) -> Raw:
        return Raw((STATIC / "index.html").read_bytes(), "text/html; charset=utf-8", dict(PAGE_HEADERS))

    def _static(self, name: str, ext: str) -> Raw:
        path = STATIC / f"{name}.{ext}"
        # names come from the folder's own listing, never from joining a request's path
        if path.name not in {p.name for p in STATIC.iterdir() if p.is_file()}:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no such file: {name}.{ext}")
        return Raw(path.read_bytes(), TYPES[ext] + ("; charset=utf-8" if ext != "svg" else ""))

    def static_js(self, name: str) -> Raw:
        return self._static(name, "js")

    def static_css(self, name: str) -> Raw:
        return self._static(name, "css")

    def static_svg(self, name: str) -> Raw:
        return self._static(name, "svg")

    # -- health --

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

    # -- live events --

    def dashboard_events(self, request: Request, after: int | None = None) -> Raw | Stream:
        if after is None:
            # ids are "<run>-<seq>": after a restart of the sidecar the numbering starts again
            run, _, seq = request.headers.get("last-event-id", "").partition("-")
            after = int(seq) if run == self._run() and seq.isdigit() and len(seq) < 10 else None
        if "text/event-stream" not in request.headers.get("accept", ""):
            return Raw(b"retry: 2000\n\n" + b"".join(self._frame(s, e) for s, e in self._backlog(after or 0)),
                       "text/event-stream; charset=utf-8")
        if not self.streams.acquire(blocking=False):
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, f"{MAX_STREAMS} live streams are open already; "
                           "the page polls instead", {"Retry-After": "30"})

        def produce(write: Callable[[bytes], bool], gone: Callable[[], bool]) -> None:
            try:
                self._stream(write, gone, after or 0)
            finally:
                self.streams.release()

        return Stream("text/event-stream; charset=utf-8", produce)

    def _run(self) -> str:
        return str(int(self.sidecar.started_at * 1000))

    def _frame(self, seq: int, event: Any) -> bytes:
        """One server-sent event: its id (for Last-Event-ID), then the event as one line of JSON."""
        from .api import _jsonable

        body = json.dumps({"seq": seq, "kind": event.kind, "at": _iso(event.at), "message": event.message,
                           "data": _jsonable(event.data)}, separators=(",", ":"))
        return f"id: {self._run()}-{seq}\ndata: {body}\n\n".encode()

    def _backlog(self, after: int) -> list[tuple[int, Any]]:
        sc = self.sidecar
        with sc.events_changed:
            if after > sc.events_seq:
                after = 0  # numbered by an earlier run of the sidecar: send all we have
            return [(seq, e) for seq, e in sc.recent_events if seq > after]

    def _stream(self, write: Callable[[bytes], bool], gone: Callable[[], bool], after: int) -> None:
        """Events as they happen, until the sidecar stops, the client leaves or the stream is old."""
        sc = self.sidecar
        started = beat = time.monotonic()
        if not write(b"retry: 2000\n\n"):
            return
        sent = after
        while not sc.stop.is_set() and time.monotonic() - started < STREAM_LIFETIME:
            events = self._backlog(sent)
            if not events:
                with sc.events_changed:
                    if sc.events_seq <= sent:
                        sc.events_changed.wait(WAIT)
                events = self._backlog(sent)
            if events:
                if not write(b"".join(self._frame(seq, e) for seq, e in events)):
                    return
                sent, beat = events[-1][0], time.monotonic()
            elif time.monotonic() - beat >= HEARTBEAT:
                if not write(b": keep-alive\n\n"):
                    return
                beat = time.monotonic()
            if gone():
                return

    # -- history --

    def _core(self, fn: Callable[[], Any]) -> Any:
        return self.sidecar.call(fn, timeout=CORE_TIMEOUT)

    def dashboard_fixes(self, limit: int = 100, playbook: str | None = None, outcome: str | None = None,
                        days: int = 30) -> dict[str, Any]:
        since = _ts(self.sidecar.clock() - days * 86400)

        def query() -> dict[str, Any]:
            store = ops._store(self.sidecar)
            rows = store.query(
                """SELECT f.id, f.playbook_id, f.group_key, f.status, f.decision, f.reason, f.mode, f.started_at,
                          f.finished_at, f.base_confidence, f.adjusted_confidence, f.threshold, f.successes,
                          f.failures, f.backup_id, f.errors_before, f.errors_after, f.fix_types, f.changes, f.detail,
                          f.approved_by, f.proposal_id, v.verdict, v.reason AS validation_reason,
                          epoch(f.finished_at) - epoch(f.started_at) AS seconds,
                          EXISTS (SELECT 1 FROM fixes a WHERE a.proposal_id = f.id) AS approved
                   FROM fixes f LEFT JOIN (SELECT fix_id, verdict, reason FROM validations
                        QUALIFY row_number() OVER (PARTITION BY fix_id ORDER BY judged_at DESC) = 1) v
                     ON v.fix_id = f.id
                   WHERE f.started_at >= ? AND (? IS NULL OR f.playbook_id = ?)
                     AND (? IS NULL OR f.status = ? OR (? = 'in_progress' AND f.finished_at IS NULL))
                   ORDER BY f.started_at DESC LIMIT ?""",
                [since, playbook, playbook, outcome, outcome, outcome, limit]).dicts()
            names = store.query("SELECT DISTINCT playbook_id FROM fixes ORDER BY 1").rows
            statuses = store.query("SELECT DISTINCT status FROM fixes ORDER BY 1").rows
            return {"fixes": rows, "playbooks": [n for (n,) in names], "outcomes": [s for (s,) in statuses]}

        found: dict[str, Any] = self._core(query)
        for row in found["fixes"]:
            row["changes"] = json.loads(row["changes"]) if row.get("changes") else []
            row["started_at"], row["finished_at"] = _iso(row["started_at"]), _iso(row["finished_at"])
        return found

    def dashboard_trends(self, days: int = 30) -> dict[str, Any]:
        since = _ts(self.sidecar.clock() - days * 86400)

        def query() -> dict[str, Any]:
            store = ops._store(self.sidecar)
            per_day = store.query(
                """SELECT strftime(date_trunc('day', started_at), '%Y-%m-%d') AS day, status, count(*) AS fixes
                   FROM fixes WHERE started_at >= ? GROUP BY ALL ORDER BY day, status""", [since]).dicts()
            per_playbook = store.query(
                """SELECT playbook_id, count(*) AS fixes, count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                          round(avg((status = 'succeeded')::INT), 4) AS success_rate,
                          round(avg(epoch(finished_at) - epoch(started_at)) FILTER (WHERE status = 'succeeded'), 1)
                              AS mttr_s
                   FROM fixes WHERE decision = 'apply' AND finished_at IS NOT NULL AND started_at >= ?
                   GROUP BY playbook_id ORDER BY fixes DESC, playbook_id""", [since]).dicts()
            recovery = store.query(
                """SELECT playbook_id, started_at AS at, round(epoch(finished_at) - epoch(started_at), 1) AS seconds
                   FROM fixes WHERE status = 'succeeded' AND started_at >= ? ORDER BY started_at LIMIT 2000""",
                [since]).dicts()
            confidence = store.query(
                """SELECT playbook_id, started_at AS at, round(adjusted_confidence, 2) AS adjusted, threshold
                   FROM fixes WHERE adjusted_confidence IS NOT NULL AND started_at >= ? ORDER BY started_at
                   LIMIT 5000""", [since]).dicts()
            return {"days": days, "per_day": per_day, "per_playbook": per_playbook, "recovery": recovery,
                    "confidence": confidence}

        found: dict[str, Any] = self._core(query)
        for row in itertools.chain(found["recovery"], found["confidence"]):
            row["at"] = _iso(row["at"])
        return found

    def dashboard_playbooks(self) -> dict[str, Any]:
        def query() -> list[dict[str, Any]]:
            sc = self.sidecar
            store = ops._store(sc)
            last = {pb: (status, at) for pb, status, at in store.query(
                """SELECT playbook_id, arg_max(status, started_at), max(started_at) FROM fixes
                   GROUP BY playbook_id""").rows}
            out = []
            for pb in sorted(sc.playbooks.values(), key=lambda p: p.id):
                numbers = ops.explain(sc, pb.id)
                status, at = last.get(pb.id, (None, None))
                out.append({"id": pb.id, "file": pb.file, "version": pb.digest[:12], "mode": pb.mode,
                            "severity": pb.severity, "description": pb.description,
                            "base_confidence": pb.confidence, "adjusted_confidence": numbers["adjusted_confidence"],
                            "threshold": numbers["threshold"], "decision_now": numbers["decision_now"],
                            "suspended": numbers["suspended"], "last_status": status, "last_fix_at": _iso(at)})
            return out

        return {"playbooks": self._core(query)}

    def dashboard_backup(self, backup_id: str) -> dict[str, Any]:
        if not BACKUP_ID.match(backup_id):
            raise ops.OperationError(HTTPStatus.NOT_FOUND, f"no backup {backup_id}")

        def preview() -> dict[str, Any]:
            sc = self.sidecar
            store = ops._store(sc)
            assert sc.executor is not None
            try:
                manifest = sc.executor.backups.load(backup_id)
            except BackupError as exc:
                raise ops.OperationError(HTTPStatus.NOT_FOUND, str(exc)) from exc
            post = sc.executor.post_images(manifest.fix_id)
            files = []
            for record in manifest.files:  # the same comparison `rollback` makes before it restores
                try:
                    now: str | None = hashlib.sha256(read_nofollow(Path(record.real))).hexdigest()
                except OSError:
                    now = None
                state = "unchanged" if now == record.sha256 else "restore" if now == post.get(record.path) \
                    else "missing" if now is None else "changed"
                files.append({"path": record.path, "state": state, "backup_sha256": record.sha256,
                              "current_sha256": now})
            fix = store.fix(manifest.fix_id) or {}
            return {"backup_id": backup_id, "fix_id": manifest.fix_id, "playbook_id": manifest.playbook_id,
                    "created_at": _iso(manifest.created_at), "files": files,
                    "changes": json.loads(fix["changes"]) if fix.get("changes") else [],
                    "fix_status": fix.get("status"),
                    "needs_force": any(f["state"] in ("changed", "missing") for f in files)}

        return dict(self._core(preview))


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


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


def routes(api: Api) -> list[Route]:
    """The dashboard's routes (the page, its files, and the data it reads)."""
    return Dashboard(api).routes()
