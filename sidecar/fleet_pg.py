"""The one connection a fleet client holds to the group's PostgreSQL: bounded waits, backoff, a state.

    fleet = FleetConnection.from_config(config.fleet_pg, name=config.name)
    with fleet.transaction() as pg:          # FleetUnavailable if down, refused or too slow
        pg.execute("SELECT ...")
    fleet.state                              # FleetState: connected / disconnected since T / last error

Fail closed: every call either answers within a few seconds or raises
:class:`~suture.engine.errors.FleetUnavailable` (``connect_timeout`` for the connection;
``statement_timeout`` and ``lock_timeout`` for each statement; TCP keepalives and
``tcp_user_timeout`` for a server that vanishes mid-answer). After a failure the next attempt
waits out an exponential backoff (capped, with jitter); a call made before then raises at once,
without touching the network, so a down fleet costs the decision path nothing.

psycopg's errors are mapped here and nowhere else. The password never appears in a message:
it is passed to libpq apart from the URL, and scrubbed from any text an error carries.
"""

from __future__ import annotations

import contextlib
import math
import random
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

import psycopg
from suture.engine.config import FleetConfig
from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import Backoff, FleetState

PgConnection = psycopg.Connection[tuple[Any, ...]]
DEFAULT_BACKOFF = Backoff()


class FleetConnection:
    """A lazily (re)connected PostgreSQL connection, one transaction at a time (thread-safe)."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        application_name: str = "suture",
        connect_timeout: float = 2.0,
        statement_timeout: float = 2.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.url = url
        self._password = password
        self.application_name = application_name[:63]
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.backoff = backoff
        self.clock = clock
        self.draw = draw
        self._lock = threading.Lock()
        self._conn: PgConnection | None = None
        self._state = FleetState(connected=False, since=None)

    @classmethod
    def from_config(cls, config: FleetConfig, *, name: str, **kwargs: Any) -> Self:
        return cls(config.postgres, password=config.password, application_name=f"suture {name}", **kwargs)

    def __repr__(self) -> str:
        return f"FleetConnection({self.state.describe()})"

    @property
    def state(self) -> FleetState:
        return self._state

    def close(self) -> None:
        with self._lock:
            self._drop()

    @contextlib.contextmanager
    def transaction(self, *, atomic: bool = True) -> Iterator[PgConnection]:
        """One transaction on the connection, committed when the block ends; FleetUnavailable on any failure.

        ``atomic=False``: each statement commits on its own (no BEGIN/COMMIT round trips), for a block
        of one statement, or of reads that need no common snapshot.
        """
        with self._lock:
            conn = self._connected()
            try:
                with conn.transaction() if atomic else contextlib.nullcontext():
                    yield conn
            except psycopg.Error as exc:
                message = self._scrub(_first_line(exc))
                if conn.broken or conn.closed:
                    self._failed(message)
                    raise FleetUnavailable(f"lost the fleet database: {message}") from exc
                raise FleetUnavailable(f"the fleet database refused a statement: {message}") from exc

    # -- internals (under the lock) --

    def _connected(self) -> PgConnection:
        if self._conn is not None and not self._conn.closed and not self._conn.broken and self._alive(self._conn):
            return self._conn
        self._drop()
        now = self.clock()
        state = self._state
        if state.next_attempt_at is not None and now < state.next_attempt_at:
            wait = state.next_attempt_at - now
            raise FleetUnavailable(f"the fleet database is unreachable ({state.last_error}); next attempt in {wait:.1f}s")
        try:
            self._conn = psycopg.connect(self.url, autocommit=True, **self._options())
        except psycopg.Error as exc:
            message = self._scrub(_first_line(exc))
            self._failed(message)
            raise FleetUnavailable(f"cannot reach the fleet database: {message}") from exc
        self._state = FleetState(connected=True, since=now)
        return self._conn

    def _options(self) -> dict[str, Any]:
        statement_ms = max(1, round(self.statement_timeout * 1000))
        options: dict[str, Any] = {
            "connect_timeout": max(1, math.ceil(self.connect_timeout)),
            "application_name": self.application_name,
            "options": f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}"
                       f" -c idle_in_transaction_session_timeout={statement_ms * 5} -c TimeZone=UTC",
            # a server that vanishes mid-answer: noticed by keepalives, not by waiting forever
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(self.statement_timeout)),
            "keepalives_interval": 1,
            "keepalives_count": 2,
            "tcp_user_timeout": statement_ms + 1000,
        }
        if self._password is not None:
            options["password"] = self._password
        return options

    @staticmethod
    def _alive(conn: PgConnection) -> bool:
        """An idle connection the server closed (restart, a cut network, pg_terminate_backend) has something
        to read: a message or the end of the stream. Only then is it asked, once, whether it still answers."""
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError, psycopg.Error):
            return False
        if not readable:
            return True
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _failed(self, message: str) -> None:
        now = self.clock()
        previous = self._state
        failures = previous.failures + 1
        since = previous.since if not previous.connected and previous.since is not None else now
        self._state = FleetState(
            connected=False,
            since=since,
            last_error=message,
            failures=failures,
            next_attempt_at=now + self.backoff.delay(failures, self.draw()),
        )
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:500]
