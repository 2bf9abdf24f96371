"""What the fleet tests share: a fresh database on the session's PostgreSQL, and a proxy that can cut it off.

    from .fleet_helpers import FleetDb, Proxy, fleet_db  # noqa: F401 (fixture)

``fleet_db`` creates one database per test (owned by the test role, so suture creates its own
tables as it would in production) and drops it afterwards. :class:`Proxy` is a real TCP relay
in threads between the client and the server: ``down()`` closes the listener and every relayed
connection (clients see a reset, new connections are refused), ``up()`` listens again on the
same port. Stopping the session's server itself would stop it for every other test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import sql
from suture.engine.fleet_values import Backoff
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_schema import migrate

from .servers import PostgresServer

NO_BACKOFF = Backoff(base=0.0, cap=0.0, jitter=0.0)


@dataclass(frozen=True)
class FleetDb:
    server: PostgresServer
    database: str
    opened: list[FleetConnection] = field(default_factory=list)  # closed when the test ends

    @property
    def url(self) -> str:
        """The URL as suture.yaml would write it: no password."""
        return self.server.url(password="", database=self.database)

    def url_via(self, port: int) -> str:
        return f"postgresql://{self.server.user}@127.0.0.1:{port}/{self.database}"

    def connect(self, *, url: str | None = None, **kwargs: Any) -> FleetConnection:
        kwargs.setdefault("backoff", NO_BACKOFF)
        kwargs.setdefault("password", self.server.password)
        return self.track(FleetConnection(url or self.url, **kwargs))

    def track(self, fleet: FleetConnection) -> FleetConnection:
        self.opened.append(fleet)
        return fleet

    def admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = self.server.admin(self.database)
        conn.autocommit = True
        return conn


@pytest.fixture
def fleet_db(postgres_server: PostgresServer) -> Iterator[FleetDb]:
    """A new, empty database owned by the test role; dropped (with its connections) afterwards."""
    name = f"fleet_{uuid.uuid4().hex[:12]}"
    with postgres_server.admin("postgres") as conn:
        conn.autocommit = True
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier("probe")))
    db = FleetDb(postgres_server, name)
    try:
        yield db
    finally:
        for fleet in db.opened:
            fleet.close()
        with postgres_server.admin("postgres") as conn:
            conn.autocommit = True
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))



@pytest.fixture
def fleet(fleet_db: FleetDb) -> FleetConnection:
    """A connection to a fresh fleet database with suture's tables migrated."""
    connection = fleet_db.connect()
    migrate(connection)
    return connection

class Proxy:
    """A TCP relay to ``(host, port)`` that the test can take down and bring back on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.down()
        for thread in self._threads:
            thread.join(2)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), name="proxy-pump", daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy(postgres_server: PostgresServer) -> Iterator[Proxy]:
    relay = Proxy(postgres_server.host, postgres_server.port)
    try:
        yield relay
    finally:
        relay.close()
