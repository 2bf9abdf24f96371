"""The sidecar's configuration (``suture.yaml``): one frozen object built at start-up.

Relative paths resolve against the folder that holds the config file, so a
config works the same from any working directory. The environment is
injected (``env``), never read behind the caller's back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from .config_notify import DEFAULT_EVENTS, NotifyChannel, NotifyConfig, host_entry, notify_config
from .config_scrape import AlertsConfig, ScrapeConfig, alerts_config, scrape_config, scrape_problems
from .documents import load_checked
from .errors import DocumentError, Problem
from .playbook import Learning, parse_duration
from .yaml_document import Document


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    name: str
    file: str | None = None  # absolute glob
    container: str | None = None
    timestamp_format: str | None = None
    timestamp_regex: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeConfig:
    name: str
    kind: Literal["http", "tcp", "postgres", "redis"]
    target: str
    interval: float = 10.0
    timeout: float = 2.0
    expect_status: int | None = None
    body: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    token_env: str = "SUTURE_TOKEN"
    token: str | None = None  # read from token_env at load time
    cors_origin: str | None = None
    allowed_hosts: tuple[str, ...] = ()  # Host header values answered besides the listen address and localhost

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """``fleet:``: the PostgreSQL a group of replicas shares (docs/fleet.md).

    ``postgres`` never holds a password (the loader refuses one); ``password`` is read from the
    environment at load time and is left out of ``repr`` so no log or traceback shows it.
    """

    postgres: str
    group: str = "default"
    canary: int = 1
    max_concurrent: int = 1
    fixes_per_hour: int = 30  # the group-wide hourly cap (all playbooks)
    lease: float = 30.0
    password_env: str = "PGPASSWORD"
    password: str | None = field(default=None, repr=False, compare=False)


LEASE_RANGE = (1.0, 3600.0)  # shorter cannot outlast one step; longer keeps a dead holder's target locked


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    file: Path
    name: str
    target_root: Path
    allowed_paths: tuple[Path, ...]
    allowed_containers: frozenset[str] = frozenset()  # as written; see containers_allowed
    allowed_commands: tuple[str, ...] = ()  # absolute program paths an exec may run
    playbooks: Path
    state_dir: Path
    threshold: float = 85.0
    sources: Mapping[str, SourceConfig] = field(default_factory=dict)
    scrapes: Mapping[str, ScrapeConfig] = field(default_factory=dict)  # sources with prometheus: or json:
    alertmanager: AlertsConfig | None = None  # alerts.alertmanager: the webhook receiver
    probes: Mapping[str, ProbeConfig] = field(default_factory=dict)
    metrics_interval: float = 5.0
    processes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    docker_url: str | None = None
    api: ApiConfig = field(default_factory=ApiConfig)
    notify_webhook: str | None = None
    notify_allowed_hosts: tuple[str, ...] = ()  # as written; see notify_hosts_allowed
    notify_urls: tuple[NotifyChannel, ...] = ()  # notify.urls, read by Apprise (engine.config_notify)
    notify_events: frozenset[str] = DEFAULT_EVENTS  # notify.events: what is sent to the webhook and the urls
    notify_dashboard_url: str | None = None  # notify.dashboard_url: the link in messages (else the API's)
    learning: Learning = field(default_factory=Learning)
    fleet: str | None = None  # learning.fleet: the Parquet folder (no server)
    fleet_pg: FleetConfig | None = None  # fleet: the PostgreSQL group
    max_line_bytes: int = 64 * 1024
    fixes_per_hour: int = 20
    backups_keep_last: int = 50
    backups_keep_days: float = 30.0

    @property
    def db_path(self) -> Path:
        return self.state_dir / "suture.duckdb"

    @property
    def containers_allowed(self) -> frozenset[str]:
        """Containers a restart or stop may act on: the allowlist and every container a source follows."""
        return self.allowed_containers | {s.container for s in self.sources.values() if s.container}

    @property
    def notify_hosts_allowed(self) -> frozenset[str]:
        """Hosts (lower-case; ``host`` or ``host:port``) a notification may go to: the allowlist and notify.webhook's."""
        hosts = {h.lower() for h in self.notify_allowed_hosts}
        if self.notify_webhook:
            host = urlsplit(self.notify_webhook).hostname
            if host:
                hosts.add(host.lower())
        return frozenset(hosts)


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> Config:
    """Load and check ``suture.yaml``; raise DocumentError naming file, line and key."""
    path = Path(path)
    doc = load_checked(path, "config", display=str(path))
    return build_config(doc, path, os.environ if env is None else env)


def build_config(doc: Document, path: Path, env: Mapping[str, str]) -> Config:
    data: dict[str, Any] = doc.data
    base = path.resolve().parent
    problems: list[Problem] = []

    def duration(key: tuple[str | int, ...], text: str | None, default: float) -> float:
        if text is None:
            return default
        try:
            return parse_duration(text)
        except ValueError as exc:
            problems.append(doc.problem(key, str(exc)))
            return default

    # canonical once, at start-up: a link swapped in later cannot move what is allowed
    target_root = Path(os.path.realpath(_resolve(base, data["target_root"])))
    allowed: list[Path] = []
    for i, entry in enumerate(data.get("allowed_paths", [])):
        p = Path(entry)
        if p.is_absolute() or ".." in p.parts:
            problems.append(
                doc.problem(("allowed_paths", i), f"'{entry}' must be relative to target_root, without '..'")
            )
            continue
        allowed.append(Path(os.path.realpath(target_root / p)))

    sources: dict[str, SourceConfig] = {}
    scrapes: dict[str, ScrapeConfig] = {}
    for name, spec in data.get("sources", {}).items():
        at = ("sources", name)
        kinds = [k for k in ("file", "container", "prometheus", "json") if k in spec]
        if len(kinds) != 1:
            problems.append(doc.problem(at, "a source needs exactly one of file, container, prometheus, json"))
            continue
        if kinds[0] in ("prometheus", "json"):
            def scraped(key: str, text: Any, default: float, at: tuple[str, str] = at) -> float:
                return duration((*at, key), text, default)

            scrapes[name] = scrape_config(name, spec, scraped)
            problems.extend(doc.problem((*at, key), message) for key, message in scrape_problems(scrapes[name]))
            continue
        scrape_only = sorted(set(spec) & {"interval", "timeout", "max_series", "max_bytes", "stale"})
        if scrape_only:
            problems.append(doc.problem((*at, scrape_only[0]), f"{scrape_only[0]} applies to prometheus: and json: "
                                                               "sources only"))
            continue
        ts = spec.get("timestamp", {})
        sources[name] = SourceConfig(
            name=name,
            file=str(_resolve(base, spec["file"])) if "file" in spec else None,
            container=spec.get("container"),
            timestamp_format=ts.get("format"),
            timestamp_regex=ts.get("regex"),
        )

    probes: dict[str, ProbeConfig] = {}
    for name, spec in data.get("probes", {}).items():
        at = ("probes", name)
        kinds = [k for k in ("http", "tcp", "postgres", "redis") if k in spec]
        if len(kinds) != 1:
            problems.append(doc.problem(at, "a probe needs exactly one of http, tcp, postgres, redis"))
            continue
        kind = kinds[0]
        probes[name] = ProbeConfig(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            target=spec[kind],
            interval=duration((*at, "interval"), spec.get("interval"), 10.0),
            timeout=duration((*at, "timeout"), spec.get("timeout"), 2.0),
            expect_status=spec.get("expect_status"),
            body=spec.get("body"),
        )

    api_spec = data.get("api", {})
    host, _, port = api_spec.get("listen", "127.0.0.1:8765").rpartition(":")
    host = host.strip("[]")
    if not 0 <= int(port) < 65536:
        problems.append(doc.problem(("api", "listen"), f"port {port} is out of range"))
    token_env = api_spec.get("token_env", "SUTURE_TOKEN")
    api = ApiConfig(
        enabled=api_spec.get("enabled", True),
        host=host,
        port=int(port),
        token_env=token_env,
        token=env.get(token_env) or None,
        cors_origin=api_spec.get("cors_origin"),
        allowed_hosts=tuple(h.lower() for h in api_spec.get("allowed_hosts", ())),
    )

    learning_spec = data.get("learning", {})
    metrics_spec = data.get("metrics", {})
    limits = data.get("limits", {})
    metrics_interval = duration(("metrics", "interval"), metrics_spec.get("interval"), 5.0)
    fleet_pg = _fleet(doc, data["fleet"], env, problems) if "fleet" in data else None
    notify = _notify(doc, data.get("notify", {}), env, problems)
    if problems:
        raise DocumentError(problems)
    return Config(
        file=path.resolve(),
        name=data.get("name") or _host_name(),
        target_root=target_root,
        allowed_paths=tuple(allowed),
        allowed_containers=frozenset(data.get("allowed_containers", ())),
        allowed_commands=tuple(data.get("allowed_commands", ())),
        playbooks=_resolve(base, data.get("playbooks", "./playbooks")),
        state_dir=_resolve(base, data.get("state_dir", "./.suture")),
        threshold=float(data.get("threshold", 85)),
        sources=sources,
        scrapes=scrapes,
        alertmanager=alerts_config(data.get("alerts", {}), env),
        probes=probes,
        metrics_interval=metrics_interval,
        processes=metrics_spec.get("processes", {}),
        docker_url=data.get("docker", {}).get("url"),
        api=api,
        notify_webhook=notify.webhook,
        notify_allowed_hosts=notify.allowed_hosts,
        notify_urls=notify.channels,
        notify_events=notify.events,
        notify_dashboard_url=notify.dashboard_url,
        learning=Learning(
            model=learning_spec.get("model", "beta"),
            prior_weight=float(learning_spec.get("prior_weight", 10)),
        ),
        fleet=str(_resolve(base, learning_spec["fleet"])) if "fleet" in learning_spec else None,
        fleet_pg=fleet_pg,
        max_line_bytes=int(limits.get("max_line_bytes", 64 * 1024)),
        fixes_per_hour=int(limits.get("fixes_per_hour", 20)),
        backups_keep_last=int(data.get("backups", {}).get("keep_last", 50)),
        backups_keep_days=float(data.get("backups", {}).get("keep_days", 30)),
    )


def _notify(doc: Document, spec: Mapping[str, Any], env: Mapping[str, str], problems: list[Problem]) -> NotifyConfig:
    """``notify:`` checked beyond the schema (engine.config_notify); every host against notify.allowed_hosts."""
    entries = [host_entry(e) for e in spec.get("allowed_hosts", ())]
    webhook_host = urlsplit(spec["webhook"]).hostname if spec.get("webhook") else None
    if webhook_host:
        entries.append((webhook_host.lower(), None))

    def allowed(host: str, port: int | None) -> str | None:
        if any(name == host and (entry_port is None or entry_port == port) for name, entry_port in entries):
            return None
        shown = f"[{host}]" if ":" in host else host
        listed = ", ".join(sorted(spec.get("allowed_hosts", ()))) or "none"
        return (f"{shown}{f':{port}' if port else ''}, which is not in notify.allowed_hosts (allowed: {listed}); "
                "add it to notify.allowed_hosts")

    return notify_config(spec, env, lambda path, message: problems.append(doc.problem(path, message)), allowed)


def _fleet(doc: Document, spec: Mapping[str, Any], env: Mapping[str, str], problems: list[Problem]) -> FleetConfig:
    """``fleet:`` checked beyond the schema. No message repeats the URL: it may hold a secret."""
    url = spec["postgres"]
    problems.extend(doc.problem(("fleet", "postgres"), message) for message in postgres_url_problems(url))
    lease = parse_duration(spec.get("lease", "30s"))
    low, high = LEASE_RANGE
    if not low <= lease <= high:
        problems.append(doc.problem(("fleet", "lease"), f"a lease lasts from {low:.0f}s to {high / 60:.0f}m, got {spec['lease']}"))
    password_env = spec.get("password_env", "PGPASSWORD")
    return FleetConfig(
        postgres=url,
        group=spec.get("group", "default"),
        canary=int(spec.get("canary", 1)),
        max_concurrent=int(spec.get("max_concurrent", 1)),
        fixes_per_hour=int(spec.get("fixes_per_hour", 30)),
        lease=lease,
        password_env=password_env,
        password=env.get(password_env) or None,
    )


def postgres_url_problems(url: str) -> list[str]:
    """What is wrong with a fleet URL, in words that never repeat it (it may hold a password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return ["is not a URL: write postgresql://user@host[:port]/database"]
    if parts.scheme not in ("postgres", "postgresql"):
        return ["must start with postgresql:// (write postgresql://user@host[:port]/database)"]
    out = []
    query = parse_qs(parts.query)
    if parts.password is not None or "password" in query:
        out.append("must not hold a password: set PGPASSWORD (or the variable fleet.password_env names) instead")
    if not parts.hostname and "host" not in query:
        out.append("names no host (write postgresql://user@host[:port]/database)")
    if not parts.path.strip("/") and "dbname" not in query:
        out.append("names no database (write postgresql://user@host[:port]/database)")
    return out


def _host_name() -> str:
    """The host name, trimmed to what a sidecar name may hold."""
    import re
    import socket

    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64].lstrip("-._") or "sidecar"
    return name
