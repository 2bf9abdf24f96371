"""What the HTTP layer and the operations may use of a running sidecar: its public face, as a Protocol.

:class:`~.runtime.Sidecar` satisfies it (mypy checks so where ``serve`` is given one). The API,
the dashboard and :mod:`.operations` are typed with it, so they cannot reach the core's
internals, and the runtime knows exactly what it must keep: what it looks like
(:meth:`snapshot`), the commands a person sends (each run on the core through :meth:`call`),
the event log the dashboard streams, and the pieces the history routes read (store, executor,
config, clock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from suture.engine.config import Config
from suture.engine.decide import Decision, Outcomes
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.playbook import Playbook
from suture.engine.store import Store

from .observations import Observation
from .snapshot import Snapshot
from .telemetry import Telemetry

if TYPE_CHECKING:  # psycopg loads only where a fleet is configured
    from .fleet_worker import Fleet


class PublicSidecar(Protocol):
    api_url: str | None  # written by transport.serve: where the API listens

    @property
    def config(self) -> Config: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def stop(self) -> threading.Event: ...

    @property
    def store(self) -> Store | None: ...

    @property
    def executor(self) -> Executor | None: ...

    @property
    def playbooks(self) -> Mapping[str, Playbook]: ...

    @property
    def telemetry(self) -> Telemetry: ...

    @property
    def group(self) -> Fleet | None:
        """The fleet on PostgreSQL (``fleet:`` in suture.yaml), once the sidecar has opened it."""

    # -- the event log (the dashboard's stream) --

    @property
    def events_changed(self) -> threading.Condition: ...

    @property
    def events_seq(self) -> int: ...

    @property
    def recent_events(self) -> Iterable[tuple[int, Any]]: ...

    def emit(self, kind: str, message: str, **data: Any) -> None: ...

    # -- what it looks like, and running things on the core --

    def snapshot(self, timeout: float = ...) -> Snapshot: ...

    def call(self, fn: Callable[[], Any], timeout: float = ...) -> Any: ...

    def offer(self, observation: Observation, timeout: float = ...) -> bool:
        """Queue an observation for the core without waiting for it to be taken (False: the queue stayed full)."""

    def check_now(self, timeout: float = ...) -> dict[str, Any]: ...

    # -- what the operations ask (on the core, through call) --

    def start_fix(self, pb: Playbook, decision: Decision, now: float, **record: Any) -> FixRun | Outcome | str: ...

    def rollback_by_person(self, backup_id: str, *, force: bool, by: str) -> tuple[list[str], Outcome | None]: ...

    def outcomes(self, playbook_id: str) -> Outcomes: ...

    def seen(self, pb: Playbook) -> list[dict[str, Any]]:
        """What each metric / log-anomaly condition of ``pb.when`` says now, with its numbers (on the core)."""

    def busy_with(self, pb: Playbook) -> object | None: ...
