"""Real PostgreSQL and Redis servers for the tests, started once per session; a real Alertmanager.

    from .servers import postgres_server, redis_server, silent_server  # noqa: F401

PostgreSQL: ``initdb`` into a fresh folder under the system temp folder, then
the ``postgres`` binary itself as a child process (no ``pg_ctl``, no cluster
manager). As root, both run as the ``postgres`` system user: the server
refuses to run as root, and pytest's own temp folders are private to root.
It listens on 127.0.0.1 only, on a free port; its Unix socket lives in its
data folder. Over TCP every login needs a password (scram-sha-256, written
into pg_hba.conf by ``initdb --auth-host``); the socket trusts, which is how
the fixture creates the test role and database. Durability is off: nothing
here needs to survive a crash.

Redis: ``redis-server`` as a child process on a free loopback port, with
``--requirepass``, no RDB or AOF, in the foreground.

Both stop at the end of the session (SIGINT: PostgreSQL's fast shutdown and
Redis's clean one; a wait; then SIGKILL) and their folders are removed; if
the test process is killed, the kernel stops them (PR_SET_PDEATHSIG), so no
server outlives its session (its folder under the temp folder may).
Missing binaries skip the tests that ask, naming the Debian packages to
install (see .ci/packages). Session cost: ~2 s for PostgreSQL (``initdb`` is
most of it), ~0.1 s for Redis.

Alertmanager (:func:`run_alertmanager`): Debian's ``prometheus-alertmanager``
with one webhook receiver pointed at a suture API (bearer token, send_resolved,
group_wait/group_interval/repeat_interval of about a second), storage in its
own folder, clustering off (``--cluster.listen-address=``), on a free loopback
port. Its receiver's URL is the caller's, so a test module starts its sidecar
first and then the Alertmanager (the ``alertmanager_binary`` fixture skips
without the package); ~0.5 s to start.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import psycopg
import pytest
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
NO_POSTGRES = "PostgreSQL server binaries not found (initdb, postgres): apt-get install postgresql (see .ci/packages)"
NO_REDIS = "redis-server not found: apt-get install redis-server (see .ci/packages)"
NO_ALERTMANAGER = "Alertmanager not found: apt-get install prometheus-alertmanager (see .ci/packages)"
# Characters that must be percent-encoded in a URL: the probes' URL handling is tested on the real thing.
PASSWORD = "s3cret/p@ss:word"
START_TIMEOUT = 20.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h

T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    socket_dir: str  # the superuser ``postgres`` logs in here without a password

    def admin(self, database: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        """A superuser connection (to the test database by default), over the Unix socket."""
        return psycopg.connect(
            host=self.socket_dir, port=self.port, user="postgres", dbname=database or self.database, connect_timeout=2
        )

    def url(self, *, password: str | None = None, database: str | None = None) -> str:
        """``postgresql://user:password@host:port/db``; ``password=""`` leaves the password out."""
        secret = self.password if password is None else password
        auth = f"{_quote(self.user)}:{_quote(secret)}" if secret else _quote(self.user)
        return f"postgresql://{auth}@{self.host}:{self.port}/{database or self.database}"


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    password: str

    def url(self, *, password: str | None = None, db: int = 0) -> str:
        """``redis://:password@host:port/db``; ``password=""`` leaves the password out."""
        secret = self.password if password is None else password
        auth = f":{_quote(secret)}@" if secret else ""
        return f"redis://{auth}{self.host}:{self.port}/{db}"


class _Shared(Generic[T]):
    """One value per test process, however many test modules import the session fixture that makes it.

    pytest gives each module that imports a fixture its own copy; they share the value here and the
    last one to finish cleans up (as in tests/containers.py).
    """

    def __init__(self) -> None:
        self.value: T | None = None
        self.users = 0
        self.stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def use(self, make: Callable[[], contextlib.AbstractContextManager[T]]) -> Iterator[T]:
        if self.users == 0:
            self.value = self.stack.enter_context(make())
        self.users += 1
        try:
            yield cast(T, self.value)
        finally:
            self.users -= 1
            if self.users == 0:
                self.value = None
                self.stack.close()


_POSTGRES: _Shared[PostgresServer] = _Shared()
_REDIS: _Shared[RedisServer] = _Shared()


def _die_with_us() -> None:
    """In the server's process before exec: have the kernel SIGTERM it if the test process dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT, a wait, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} while starting:\n{log.read_text()[-2000:]}")
        if ready():
            return
        time.sleep(0.05)
    _stop(proc)
    pytest.fail(f"{what} did not answer within {START_TIMEOUT:.0f}s:\n{log.read_text()[-2000:]}")


def _pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name))
    found = [p for p in found if (p / "initdb").exists() and (p / "postgres").exists()]
    return found[-1] if found else None


@contextlib.contextmanager
def run_postgres(
    root: Path, *, role: str, database: str, max_connections: int = 20, shared_buffers: str = "16MB"
) -> Iterator[tuple[PostgresServer, subprocess.Popen[bytes]]]:
    """A PostgreSQL 15 in ``root`` (owned by ``postgres`` when run as root) with ``role`` (password login)
    owning ``database``; stopped on exit (``root`` is the caller's to remove). Raises SystemExit without
    the binaries: a test skips before calling this, a bench says so."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        raise SystemExit(NO_POSTGRES)
    as_root = os.geteuid() == 0
    user, group = ("postgres", "postgres") if as_root else (None, None)
    if as_root:
        shutil.chown(root, "postgres", "postgres")
    data, log, port = root / "data", root / "server.log", free_port()
    subprocess.run(
        [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
         "--no-sync", "--encoding=UTF8", "--locale=C"],
        cwd=root, check=True, capture_output=True, user=user, group=group, extra_groups=[] if as_root else None,
    )
    options = {
        "listen_addresses": "127.0.0.1", "port": port, "unix_socket_directories": data,
        "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
        "max_connections": max_connections, "shared_buffers": shared_buffers, "logging_collector": "off",
    }
    argv = [bin_dir / "postgres", "-D", data, *(f"-c{k}={v}" for k, v in options.items())]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_us, user=user, group=group,
                                extra_groups=[] if as_root else None)
    try:
        server = PostgresServer(
            host="127.0.0.1", port=port, user=role, password=PASSWORD, database=database, socket_dir=str(data)
        )

        def ready() -> bool:
            try:
                server.admin("postgres").close()
                return True
            except psycopg.OperationalError:
                return False

        _wait_until(ready, proc, log, "postgres")
        with server.admin("postgres") as conn:
            conn.autocommit = True  # CREATE DATABASE runs outside a transaction
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), PASSWORD))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database),
                                                                      sql.Identifier(role)))
        yield server, proc
    finally:
        _stop(proc)


@contextlib.contextmanager
def _postgres() -> Iterator[PostgresServer]:
    if _pg_bin() is None:
        pytest.skip(NO_POSTGRES)
    root = Path(tempfile.mkdtemp(prefix="suture-pg-"))
    try:
        with run_postgres(root, role="probe", database="app") as (server, _proc):
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 with a role ``probe`` (password login) owning a database ``app``."""
    with _POSTGRES.use(_postgres) as server:
        yield server


@contextlib.contextmanager
def _redis() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(NO_REDIS)
    root = Path(tempfile.mkdtemp(prefix="suture-redis-"))
    try:
        log, port = root / "server.log", free_port()
        argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--requirepass", PASSWORD, "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", str(root), "--logfile", ""]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_us)
        try:
            server = RedisServer(host="127.0.0.1", port=port, password=PASSWORD)

            def ready() -> bool:
                client = redis.Redis(
                    host=server.host, port=port, password=PASSWORD, socket_timeout=2, retry=Retry(NoBackoff(), 0)
                )
                try:
                    return bool(client.ping())
                except redis.RedisError:
                    return False
                finally:
                    client.close()

            _wait_until(ready, proc, log, "redis-server")
            yield server
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 that requires a password and keeps nothing on disk."""
    with _REDIS.use(_redis) as server:
        yield server


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a server that accepts TCP connections and never sends a byte: a hung server."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=serve, name="silent-server", daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in accepted:
            conn.close()


# -- Alertmanager --


def alertmanager_path() -> str | None:
    """Debian's ``prometheus-alertmanager``, or upstream's ``alertmanager`` on the PATH."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    """The Alertmanager binary; skips (naming the package) without it."""
    path = alertmanager_path()
    if path is None:
        pytest.skip(NO_ALERTMANAGER)
    return path


@dataclass(frozen=True)
class AlertmanagerServer:
    url: str  # http://127.0.0.1:PORT
    root: Path  # its config, storage and log

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """``POST /api/v2/alerts``: what Prometheus does (labels, annotations, startsAt, endsAt, generatorURL)."""
        request = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except urllib.error.HTTPError as exc:  # its reason, not only the status
            raise AssertionError(f"Alertmanager refused the alerts: {exc.code} {exc.read()[:500]!r}") from None

    def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts it holds (fingerprint, status.state, labels, ...)."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as resp:
            return cast(list[dict[str, Any]], json.loads(resp.read()))

    def metric(self, name: str, **labels: str) -> float:
        """The sum of one of its own metrics over the series with ``labels`` (0 if none)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def log(self) -> str:
        return (self.root / "alertmanager.log").read_text(errors="replace")


ALERTMANAGER_CONFIG = """\
route:
  receiver: suture
  group_by: [alertname, service]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
receivers:
  - name: suture
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization: {{credentials: {token}}}
"""


@contextlib.contextmanager
def run_alertmanager(root: Path, *, webhook_url: str, token: str, group_wait: str = "1s",
                     group_interval: str = "1s", repeat_interval: str = "2s") -> Iterator[AlertmanagerServer]:
    """A real Alertmanager whose one receiver posts every group (firing and resolved) to ``webhook_url``
    with ``Authorization: Bearer <token>``; stopped on exit (``root`` is the caller's to remove)."""
    binary = alertmanager_path()
    if binary is None:
        raise SystemExit(NO_ALERTMANAGER)
    port = free_port()
    config = root / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG.format(url=json.dumps(webhook_url), token=json.dumps(token),
                                                 group_wait=group_wait, group_interval=group_interval,
                                                 repeat_interval=repeat_interval))
    (root / "data").mkdir(exist_ok=True)
    log = root / "alertmanager.log"
    argv = [binary, f"--config.file={config}", f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=debug"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_us)
    server = AlertmanagerServer(url=f"http://127.0.0.1:{port}", root=root)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(server.url + "/-/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        _wait_until(ready, proc, log, "alertmanager")
        yield server
    finally:
        _stop(proc)
