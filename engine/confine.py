"""Which containers, programs and notification hosts a fix may reach: the one place that decides.

``allowed_paths`` confines file edits; these confine every other action the
same way (SAFETY 19). Each check is asked twice: when a playbook loads (so
``suture check`` names the file and line) and again right before the action
runs (the config or PATH may differ from what was checked).

    allowed_containers  restart / stop          plus every container a source follows
    allowed_commands    exec argv[0]            absolute paths; a bare name is looked up in
                                                the child's fixed PATH and must resolve to one
    notify.allowed_hosts  notify webhook hosts  plus notify.webhook's own host

An empty or missing list allows nothing beyond what the config itself names.
Every function is pure (no network); ``resolve_command`` reads the file system.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Iterable
from urllib.parse import urlsplit

from .config import Config
from .config_notify import host_entry
from .errors import ActionError

# The PATH an exec'd program runs with (and a bare argv[0] is looked up in): fixed, never inherited.
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Refused(ActionError):
    """An action outside its allowlist."""


def container_problem(config: Config, name: str) -> str | None:
    """Why a restart or stop of ``name`` is not allowed, or None."""
    allowed = config.containers_allowed
    if name in allowed:
        return None
    listed = ", ".join(sorted(allowed)) or "none"
    return (f"container '{name}' is not in allowed_containers (allowed: {listed}); add it to allowed_containers"
            f" in {config.file.name} to let fixes restart or stop it")


def resolve_command(config: Config, argv0: str, *, path: str = CHILD_PATH) -> str:
    """The absolute program an exec runs for ``argv0``; Refused unless it is in allowed_commands."""
    if "\x00" in argv0 or not argv0:
        raise Refused("argv[0] must be a program name or an absolute path")
    if argv0.startswith("/"):
        program = os.path.normpath(argv0)
    elif "/" in argv0:
        raise Refused(f"argv[0] '{argv0}' is a relative path; give the program's absolute path")
    else:
        found = shutil.which(argv0, path=path)
        if found is None:
            raise Refused(f"program '{argv0}' is not found in the PATH programs run with ({path}); "
                          "give its absolute path")
        program = found
    if program not in config.allowed_commands:
        listed = ", ".join(config.allowed_commands) or "none"
        via = "" if program == argv0 else f" ('{argv0}' resolves to {program})"
        raise Refused(f"program {program}{via} is not in allowed_commands (allowed: {listed}); add its absolute path"
                      f" to allowed_commands in {config.file.name} to let fixes run it")
    return program


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"webhook {url!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused(f"webhook {url!r} has an invalid port") from None
    return parts.hostname.lower(), port


def _listed(host: str, port: int, allowed: Iterable[str]) -> bool:
    """An entry without a port allows any port of its host; one with a port, that port only."""
    for entry in allowed:
        name, entry_port = host_entry(entry)
        if name == host and (entry_port is None or entry_port == port):
            return True
    return False


def webhook_problem(config: Config, url: str) -> str | None:
    """Why a notification to ``url`` is not allowed, or None (only the URL is read; nothing is resolved)."""
    try:
        host, port = _host_port(url)
    except Refused as exc:
        return str(exc)
    if _listed(host, port, config.notify_hosts_allowed):
        return None
    listed = ", ".join(sorted(config.notify_hosts_allowed)) or "none"
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (f"webhook host {shown} is not in notify.allowed_hosts (allowed: {listed}); add it to notify.allowed_hosts"
            f" in {config.file.name} to let fixes post to it")


def address_problem(address: str, host: str) -> str | None:
    """Why connecting to ``address`` (what ``host`` resolved to) is refused: link-local and metadata addresses.

    A cloud metadata service (169.254.169.254, fd00:ec2::254) hands out credentials; a webhook may reach
    one only if its allowlist entry names that address literally, never through a name that resolves there.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{host} resolved to {address!r}, which is not an address"
    if host.strip("[]") == str(ip):
        return None  # the allowlist named this address itself
    if ip.is_link_local or ip in ipaddress.ip_network("fd00:ec2::/64"):
        return f"{host} resolves to {ip}, a link-local or cloud metadata address; refusing to send there"
    return None
