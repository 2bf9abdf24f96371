"""Probes against real servers: a PostgreSQL and a Redis started for the session, a hung one, a closed port."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import pytest
import redis
from suture.engine.config import ProbeConfig
from suture.sidecar.sources.base import ProbeResult
from suture.sidecar.sources.probes import PostgresProbe, RedisProbe, build_probe, probe_registry

from .servers import PostgresServer, RedisServer, free_port

TIMEOUT = 0.5
MARGIN = 0.3  # a thread start and a join: what the probe may take beyond its timeout


def postgres(target: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> PostgresProbe:
    return PostgresProbe(ProbeConfig(name="db", kind="postgres", target=target, timeout=timeout), env=env)


def redis_probe(target: str, timeout: float = TIMEOUT) -> RedisProbe:
    return RedisProbe(ProbeConfig(name="cache", kind="redis", target=target, timeout=timeout))


def what(result: ProbeResult) -> str:
    """The detail without the target it names ("connection refused at postgresql://...")."""
    return result.detail.rpartition(" at ")[0]


def timed(check: Callable[[float], ProbeResult]) -> tuple[ProbeResult, float]:
    start = time.monotonic()
    result = check(1.0)
    return result, time.monotonic() - start


# Port 1 where a target would reach a server: nobody listens there, whatever else runs on this machine.
HOSTILE_POSTGRES = [
    "",
    "postgresql://u:hunter2@",
    "mysql://u:hunter2@127.0.0.1:1/db",
    "postgresql://u:hunter2@127.0.0.1:99999/db",
    "postgresql://u:hunt%zzer2@127.0.0.1:1/db",
    "postgresql://u:hunter2@[::1/db",
    "postgresql://u:hunter2/x@127.0.0.1:1/db",
    "postgresql://u:hunter2@127.0.0.1:1/db?sslmode=bogus",
    "postgresql://u:hunter2@127.0.0.1:1/db?nonsense=1",
    "postgresql://127.0.0.1:1/db?password=hunter2&connect_timeout=x",
    "postgresql://u:hunter2@127.0.0.1:1/db\x00\n; DROP TABLE x",
    "postgresql://u:hunter2@" + "a" * 5000 + "/db",
]
HOSTILE_REDIS = [
    "",
    "redis://:hunter2@",
    "http://:hunter2@127.0.0.1:1/0",
    "redis://:hunter2@127.0.0.1:notaport/0",
    "redis://:hunter2@127.0.0.1:99999/0",
    "redis://:hunter2@127.0.0.1:1/notadb",
    "redis://:hunter2/x@127.0.0.1:1/0",
    "redis://:hunter2@[::1/0",
    "redis://:hunter2@127.0.0.1:1/0?socket_timeout=never",
    "redis://:hunter2@127.0.0.1:1/0\x00\r\nFLUSHALL",
]


# --- registry ---


@pytest.mark.parametrize(("kind", "target", "cls"), [
    ("postgres", "postgresql://app@127.0.0.1:5432/app", PostgresProbe),
    ("redis", "redis://127.0.0.1:6379/0", RedisProbe),
])
def test_registry_builds_server_probes(kind, target, cls):
    """`postgres` and `redis` are registered probe kinds beside http and tcp."""
    probe = build_probe(ProbeConfig(name="p", kind=kind, target=target, interval=3.0, timeout=1.5))
    assert (type(probe), probe.interval, probe.timeout) == (cls, 3.0, 1.5)
    assert probe_registry().names() == ["http", "postgres", "redis", "tcp"]


# --- postgres ---


def test_postgres_healthy_reports_connections_and_limits(postgres_server: PostgresServer):
    """A reachable database is healthy, with its connection count, max_connections and latency as values."""
    result = postgres(postgres_server.url()).check(1.0)
    values = dict(result.values)
    assert (result.healthy, result.at, result.name) == (True, 1.0, "db")
    assert values["connections"] >= 1  # the probe's own session at least
    assert values["max_connections"] == 20
    assert values["latency_ms"] == result.latency_ms > 0


def test_postgres_takes_the_password_from_the_injected_env(postgres_server: PostgresServer):
    """Without a password in the URL, PGPASSWORD from the env given to the probe is used."""
    result = postgres(postgres_server.url(password=""), env={"PGPASSWORD": postgres_server.password}).check(1.0)
    assert result.healthy, result.detail


def test_postgres_ignores_the_process_environment(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch):
    """The process's own PGPASSWORD is never read: only the injected env counts."""
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    result = postgres(postgres_server.url(password=""), env={}).check(1.0)
    assert (result.healthy, what(result)) == (False, "authentication failed: no password given")


def test_postgres_wrong_password_is_authentication_failed(postgres_server: PostgresServer):
    """A wrong password says authentication failed."""
    result = postgres(postgres_server.url(password="not-the-password")).check(1.0)
    assert not result.healthy
    assert what(result) == "authentication failed: wrong password or unknown user"
    assert result.latency_ms is None


def test_postgres_unknown_database_is_named(postgres_server: PostgresServer):
    """A database that does not exist is reported by name."""
    result = postgres(postgres_server.url(database="nope")).check(1.0)
    assert (result.healthy, what(result)) == (False, 'unknown database "nope"')


def test_postgres_stopped_server_is_connection_refused():
    """Nobody listening on the port: connection refused, at once."""
    result, took = timed(postgres(f"postgresql://probe:pw@127.0.0.1:{free_port()}/app").check)
    assert (result.healthy, what(result)) == (False, "connection refused")
    assert took < TIMEOUT


def test_postgres_hung_server_times_out_within_the_timeout(silent_server: tuple[str, int]):
    """A server that accepts and never answers costs the probe its timeout, not libpq's 2 s minimum."""
    host, port = silent_server
    result, took = timed(postgres(f"postgresql://probe:pw@{host}:{port}/app").check)
    assert (result.healthy, what(result)) == (False, "timed out after 0.5s")
    assert TIMEOUT <= took < TIMEOUT + MARGIN


def test_postgres_does_not_pile_up_checks_on_a_hung_server(silent_server: tuple[str, int]):
    """While the last check still waits on the server, the next one says so instead of starting another."""
    host, port = silent_server
    probe = postgres(f"postgresql://probe:pw@{host}:{port}/app")
    probe.check(1.0)
    result, took = timed(probe.check)
    assert (result.healthy, what(result)) == (
        False, "timed out (the previous check is still waiting on the server)"
    )
    assert took < MARGIN


def test_postgres_recovers_once_a_stalled_login_goes_through(postgres_server: PostgresServer):
    """A login held up by the server times the check out; once it goes through, the probe is healthy again."""
    probe = postgres(postgres_server.url())
    with postgres_server.admin() as admin:
        admin.execute("LOCK TABLE pg_catalog.pg_authid IN ACCESS EXCLUSIVE MODE")  # every login waits on it
        stalled, took = timed(probe.check)
        admin.rollback()
    assert (stalled.healthy, what(stalled)) == (False, "timed out after 0.5s")
    assert took < TIMEOUT + MARGIN
    deadline = time.monotonic() + 5
    while not (result := probe.check(2.0)).healthy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert result.healthy, result.detail


@pytest.mark.parametrize("case", ["healthy", "wrong password", "unknown database", "refused"])
def test_postgres_detail_never_shows_the_password(postgres_server: PostgresServer, case: str):
    """Neither the password nor its URL-encoded form appears in any detail; the URL shows *** instead."""
    server = postgres_server
    url = {
        "healthy": server.url(),
        "wrong password": server.url(password=server.password[::-1]),
        "unknown database": server.url(database="nope"),
        "refused": server.url().replace(f":{server.port}/", f":{free_port()}/"),
    }[case]
    detail = postgres(url).check(1.0).detail
    for secret in (server.password, server.password[::-1]):
        assert secret not in detail and quote(secret, safe="") not in detail
    assert "postgresql://probe:***@127.0.0.1:" in detail


@pytest.mark.parametrize("target", HOSTILE_POSTGRES)
def test_postgres_never_raises_on_a_malformed_target(target: str):
    """A malformed or hostile target builds a probe whose checks are unhealthy, without the password."""
    result, took = timed(postgres(target).check)
    assert not result.healthy
    assert "hunter2" not in result.detail and "hunt" not in result.detail
    assert "\n" not in result.detail and "\x00" not in result.detail
    assert took < TIMEOUT + MARGIN


# --- redis ---


def test_redis_healthy_reports_memory_and_clients(redis_server: RedisServer):
    """A reachable Redis is healthy, with used_memory, connected_clients and maxmemory (0: unset) as values."""
    result = redis_probe(redis_server.url()).check(1.0)
    values = dict(result.values)
    assert result.healthy, result.detail
    assert values["used_memory"] > 0 and values["connected_clients"] >= 1
    assert values["maxmemory"] == 0 and "used_memory_percent" not in values
    assert values["latency_ms"] == result.latency_ms > 0


def test_redis_used_memory_percent_with_a_maxmemory(redis_server: RedisServer):
    """With maxmemory set, used_memory_percent is used_memory over maxmemory."""
    admin = redis.Redis(host=redis_server.host, port=redis_server.port, password=redis_server.password)
    admin.config_set("maxmemory", 64 * 1024 * 1024)
    try:
        values = dict(redis_probe(redis_server.url()).check(1.0).values)
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
    assert values["maxmemory"] == 64 * 1024 * 1024
    assert values["used_memory_percent"] == round(100 * values["used_memory"] / values["maxmemory"], 2)


@pytest.mark.parametrize(("password", "detail"), [
    ("not-the-password", "authentication failed: wrong password"),
    ("", "authentication failed: password required (NOAUTH)"),
])
def test_redis_bad_password_is_authentication_failed(redis_server: RedisServer, password: str, detail: str):
    """A wrong password (WRONGPASS) and a missing one (NOAUTH) are both authentication failures."""
    result = redis_probe(redis_server.url(password=password)).check(1.0)
    assert (result.healthy, what(result)) == (False, detail)


def test_redis_stopped_server_is_connection_refused():
    """Nobody listening on the port: connection refused, at once."""
    result, took = timed(redis_probe(f"redis://:pw@127.0.0.1:{free_port()}/0").check)
    assert (result.healthy, what(result)) == (False, "connection refused")
    assert took < TIMEOUT


def test_redis_hung_server_times_out_within_the_timeout(silent_server: tuple[str, int]):
    """A server that accepts and never answers costs the probe its timeout."""
    host, port = silent_server
    result, took = timed(redis_probe(f"redis://:pw@{host}:{port}/0").check)
    assert (result.healthy, what(result)) == (False, "timed out after 0.5s")
    assert took < TIMEOUT + MARGIN


@pytest.mark.parametrize("case", ["healthy", "wrong password", "refused"])
def test_redis_detail_never_shows_the_password(redis_server: RedisServer, case: str):
    """Neither the password nor its URL-encoded form appears in any detail; the URL shows *** instead."""
    server = redis_server
    url = {
        "healthy": server.url(),
        "wrong password": server.url(password=server.password[::-1]),
        "refused": server.url().replace(f":{server.port}/", f":{free_port()}/"),
    }[case]
    detail = redis_probe(url).check(1.0).detail
    for secret in (server.password, server.password[::-1]):
        assert secret not in detail and quote(secret, safe="") not in detail
    assert "redis://:***@127.0.0.1:" in detail


@pytest.mark.parametrize("target", HOSTILE_REDIS)
def test_redis_never_raises_on_a_malformed_target(target: str):
    """A malformed or hostile target builds a probe whose checks are unhealthy, without the password."""
    result, took = timed(redis_probe(target).check)
    assert not result.healthy
    assert "hunter2" not in result.detail and "hunt" not in result.detail
    assert "\n" not in result.detail and "\x00" not in result.detail
    assert took < TIMEOUT + MARGIN
