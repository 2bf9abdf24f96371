"""Who gets in to the API: the Host names it answers, the connection slots, and their counters.

:class:`HostPolicy` is the DNS-rebinding guard; :class:`Slots` keeps at most ``Limits.connections``
connections open (at the cap, the one that has waited longest for its request gives way; if every
one is being answered the newcomer is refused); :class:`Counts` shows both in ``/metrics``.
The HTTP side that uses them is :mod:`.transport`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

HOST = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?")  # as the config schema


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    connections: int = 64  # open at once, event streams included; the dashboard caps its streams at 8
    read_timeout: float = 5.0  # seconds for a request's line, headers and body, from the first wait
    write_timeout: float = 10.0  # seconds a send may block on a client that does not read
    max_line: int = 8 * 1024
    max_head: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which Host header values the API answers; a DNS-rebinding page sends a name of its own.

    Answered: any IP literal (rebinding needs a name; Prometheus scrapes a pod by IP), localhost and
    ``*.localhost``, the listen host, each at any port, and the config's ``api.allowed_hosts``
    (``host`` at any port, ``host:port`` at that port only).
    """

    listen: str
    allowed: frozenset[str]

    def allows(self, value: str) -> bool:
        m = HOST.fullmatch(value)
        if not m:
            return False
        host, port = m["host"].lower(), m["port"]
        name = host.removesuffix(".")
        return (_ip_literal(host) or name == "localhost" or name.endswith(".localhost")
                or name == self.listen or host in self.allowed or f"{host}:{port}" in self.allowed)


def _ip_literal(host: str) -> bool:
    try:
        if host.startswith("["):
            ipaddress.IPv6Address(host[1:-1])
        else:
            ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return False


@dataclass(slots=True)
class _Slot:
    sock: socket.socket
    reading: bool = True  # waiting for (or reading) a request, as opposed to answering one
    since: float = 0.0
    deadline: float = 0.0


class Slots:
    """The open connections, what each is doing, and the counts of those refused or cut."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._open: dict[socket.socket, _Slot] = {}
        self._lock = threading.Lock()
        self.counts = {"refused": 0, "evicted": 0, "slow": 0, "idle": 0, "misdirected": 0}

    def admit(self, sock: socket.socket) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._open) >= self.limits.connections:
                waiting = [s for s in self._open.values() if s.reading]
                if not waiting:
                    self.counts["refused"] += 1
                    return False
                victim = min(waiting, key=lambda s: s.since)
                del self._open[victim.sock]
                self.counts["evicted"] += 1
                hang_up(victim.sock)  # its thread's read returns at once; the socket is closed by that thread
            self._open[sock] = _Slot(sock, since=now, deadline=now + self.limits.read_timeout)
            return True

    def get(self, sock: socket.socket) -> _Slot | None:
        with self._lock:
            return self._open.get(sock)

    def reading(self, slot: _Slot) -> bool:
        """The connection waits for its next request (evictable, under the read deadline); False if evicted."""
        now = time.monotonic()
        with self._lock:
            slot.reading, slot.since, slot.deadline = True, now, now + self.limits.read_timeout
            return self._open.get(slot.sock) is slot

    def answering(self, slot: _Slot) -> bool:
        """The request is in: no longer evictable nor under the deadline; False if evicted meanwhile."""
        with self._lock:
            slot.reading = False
            return self._open.get(slot.sock) is slot

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def close_all(self) -> None:
        with self._lock:
            for sock in self._open:
                hang_up(sock)
            self._open.clear()

    def snapshot(self) -> tuple[int, dict[str, int]]:
        with self._lock:
            return len(self._open), dict(self.counts)


def hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Counts:
    """The transport's counters as Prometheus metrics, in the sidecar's registry."""

    def __init__(self, slots: Slots, registry: Any) -> None:
        self.slots, self.registry = slots, registry

    def unregister(self) -> None:
        self.registry.unregister(self)

    def describe(self) -> Iterable[Metric]:
        return self._families(0, dict.fromkeys(self.slots.counts, 0))

    def collect(self) -> Iterable[Metric]:
        return self._families(*self.slots.snapshot())

    @staticmethod
    def _families(open_now: int, counts: dict[str, int]) -> Iterator[Metric]:
        yield GaugeMetricFamily("suture_api_connections_open", "Connections to the API open now.", value=open_now)
        yield CounterMetricFamily("suture_api_connections_refused", "New connections answered 503: every slot busy.",
                                  value=counts["refused"])
        cut = CounterMetricFamily("suture_api_connections_cut",
                                  "Connections closed by the API: slow (408), idle, or evicted at the cap.",
                                  labels=["reason"])
        for reason in ("slow", "idle", "evicted"):
            cut.add_metric([reason], counts[reason])
        yield cut
        yield CounterMetricFamily("suture_api_misdirected_requests",
                                  "Requests refused with 421: a Host that is not this server's.",
                                  value=counts["misdirected"])
