"""Container state for ``container`` conditions, read from the Docker Engine API.

:class:`ContainerWatcher` inspects each named container once per ``poll(now)``
and never raises: an engine that cannot be reached, or refuses, gives a state
``unknown`` with a detail; a container that is not there gives ``missing``.

Restarts are seen two ways, because engines disagree on how ``RestartCount``
moves: Docker and Podman count only restarts made by a restart *policy*, not
``docker restart`` / the API's restart. So a poll also compares
``State.StartedAt`` with the previous poll: a new start time is a restart.

This module is also the one place docker SDK and requests errors are mapped
(:func:`describe_engine_error`), for the watcher and for ``sidecar.effects``.

The Docker socket is the most dangerous thing suture touches (root on the
host, in effect). suture only inspects and restarts containers; in production
point ``docker.url`` at a filtering proxy (e.g. tecnativa/docker-socket-proxy
with ``CONTAINERS=1 POST=1 ALLOW_RESTARTS=1``) rather than the socket itself.
"""

from __future__ import annotations

import collections
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the docker SDK (and requests) load on first use: ~9 MB a sidecar without containers saves
    import docker

DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"


@cache
def engine_errors() -> tuple[type[BaseException], ...]:
    """Everything the docker SDK raises when the engine is unreachable, refuses, or answers nonsense."""
    import docker.errors
    import requests.exceptions

    return (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        OSError,
        ValueError,  # a malformed JSON answer
    )

State = Literal["running", "exited", "restarting", "unhealthy", "missing", "unknown"]


def docker_url(configured: str | None, env: Mapping[str, str]) -> str:
    """``docker.url`` from suture.yaml, else ``DOCKER_HOST``, else the default socket."""
    return configured or env.get("DOCKER_HOST") or DEFAULT_DOCKER_URL


def connect(url: str, timeout: float = 10.0) -> docker.DockerClient:
    """A client for ``url``; the SDK asks the engine its API version here, so this can fail like any call.

    A unix socket is tried first on its own: the SDK leaks its socket when the
    connect fails, and says less about why.
    """
    if url.startswith("unix://"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(url.removeprefix("unix://"))
    import docker

    return docker.DockerClient(base_url=url, timeout=timeout)


def describe_engine_error(exc: BaseException) -> str:
    """One line for a docker SDK / transport error (the only place they are interpreted)."""
    import docker.errors
    import requests.exceptions

    if isinstance(exc, docker.errors.NotFound):
        return "no such container"
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code
        text = exc.explanation or str(exc)
        return f"the container engine refused (HTTP {status}): {text}"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the container engine did not answer in time"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot reach the container engine"
    if isinstance(exc, docker.errors.DockerException):
        return f"container engine error: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach the container engine: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def parse_time(text: str | None) -> float | None:
    """An engine timestamp (RFC 3339, nanoseconds, ``Z``) as epoch seconds; None for the zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerState:
    """One container as one poll saw it."""

    name: str
    state: State
    health: str | None  # healthy | unhealthy | starting | None (no healthcheck)
    restart_count: int  # the engine's RestartCount (restart-policy restarts only)
    started_at: float | None
    at: float
    exists: bool
    restarted: bool = False  # a new start was seen since the previous poll
    detail: str = ""  # the raw engine status, or why the state is missing/unknown


def state_of(attrs: Mapping[str, Any]) -> tuple[State, str | None, str]:
    """(state, health, raw status) from an inspect answer; Docker omits Health, Podman sends Status ""."""
    st = attrs.get("State") or {}
    status = str(st.get("Status") or "").lower()
    health = (st.get("Health") or {}).get("Status") or None
    running = status == "running" or (not status and bool(st.get("Running")))
    if st.get("Restarting") or status == "restarting":
        return "restarting", health, status
    if running:
        return ("unhealthy" if health == "unhealthy" else "running"), health, status
    # created, exited, dead, paused, removing (Podman: configured, stopped): not serving
    return "exited", health, status


class ContainerWatcher:
    """Polls named containers; remembers start times to see restarts the counters miss."""

    def __init__(self, client: docker.DockerClient, names: Iterable[str], *, history: int = 1000) -> None:
        self.client = client
        self.names = tuple(dict.fromkeys(names))
        self._last: dict[str, tuple[str | None, int]] = {}  # name -> (raw StartedAt, RestartCount)
        self._restarts: dict[str, collections.deque[float]] = {n: collections.deque(maxlen=history) for n in self.names}
        self._lock = threading.Lock()

    def poll(self, now: float) -> list[ContainerState]:
        """Inspect every container once; never raises."""
        return [self._poll_one(name, now) for name in self.names]

    def restarts_since(self, name: str, t: float) -> int:
        """Restarts seen (by count or by a new start time) in polls at or after ``t``."""
        with self._lock:
            return sum(1 for at in self._restarts.get(name, ()) if at >= t)

    def _poll_one(self, name: str, now: float) -> ContainerState:
        import docker.errors

        try:
            attrs = self.client.api.inspect_container(name)
        except docker.errors.NotFound:
            return ContainerState(
                name=name,
                state="missing",
                health=None,
                restart_count=0,
                started_at=None,
                at=now,
                exists=False,
                detail="no such container",
            )
        except engine_errors() as exc:
            return ContainerState(
                name=name,
                state="unknown",
                health=None,
                restart_count=0,
                started_at=None,
                at=now,
                exists=False,
                detail=describe_engine_error(exc),
            )
        state, health, status = state_of(attrs)
        raw_started = (attrs.get("State") or {}).get("StartedAt")
        count = _int(attrs.get("RestartCount"))
        restarted = self._seen(name, raw_started, count, now)
        return ContainerState(
            name=name,
            state=state,
            health=health,
            restart_count=count,
            started_at=parse_time(raw_started),
            at=now,
            exists=True,
            restarted=restarted,
            detail=status,
        )

    def _seen(self, name: str, started: str | None, count: int, now: float) -> bool:
        """Record this poll's start time and count; True when either shows a new start."""
        with self._lock:
            previous = self._last.get(name)
            self._last[name] = (started, count)
            if previous is None:
                return False  # the first look: no baseline to compare with
            new_starts = max(count - previous[1], 0)
            if started != previous[0] and parse_time(started) is not None:
                new_starts = max(new_starts, 1)
            self._restarts[name].extend([now] * new_starts)
            return new_starts > 0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
