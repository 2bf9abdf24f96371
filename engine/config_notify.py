"""``notify:``: where a person hears about a fix, read and checked at load time.

    notify:
      webhook: "https://hooks.example.com/suture"       # the generic JSON webhook (docs/notifications.md)
      urls: ["slack://T0/B0/XXXX", "mailto://bot@example.com?smtp=mail.example.com&to=ops@example.com"]
      events: [proposed, rolled_back, failed, suspended]
      dashboard_url: "https://suture.example.com"       # the link in every message (default: the API's)
      allowed_hosts: [mail.example.com]

Each URL is an Apprise URL (https://appriseit.com), read by Apprise itself here, at load: one it
cannot read is refused at its line. A URL may take a secret from the environment as ``{env:NAME}``
(replaced at load; a variable that is not set is a problem at its line).

A URL is never shown as written: what logs, errors, the history's ``notifications.target`` and
the API show is Apprise's privacy form (passwords and tokens as ``****``). Each channel is known
by a hash of the URL as written (``channel``), so the outbox's dedup key holds no secret and stays
the same across restarts.

Hosts: every host a channel sends to (the SMTP server of mail, the fixed endpoint of Slack,
PagerDuty or ntfy.sh, the host of a URL that names one) must be in ``notify.allowed_hosts`` (or be
notify.webhook's). This is checked here by host name and again at each delivery, after DNS, by
the sidecar (:mod:`suture.sidecar.notify_apprise`).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .status import ALERT, FINAL, FixStatus

_ENTRY = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<name>[A-Za-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?$")


def host_entry(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` (the schema's form) -> (lower-case host, port or None)."""
    m = _ENTRY.match(entry)
    if m is None:
        raise ValueError(f"not a host or host:port: {entry!r}")
    return (m.group("v6") or m.group("name")).lower(), int(m.group("port")) if m.group("port") else None


# what notify.events may name: a final status, or a playbook's suspension
EVENTS = frozenset({*(str(s) for s in FINAL if s != FixStatus.SKIPPED), "suspended"})
DEFAULT_EVENTS = frozenset({*(str(s) for s in ALERT), "suspended"})  # what notify.webhook has always been sent
WEBHOOK_CHANNEL = "webhook"

_ENV = re.compile(r"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")

# hosts fixed by a service (its URL names tokens, not a host): Apprise's own endpoints for them
_SLACK_HOSTS = {"hook": "hooks.slack.com", "gov": "hooks.slack-gov.com"}
_PAGERDUTY_HOSTS = {"us": "events.pagerduty.com", "eu": "events.eu.pagerduty.com"}
_NTFY_CLOUD = "ntfy.sh"


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyChannel:
    """One Apprise URL of ``notify.urls``: the URL itself (never shown), what may be shown, where it sends."""

    url: str = field(repr=False)  # as Apprise reads it: {env:NAME} replaced
    channel: str  # 'apprise:' + a hash of the URL as written: the outbox's key, no secret in it
    target: str  # Apprise's privacy form of the URL
    scheme: str  # slack, mailto, json, ...: the label in /metrics
    hosts: tuple[tuple[str, int | None], ...]  # (host, port) it connects to; port None: the service's default


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyConfig:
    webhook: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    channels: tuple[NotifyChannel, ...] = ()
    events: frozenset[str] = DEFAULT_EVENTS
    dashboard_url: str | None = None


def channel_key(written: str) -> str:
    return "apprise:" + hashlib.sha256(written.encode()).hexdigest()[:16]


def notify_config(
    spec: Mapping[str, Any],
    env: Mapping[str, str],
    problem: Callable[[tuple[str | int, ...], str], None],
    allowed: Callable[[str, int | None], str | None],
) -> NotifyConfig:
    """``notify:`` (already checked by the schema) read into a NotifyConfig; each problem reported at its path.

    ``allowed(host, port)`` says why a host may not be sent to (notify.allowed_hosts), or None.
    """
    channels: list[NotifyChannel] = []
    urls = spec.get("urls", ())
    if urls:
        seen: set[str] = set()
        for i, written in enumerate(urls):
            at: tuple[str | int, ...] = ("notify", "urls", i)
            def said(message: str, at: tuple[str | int, ...] = at) -> None:
                problem(at, message)

            channel = _channel(written, env, said)
            if channel is None:
                continue
            if channel.channel in seen:
                problem(at, f"{channel.target} is listed twice")
                continue
            seen.add(channel.channel)
            for host, port in channel.hosts:
                why = allowed(host, port)
                if why is not None:
                    problem(at, f"{channel.scheme}:// sends to {why}")
            channels.append(channel)
    events = frozenset(spec["events"]) if "events" in spec else DEFAULT_EVENTS
    for i, name in enumerate(spec.get("events", ())):
        if name not in EVENTS:  # the schema's enum says so too; this names the event in words
            problem(("notify", "events", i), f"unknown event {name!r}; events are {', '.join(sorted(EVENTS))}")
    return NotifyConfig(webhook=spec.get("webhook"), allowed_hosts=tuple(spec.get("allowed_hosts", ())),
                        channels=tuple(channels), events=events, dashboard_url=spec.get("dashboard_url"))


def _channel(written: str, env: Mapping[str, str], problem: Callable[[str], None]) -> NotifyChannel | None:
    missing = [name for name in _ENV.findall(written) if not env.get(name)]
    if missing:
        problem(f"{{env:{missing[0]}}}: the variable {missing[0]} is not set")
        return None
    url = _ENV.sub(lambda m: env[m.group(1)], written)
    plugin = instantiate(url)
    scheme = written.split("://", 1)[0].lower() if "://" in written else ""
    if plugin is None:
        problem(f"Apprise cannot read this {scheme + '://' if scheme else ''} URL (see https://appriseit.com for "
                "the forms each service takes)")
        return None
    target = str(plugin.url(privacy=True))
    try:
        hosts = tuple(destinations(plugin))
    except ValueError as exc:
        problem(f"{target}: {exc}")
        return None
    return NotifyChannel(url=url, channel=channel_key(written), target=target, scheme=scheme, hosts=hosts)


def load_apprise() -> Any:
    """The apprise module, imported on first use (a config without urls never pays for it); its own
    DeprecationWarning (imghdr, in its PGP support) is not ours to show."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise
    return apprise


def instantiate(url: str) -> Any:
    """Apprise's plugin for ``url`` (nothing is sent), or None when Apprise cannot read it."""
    apprise = load_apprise()
    try:
        with warnings.catch_warnings():  # the first call loads Apprise's plugins (see load_apprise)
            warnings.simplefilter("ignore", DeprecationWarning)
            return apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:  # a plugin that raises on a malformed URL is one Apprise cannot read
        return None


def destinations(plugin: Any) -> Iterable[tuple[str, int | None]]:
    """The hosts (and ports) ``plugin`` connects to, read from Apprise's plugin; ValueError if it cannot be told."""
    name = type(plugin).__name__
    if name == "NotifyEmail":
        host = getattr(plugin, "smtp_host", "") or ""
        if not host:
            raise ValueError("name the SMTP server with ?smtp=HOST, so that its host can be allowed")
        yield host.lower(), getattr(plugin, "port", None)
        return
    if name == "NotifySlack":
        mode = str(getattr(plugin, "mode", ""))
        yield _SLACK_HOSTS.get(mode, "slack.com"), None
        return
    if name == "NotifyPagerDuty":
        yield _PAGERDUTY_HOSTS.get(str(getattr(plugin, "region_name", "us")), _PAGERDUTY_HOSTS["us"]), None
        return
    if name == "NotifyNtfy" and str(getattr(plugin, "mode", "")) == "cloud":
        yield _NTFY_CLOUD, None
        return
    fixed = getattr(type(plugin), "notify_url", None)
    if isinstance(fixed, str) and fixed.startswith(("http://", "https://")):
        host = urlsplit(fixed).hostname
        if host:
            yield host.lower(), None
            return
    host = getattr(plugin, "host", None)
    if isinstance(host, str) and host:
        yield host.lower(), getattr(plugin, "port", None)
        return
    raise ValueError("suture cannot tell which host this service sends to")
