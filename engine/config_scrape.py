"""``sources:`` that are scraped (Prometheus text or OpenMetrics, a JSON health document) and ``alerts:``.

    sources:
      app_metrics: { prometheus: "http://127.0.0.1:8000/metrics", interval: 5s }
      app_health:  { json: "http://127.0.0.1:8000/health", interval: 5s }
    alerts:
      alertmanager: { token_env: SUTURE_ALERT_TOKEN }   # POST /api/alerts/alertmanager

A scraped source is a :class:`ScrapeConfig` in ``Config.scrapes`` (log sources stay in
``Config.sources``); the receiver is an :class:`AlertsConfig` in ``Config.alertmanager``.
The token is read from the environment at load time and never shown (left out of ``repr``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeConfig:
    name: str
    kind: Literal["prometheus", "json"]
    url: str
    interval: float = 5.0
    timeout: float = 2.0
    max_series: int = 10_000  # series kept per scrape; the rest are dropped and counted in /metrics
    max_bytes: int = 16 * MiB  # a larger body is an error of the scrape, not read further
    stale: float = 300.0  # a series absent from the scrapes for this long is forgotten


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertsConfig:
    token_env: str = "SUTURE_ALERT_TOKEN"
    token: str | None = field(default=None, repr=False, compare=False)
    max_bytes: int = 1 * MiB  # a larger webhook body is answered 413


def scrape_config(name: str, spec: Mapping[str, Any], duration: Callable[[str, Any, float], float]) -> ScrapeConfig:
    """``spec`` has exactly one of prometheus, json (the caller checked); ``duration(key, text, default)``."""
    kind: Literal["prometheus", "json"] = "prometheus" if "prometheus" in spec else "json"
    interval = duration("interval", spec.get("interval"), 5.0)
    return ScrapeConfig(
        name=name, kind=kind, url=str(spec[kind]), interval=interval,
        timeout=duration("timeout", spec.get("timeout"), min(2.0, interval)),
        max_series=int(spec.get("max_series", 10_000)),
        max_bytes=int(spec.get("max_bytes", 16 * MiB if kind == "prometheus" else 1 * MiB)),
        stale=duration("stale", spec.get("stale"), 300.0),
    )


MIN_INTERVAL = 0.1  # a scrape loop faster than this is a busy loop, not monitoring


def scrape_problems(sc: ScrapeConfig) -> list[tuple[str, str]]:
    """(key, message) for timings that load but cannot work: no interval, a timeout longer than it,
    series forgotten between two scrapes."""
    out: list[tuple[str, str]] = []
    if sc.interval < MIN_INTERVAL:
        out.append(("interval", f"a scrape interval is at least {MIN_INTERVAL * 1000:.0f}ms, got {sc.interval:g}s"))
    elif not 0 < sc.timeout <= sc.interval:
        out.append(("timeout", f"a scrape's timeout must be more than 0 and at most its interval "
                               f"({sc.interval:g}s), got {sc.timeout:g}s"))
    if sc.stale < sc.interval:
        out.append(("stale", f"stale ({sc.stale:g}s) is shorter than the interval ({sc.interval:g}s): every series "
                             "would be forgotten between two scrapes"))
    return out


def alerts_config(spec: Mapping[str, Any], env: Mapping[str, str]) -> AlertsConfig | None:
    am = spec.get("alertmanager")
    if am is None:
        return None
    token_env = am.get("token_env", "SUTURE_ALERT_TOKEN")
    return AlertsConfig(token_env=token_env, token=env.get(token_env) or None,
                        max_bytes=int(am.get("max_bytes", 1 * MiB)))
