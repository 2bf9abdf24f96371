"""`GET /metrics`: what the sidecar sees and does, in the Prometheus text format.

Two kinds of numbers:

- read at scrape time from the sidecar's public :class:`~.snapshot.Snapshot` (a collector):
  lines, bytes, truncated lines, decode errors, rotations and truncations per
  source; matches per playbook condition; probe status and latency; active
  signals; loaded playbooks; reloads and reload errors; scrapes of prometheus: and json:
  sources (by result, samples kept and dropped, bytes, last duration);
- counted as things happen (a private registry, never the global one): fixes
  by playbook and outcome, adjusted confidence per playbook, detection latency
  and fix duration histograms.

This is how an operator sees that nothing is lost: lines read per source go
up with the log, and truncations, decode errors and rotations are counted,
not hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .notify_outbox import OutboxStats
from .snapshot import Snapshot
from .sources.scrape import DROP_REASONS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SOURCE_COUNTERS = (
    ("lines", "suture_source_lines_total", "Lines read and matched, per source."),
    ("bytes", "suture_source_bytes_total", "Bytes read, per source."),
    ("truncated", "suture_source_truncated_lines_total", "Lines longer than the line cap, cut and counted."),
    ("decode_errors", "suture_source_decode_errors_total", "Lines with invalid UTF-8 (decoded with replacement)."),
    ("rotations", "suture_source_rotations_total", "Rename rotations seen."),
    ("truncations", "suture_source_truncations_total", "Truncations (copytruncate, rewrites) seen."),
    ("partial_flushes", "suture_source_partial_lines_total", "Unterminated last lines flushed after a timeout."),
    ("tracebacks", "suture_source_tracebacks_total", "Python tracebacks joined into one observation."),
    ("tracebacks_truncated", "suture_source_tracebacks_truncated_total", "Tracebacks over the size cap, cut."),
)


class _StateCollector(Collector):
    """Numbers the sidecar already keeps, read from one snapshot at scrape time."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        now = self.read()
        yield from _sources(now)
        matches = CounterMetricFamily("suture_condition_matches", "Lines matched, per playbook log condition.",
                                      labels=["playbook", "condition"])
        # by playbook, and within one in the order of its conditions (the sort is stable)
        for (playbook, path), total in sorted(now.condition_matches.items(), key=lambda item: item[0][0]):
            matches.add_metric([playbook, path], total)
        yield matches
        yield GaugeMetricFamily("suture_signals_active", "Conditions holding now (facts in the rules engine).",
                                value=now.signals_active)
        yield from _probes(now)
        yield from _scrapes(now)
        yield GaugeMetricFamily("suture_playbooks_loaded", "Playbooks in force.", value=len(now.playbooks))
        yield GaugeMetricFamily("suture_playbook_problems", "Problems of the playbook folder now.", value=now.problems)
        yield CounterMetricFamily("suture_reloads", "Playbook reloads swapped in.", value=now.reloads)
        yield CounterMetricFamily("suture_reload_errors", "Reloads that kept a previous version or rejected a file.",
                                  value=now.reload_errors)
        yield GaugeMetricFamily("suture_fixes_in_progress", "Fixes in their validation window.",
                                value=sum(run.phase == "validating" for run in now.runs))
        yield CounterMetricFamily("suture_core_errors", "Exceptions the core survived (each logged with its traceback).",
                                  value=now.core_errors)
        yield CounterMetricFamily("suture_thread_restarts", "Source, probe or reload loops restarted after they raised.",
                                  value=now.thread_restarts)
        if now.fleet is not None:
            yield GaugeMetricFamily("suture_fleet_connected", "1 while the fleet's PostgreSQL answers (fleet: configured).",
                                    value=1.0 if now.fleet.connected else 0.0)
            yield GaugeMetricFamily("suture_fleet_consecutive_failures",
                                    "Failed attempts to reach the fleet's PostgreSQL since it last answered.",
                                    value=now.fleet.failures)


def _sources(now: Snapshot) -> Iterator[Metric]:
    sources = dict(sorted(now.sources.items()))
    for key, name, doc in SOURCE_COUNTERS:
        family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=["source"])
        for source, view in sources.items():
            family.add_metric([source], view.counters.get(key, 0))
        yield family
    files = GaugeMetricFamily("suture_source_files", "Files (or container log streams) being followed, per source.",
                              labels=["source"])
    for source, view in sources.items():
        files.add_metric([source], view.counters.get("files", 0))
    yield files
    for key, doc in (("attaches", "Container log streams opened (first attach and every re-attach)."),
                     ("duplicates", "Container log lines skipped at a re-attach because they were read before.")):
        family = CounterMetricFamily(f"suture_container_log_{key}", doc, labels=["source"])
        for source, view in sources.items():
            if view.kind == "container":
                family.add_metric([source], view.counters[key])
        yield family


def _scrapes(now: Snapshot) -> Iterator[Metric]:
    """Per prometheus: or json: source: scrapes by result, samples kept, samples dropped by reason, bytes, duration."""
    scrapes = dict(sorted(now.scrapes.items()))
    total = CounterMetricFamily("suture_scrape", "Scrapes of a prometheus: or json: source, by result (ok, failed).",
                                labels=["source", "result"])
    kept = CounterMetricFamily("suture_scrape_samples", "Samples kept from the scrapes, per source.", labels=["source"])
    dropped = CounterMetricFamily("suture_scrape_series_dropped",
                                  "Samples dropped, per source and reason (cap, duplicate, long_name, nonfinite, "
                                  "unsupported).", labels=["source", "reason"])
    size = CounterMetricFamily("suture_scrape_bytes", "Bytes of the bodies scraped, per source.", labels=["source"])
    last = GaugeMetricFamily("suture_scrape_duration_seconds", "The source's last scrape, failed or not.",
                             labels=["source"])
    series = GaugeMetricFamily("suture_scrape_series", "Samples kept from the source's last scrape.", labels=["source"])
    for source, stats in scrapes.items():
        total.add_metric([source, "ok"], stats.ok)
        total.add_metric([source, "failed"], stats.failed)
        kept.add_metric([source], stats.samples)
        for reason in DROP_REASONS:
            dropped.add_metric([source, reason], stats.dropped.get(reason, 0))
        size.add_metric([source], stats.bytes)
        last.add_metric([source], stats.last_duration)
        series.add_metric([source], stats.last_samples)
    yield from (total, kept, dropped, size, last, series)


def _probes(now: Snapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily("suture_probe_up", "1 if the probe's last check was healthy.", labels=["probe"])
    # base units in names, as Prometheus wants (promtool check metrics): seconds, not ms
    latency = GaugeMetricFamily("suture_probe_latency_seconds", "The probe's last latency.", labels=["probe"])
    for name, result in sorted(now.probes.items()):
        up.add_metric([name], 1.0 if result.healthy else 0.0)
        if result.latency_ms is not None:
            latency.add_metric([name], result.latency_ms / 1000.0)
    yield up
    yield latency


class _NotifyCollector(Collector):
    """The notification outbox: deliveries by state and channel kind since start, and what is queued now."""

    def __init__(self, read: Callable[[], OutboxStats]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        stats = self.read()
        total = CounterMetricFamily("suture_notifications", "Notification attempts since start, by outcome (sent, "
                                    "retried, failed) and channel kind (webhook, or the Apprise URL's scheme).",
                                    labels=["state", "channel"])
        for (state, channel), n in sorted(stats.counts.items()):
            total.add_metric([state, channel], n)
        yield total
        yield GaugeMetricFamily("suture_notifications_queued", "Notifications in the outbox waiting to be delivered.",
                                value=stats.queued)
        yield GaugeMetricFamily("suture_notifications_oldest_queued_seconds",
                                "Age of the oldest notification still waiting (0 when none is).",
                                value=stats.oldest_queued_seconds)


class Telemetry:
    """The sidecar's own Prometheus registry; ``read`` gives the snapshot a scrape reports (``Sidecar.snapshot``)."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StateCollector(read))
        self.fixes = Counter("suture_fixes", "Fixes by playbook and outcome.", ["playbook", "outcome"],
                             registry=self.registry)
        self.confidence = Gauge("suture_playbook_confidence", "Adjusted confidence at the playbook's last decision.",
                                ["playbook"], registry=self.registry)
        self.detection = Histogram(
            "suture_detection_latency_seconds", "From reading the line that completed a diagnosis to the decision.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=self.registry,
        )
        self.fix_duration = Histogram(
            "suture_fix_duration_seconds", "From decision to final outcome, for applied fixes.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800), registry=self.registry,
        )

    def watch_notifications(self, read: Callable[[], OutboxStats]) -> None:
        """Report the notification outbox (``NotifyOutbox.stats``) in every scrape."""
        self.registry.register(_NotifyCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
