"""Health probes: one call in, one ProbeResult out, never an exception.

A probe is a small object with ``check(now) -> ProbeResult``; the runtime
runs each on its own interval. Kinds are registered by name in
:func:`probe_registry` so new kinds plug in without touching the runtime.

The server probes (``postgres``, ``redis``) speak through the maintained
drivers, psycopg 3 and redis-py, never a protocol of our own. Each check runs
on a worker thread that the probe thread waits on for no longer than the
timeout, so a server that accepts a connection and then says nothing costs a
check its timeout and no more. Passwords never reach a detail: a target is
shown with ``***`` in their place, and driver messages are scrubbed of them.
"""

from __future__ import annotations

import functools
import http.client
import math
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from suture.engine.config import ProbeConfig

from .base import ProbeResult, Registry

MAX_BODY = 64 * 1024
Values = tuple[tuple[str, float], ...]  # extra numbers of a ProbeResult


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


_QUERY_PASSWORD = re.compile(r"(?i)(password=)([^&#]*)")


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


def _shown(target: str) -> str:
    """The target as a detail may show it: the password as ``***``, printable, not too long."""
    scheme, sep, rest = target.partition("://")
    userinfo, at, host = rest.rpartition("@")  # the last @, as URL parsers do: a raw @ in a password stays hidden
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{':***' if colon else ''}@{host}"
    shown = _QUERY_PASSWORD.sub(r"\1***", f"{scheme}{sep}{rest}")
    return "".join(c if c.isprintable() else "?" for c in shown)[:200]


def _timed_out(timeout: float) -> str:
    return f"timed out after {timeout:g}s"


def _secrets(target: str, *more: str) -> tuple[str, ...]:
    """Every spelling of the passwords a target carries (and ``more``), longest first, to scrub from details."""
    userinfo = target.partition("://")[2].rpartition("@")[0]
    found = {userinfo.partition(":")[2], *(m[2] for m in _QUERY_PASSWORD.finditer(target)), *more}
    found |= {urllib.parse.unquote(s) for s in found}
    return tuple(sorted(filter(None, found), key=len, reverse=True))


class _Watchdog:
    """Runs a check on a worker thread and waits for it no longer than the timeout.

    Drivers keep their timeouts only roughly (libpq counts whole seconds, at
    least 2; name look-ups have none), so at the deadline the probe thread
    gives up with TimeoutError and calls the abort the check registered (shut
    its socket). No new worker starts while the last one runs: a hung server
    holds at most one extra thread per probe.
    """

    def __init__(self, name: str, timeout: float) -> None:
        self.name, self.timeout = name, timeout
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._abort: Callable[[], None] | None = None

    def on_abort(self, abort: Callable[[], None] | None) -> None:
        """For the check: how to interrupt it while it waits on the server (None: nothing to interrupt now)."""
        with self._lock:
            self._abort = abort

    def run(self, check: Callable[[], Values]) -> Values:
        if self._worker is not None and self._worker.is_alive():
            raise TimeoutError("timed out (the previous check is still waiting on the server)")
        outcome: list[Values | Exception] = []

        def work() -> None:
            try:
                outcome.append(check())
            except Exception as exc:  # handed to the probe thread, which describes it
                outcome.append(exc)

        self.on_abort(None)
        self._worker = threading.Thread(target=work, name=f"suture-probe-{self.name}-check", daemon=True)
        self._worker.start()
        self._worker.join(self.timeout)
        if not outcome:
            with self._lock:
                if self._abort is not None:
                    self._abort()
            raise TimeoutError(_timed_out(self.timeout))
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]


class _ServerProbe:
    """What the postgres and redis probes share: parse the target once, check on a watched worker, scrub details.

    A subclass reads the target in ``_prepare`` (raising if it is malformed,
    which every check then reports), talks to the server in ``_attempt``
    (returning values) and names what went wrong in ``_describe``.
    """

    def __init__(self, cfg: ProbeConfig, env: Mapping[str, str] | None = None) -> None:
        self.name, self.interval, self.timeout = cfg.name, cfg.interval, cfg.timeout
        self._where = _shown(cfg.target)
        self._watchdog = _Watchdog(cfg.name, cfg.timeout)
        self._password = ""  # the one the driver sends, wherever it came from
        self._problem = ""
        try:
            # Parsers split a raw / ? # or @ in a password differently and may echo a piece of it in an error.
            if any(c in cfg.target.partition("://")[2].rpartition("@")[0] for c in "/?#@"):
                raise ValueError("percent-encode / ? # @ in the user and password")
            self._prepare(cfg.target, env or {})
        except Exception as exc:  # a malformed target is reported by every check, never raised
            self._problem = f"invalid target: {_one_line(str(exc))}"
        self._secrets = _secrets(cfg.target, self._password)

    def _prepare(self, target: str, env: Mapping[str, str]) -> None:
        raise NotImplementedError

    def _attempt(self) -> Values:
        raise NotImplementedError

    def _describe(self, exc: Exception) -> str:
        raise NotImplementedError

    def check(self, now: float) -> ProbeResult:
        if self._problem:
            return self._result(now, None, self._problem)
        start = time.perf_counter()
        try:
            values = self._watchdog.run(self._attempt)
        except TimeoutError as exc:
            return self._result(now, None, str(exc))
        except Exception as exc:
            return self._result(now, None, self._describe(exc))
        latency = _elapsed_ms(start)
        return self._result(now, latency, "ok", (*values, ("latency_ms", latency)))

    def _result(self, now: float, latency: float | None, what: str, values: Values = ()) -> ProbeResult:
        detail = f"{what} at {self._where}"
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        return ProbeResult(
            name=self.name, healthy=latency is not None, latency_ms=latency, at=now, detail=detail, values=values
        )


def _shut(fd: int) -> None:
    """Shut a socket down under a thread blocked on it, through a duplicate: its owner still closes it."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


PG_QUERY = (
    "SELECT 1, (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),"
    " current_setting('max_connections')::int"
)
PG_FAILURES = (  # libpq's words -> ours; the first found in the message wins
    ("connection refused", "connection refused"),
    ("password authentication failed", "authentication failed: wrong password or unknown user"),
    ("no password supplied", "authentication failed: no password given"),
    ("authentication failed", "authentication failed"),
    ("too many clients", "too many connections"),
    ("remaining connection slots are reserved", "too many connections"),
    ("the database system is starting up", "starting up"),
    ("the database system is shutting down", "shutting down"),
    ("could not translate host name", "unknown host"),
    ("failed to resolve host", "unknown host"),
)
PG_UNKNOWN_DB = re.compile(r'database "([^"]*)" does not exist')


class PostgresProbe(_ServerProbe):
    """Log in and run ``SELECT 1``: healthy when PostgreSQL answers within the timeout.

    Target ``postgresql://user:password@host:port/db`` (libpq URI parameters
    such as ``?sslmode=require`` pass through). Without a password in it,
    ``PGPASSWORD`` from the injected env is used, never the process's own.
    values: ``connections`` (sessions on this database), ``max_connections``, ``latency_ms``.
    """

    def _prepare(self, target: str, env: Mapping[str, str]) -> None:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo  # here: the drivers add ~0.4 s to start-up

        if not target.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected postgresql://user:password@host:port/db")
        params = conninfo_to_dict(target)
        # An explicit "" also stops libpq reading PGPASSWORD from the process behind the caller's back.
        self._password = str(params.get("password") or env.get("PGPASSWORD", ""))
        statement_timeout = f"-c statement_timeout={max(1, round(self.timeout * 1000))}"
        self._conninfo = make_conninfo(
            target,
            password=self._password,
            application_name=params.get("application_name", "suture-probe"),
            connect_timeout=max(1, math.ceil(self.timeout)),  # whole seconds; libpq waits at least 2
            options=f"{params.get('options') or ''} {statement_timeout}".strip(),
        )

    def _attempt(self) -> Values:
        import psycopg

        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            self._watchdog.on_abort(functools.partial(_shut, conn.pgconn.socket))
            try:
                ((_, connections, max_connections),) = conn.execute(PG_QUERY).fetchall()
            finally:
                self._watchdog.on_abort(None)
        return (("connections", float(connections)), ("max_connections", float(max_connections)))

    def _describe(self, exc: Exception) -> str:
        import psycopg

        if isinstance(exc, psycopg.errors.QueryCanceled):
            return f"{_timed_out(self.timeout)} (statement_timeout)"
        if isinstance(exc, psycopg.errors.ConnectionTimeout):
            return _timed_out(self.timeout)
        message = re.sub(r"^(connection (is bad|failed): )+", "", _one_line(str(exc)))  # psycopg's prefixes
        if unknown := PG_UNKNOWN_DB.search(message):
            return f'unknown database "{unknown[1]}"'
        lowered = message.lower()
        known = next((ours for words, ours in PG_FAILURES if words in lowered), None)
        return known or f"{type(exc).__name__}: {message}"


REDIS_FAILURES = (  # redis-py's words -> ours; the first found in the message wins
    ("connection refused", "connection refused"),
    ("max number of clients reached", "too many connections"),
    ("name or service not known", "unknown host"),
    ("loading the dataset", "loading the dataset"),
)


class RedisProbe(_ServerProbe):
    """PING, then INFO: healthy when Redis answers within the timeout.

    Target ``redis://[user:password@]host:port/db`` or ``rediss://`` (TLS).
    values: ``used_memory`` (bytes), ``connected_clients``, ``maxmemory`` (0:
    unset), ``used_memory_percent`` (only with a maxmemory), ``latency_ms``.
    """

    def _prepare(self, target: str, env: Mapping[str, str]) -> None:
        from redis.connection import parse_url

        if not target.startswith(("redis://", "rediss://")):
            raise ValueError("expected redis://[:password@]host:port/db or rediss://")
        db = urllib.parse.urlsplit(target).path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the database must be a number, not {db!r}")
        self._password = str(parse_url(target).get("password") or "")  # type: ignore[no-untyped-call]
        self._target = target

    def _attempt(self) -> Values:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Every socket operation is bounded by the timeout, so a late worker ends on its own: no abort needed.
        # RESP2 and no CLIENT SETINFO: what every Redis (and proxy) answers, in the fewest round trips.
        client = redis.Redis.from_url(
            self._target, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0), protocol=2, driver_info=None,
        )
        try:
            client.ping()
            info: dict[str, Any] = client.info()
        finally:
            client.close()
        used, limit, clients = (float(info.get(k, 0)) for k in ("used_memory", "maxmemory", "connected_clients"))
        values = (("used_memory", used), ("connected_clients", clients), ("maxmemory", limit))
        return (*values, ("used_memory_percent", round(100 * used / limit, 2))) if limit > 0 else values

    def _describe(self, exc: Exception) -> str:
        from redis import exceptions

        message = _one_line(str(exc))
        if isinstance(exc, exceptions.TimeoutError):
            return _timed_out(self.timeout)
        if isinstance(exc, exceptions.AuthenticationError):
            if "WRONGPASS" in message or "invalid username-password" in message:
                return "authentication failed: wrong password"
            if "without any password configured" in message:
                return "authentication failed: the server has no password set"
            return "authentication failed: password required (NOAUTH)"
        lowered = message.lower()
        known = next((ours for words, ours in REDIS_FAILURES if words in lowered), None)
        return known or f"{type(exc).__name__}: {message}"


def probe_registry(env: Mapping[str, str] | None = None) -> Registry[Probe]:
    """Every probe kind by name; ``env`` is the injected environment (PGPASSWORD for postgres)."""
    registry: Registry[Probe] = Registry("probe kind")
    registry.register("http", HttpProbe)
    registry.register("tcp", TcpProbe)
    registry.register("postgres", functools.partial(PostgresProbe, env=env))
    registry.register("redis", functools.partial(RedisProbe, env=env))
    return registry


def build_probe(cfg: ProbeConfig, registry: Registry[Probe] | None = None) -> Probe:
    factory: Callable[[ProbeConfig], Probe] = (registry or probe_registry()).get(cfg.kind)
    return factory(cfg)
