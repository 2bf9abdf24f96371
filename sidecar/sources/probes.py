"""Health probes: one call in, one ProbeResult out, never an exception.

A probe is a small object with ``check(now) -> ProbeResult``; the runtime
runs each on its own interval. Kinds are registered by name in
:func:`probe_registry` so new kinds plug in without touching the runtime.
"""

from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.parse
from collections.abc import Callable
from typing import Protocol

from suture.engine.config import ProbeConfig

from .base import ProbeResult, Registry

MAX_BODY = 64 * 1024


class Probe(Protocol):
    name: str
    interval: float

    def check(self, now: float) -> ProbeResult: ...


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


class HttpProbe:
    """GET a URL: healthy on the expected status (any 2xx/3xx by default) and body match."""

    def __init__(self, cfg: ProbeConfig) -> None:
        self.name = cfg.name
        self.interval = cfg.interval
        self.timeout = cfg.timeout
        self.url = urllib.parse.urlsplit(cfg.target)
        self.expect_status = cfg.expect_status
        self.body = re.compile(cfg.body) if cfg.body else None

    def check(self, now: float) -> ProbeResult:
        start = time.perf_counter()
        conn_cls = http.client.HTTPSConnection if self.url.scheme == "https" else http.client.HTTPConnection
        path = self.url.path or "/"
        if self.url.query:
            path += "?" + self.url.query
        conn = conn_cls(self.url.hostname or "127.0.0.1", self.url.port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "suture-probe", "Connection": "close"})
            resp = conn.getresponse()
            body = resp.read(MAX_BODY)
            latency = _elapsed_ms(start)
            ok = resp.status == self.expect_status if self.expect_status else 200 <= resp.status < 400
            detail = f"HTTP {resp.status}"
            if ok and self.body is not None and not self.body.search(body.decode("utf-8", "replace")):
                ok, detail = False, f"HTTP {resp.status}, body does not match /{self.body.pattern}/"
            return ProbeResult(name=self.name, healthy=ok, latency_ms=latency, at=now, detail=detail,
                               values=(("status_code", float(resp.status)),))
        except (OSError, http.client.HTTPException) as exc:
            return ProbeResult(name=self.name, healthy=False, latency_ms=None, at=now, detail=_describe(exc))
        finally:
            conn.close()


class TcpProbe:
    """Connect to host:port: healthy when the connection is accepted within the timeout."""

    def __init__(self, cfg: ProbeConfig) -> None:
        self.name = cfg.name
        self.interval = cfg.interval
        self.timeout = cfg.timeout
        host, _, port = cfg.target.rpartition(":")
        self.address = (host.strip("[]"), int(port))

    def check(self, now: float) -> ProbeResult:
        start = time.perf_counter()
        try:
            with socket.create_connection(self.address, timeout=self.timeout):
                pass
            return ProbeResult(name=self.name, healthy=True, latency_ms=_elapsed_ms(start), at=now, detail="connected")
        except OSError as exc:
            return ProbeResult(name=self.name, healthy=False, latency_ms=None, at=now, detail=_describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"


def probe_registry() -> Registry[Probe]:
    registry: Registry[Probe] = Registry("probe kind")
    registry.register("http", HttpProbe)
    registry.register("tcp", TcpProbe)
    return registry


def build_probe(cfg: ProbeConfig, registry: Registry[Probe] | None = None) -> Probe:
    factory: Callable[[ProbeConfig], Probe] = (registry or probe_registry()).get(cfg.kind)
    return factory(cfg)
