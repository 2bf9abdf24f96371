"""One delivery to one Apprise URL, confined to ``notify.allowed_hosts`` after DNS.

Apprise's plugin for the URL (read again from the URL: a plugin keeps state between sends) is
called directly (``plugin.notify``), so the send runs on the calling thread, synchronously.
While it runs, every name that thread resolves goes through :func:`_resolve`: a host that is
not in the allowlist (or notify.webhook's) is refused before a packet leaves, and of what an
allowed host resolves to, a link-local or cloud metadata address is dropped (unless named
literally, as for the webhook), so the connection can only go to an address that was checked.
This holds whatever the plugin does inside (a redirect, a second endpoint, a proxy from the
environment): every connection Apprise makes, HTTP through requests or SMTP through smtplib,
resolves its host through ``socket.getaddrinfo`` first.

The body is sent as text (``body_format=text``): Apprise escapes it for an HTML target (mail)
and Slack's escaping applies for Slack, so a log line in a report never renders as markup.
The incident report goes along as a Markdown attachment where the service takes one (mail).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from suture.engine.config import Config
from suture.engine.config_notify import NotifyChannel, host_entry, instantiate, load_apprise
from suture.engine.confine import address_problem

from .notify import GiveUp, RetryLater

log = logging.getLogger("suture.notify")

_local = threading.local()
_real_getaddrinfo = socket.getaddrinfo
_installed = threading.Lock()


def _resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    """``socket.getaddrinfo``, checked against the allowlist of a delivery running on this thread."""
    check: Callable[[str, int | None, Any], Any] | None = getattr(_local, "check", None)
    infos = _real_getaddrinfo(host, port, *args, **kwargs) if check is None else None
    if check is None:
        return infos
    name = host.decode() if isinstance(host, bytes) else str(host or "")
    number = int(port) if isinstance(port, int) or (isinstance(port, str) and port.isdigit()) else None
    return check(name, number, lambda: _real_getaddrinfo(host, port, *args, **kwargs))


def install() -> None:
    """Route this process's name lookups through :func:`_resolve` (once; a no-op outside a delivery)."""
    with _installed:
        if socket.getaddrinfo is not _resolve:
            socket.getaddrinfo = _resolve


class Refusal:
    """The allowlist of one delivery; what it refused, for the error."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.entries = [host_entry(e) for e in allowed]
        self.refused: list[str] = []

    def __call__(self, host: str, port: int | None, lookup: Callable[[], Any]) -> Any:
        host = host.lower().strip("[]")
        if not any(name == host and (p is None or p == port) for name, p in self.entries):
            shown = f"{host}:{port}" if port else host
            self.refused.append(f"{shown} is not in notify.allowed_hosts")
            raise socket.gaierror(socket.EAI_NONAME, f"suture: {shown} is not in notify.allowed_hosts")
        kept = []
        for info in lookup():
            problem = address_problem(str(info[4][0]), host)
            if problem is None:
                kept.append(info)
            else:
                self.refused.append(problem)
        if not kept:
            raise socket.gaierror(socket.EAI_NONAME, f"suture: every address of {host} is refused")
        return kept


@contextlib.contextmanager
def confined(allowed: Sequence[str]) -> Iterator[Refusal]:
    install()
    refusal = Refusal(allowed)
    _local.check = refusal
    try:
        yield refusal
    finally:
        _local.check = None


def send(config: Config, channel: NotifyChannel, *, title: str, body: str, attachment: Path | None = None,
         timeout: float = 10.0) -> None:
    """Deliver once; RetryLater or GiveUp (with Apprise's own words) when it did not go through."""
    apprise = load_apprise()
    plugin = instantiate(channel.url)
    if plugin is None:
        raise GiveUp("Apprise cannot read the URL any more")
    plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout
    plugin.request_rate_per_sec = 0  # the outbox paces retries; no sleeping in the plugin
    attach = None
    if attachment is not None and getattr(plugin, "attachment_support", False):
        attach = apprise.AppriseAttachment(str(attachment))
    capture = apprise.LogCapture(level=logging.WARNING)
    with capture as said, confined(sorted(config.notify_hosts_allowed)) as refusal:
        try:
            ok = plugin.notify(body=body, title=title, notify_type=apprise.NotifyType.WARNING,
                               body_format=apprise.NotifyFormat.TEXT, attach=attach)
        except Exception as exc:  # a plugin bug must not end the worker: it is this delivery's error
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc
        words = said.getvalue() if hasattr(said, "getvalue") else ""
    if ok:
        return
    if refusal.refused:
        raise GiveUp("refused: " + "; ".join(dict.fromkeys(refusal.refused)))
    lines = [line.split(" - ", 2)[-1] for line in str(words).splitlines() if line.strip()]
    raise RetryLater(scrub("; ".join(lines[-3:]) or "Apprise reported a failure", channel))


def scrub(text: str, channel: NotifyChannel) -> str:
    """``text`` with every part of the channel's URL that may be a secret (user, password, a host that is a
    token, path segments, query values) replaced by ``****``: Apprise's and requests' errors quote URLs."""
    parts = urllib.parse.urlsplit(channel.url)
    secrets = {parts.username or "", parts.password or ""}
    if parts.hostname and parts.hostname not in {host for host, _ in channel.hosts}:
        secrets.add(parts.hostname)
    secrets.update(urllib.parse.unquote(s) for s in parts.path.split("/"))
    secrets.update(parts.path.split("/"))
    for _, value in urllib.parse.parse_qsl(parts.query):
        secrets.add(value)
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "****")
    return text
