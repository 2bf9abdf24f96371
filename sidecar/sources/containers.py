"""Container state for ``container`` conditions, read from the Docker Engine API.

:class:`ContainerWatcher` inspects each named container once per ``poll(now)``
and never raises: an engine that cannot be reached, or refuses, gives a state
``unknown`` with a detail; a container that is not there gives ``missing``.

Restarts are seen two ways, because engines disagree on how ``RestartCount``
moves: Docker and Podman count only restarts made by a restart *policy*, not
``docker restart`` / the API's restart. So a poll also compares
``State.StartedAt`` with the previous poll: a new start time is a restart.

:class:`ContainerStats` samples CPU and memory from the stats API for
``metric`` conditions, named ``container.<name>.<metric>``:

==================================  =================================================
``container.<name>.cpu_percent``    CPU since the previous sample, percent of one CPU
                                    (``docker stats``' figure: 200 is two CPUs busy)
``container.<name>.memory_bytes``   memory in use, without the inactive page cache
                                    (``docker stats``' figure)
``container.<name>.memory_percent`` memory_bytes over the container's limit (this
                                    host's memory when it has none or a larger one)
==================================  =================================================

The metric is what follows the *last* dot, and none of them contains one; the
container's name is everything between ``container.`` and that dot, so it may
hold dots itself (``container.api.v2.cpu_percent`` is container ``api.v2``),
and must be a valid container name (``[A-Za-z0-9][A-Za-z0-9_.-]*``); any other
``container.`` name is not sampled. CPU needs two samples of the same
container: the engines' own previous sample is not used, because Podman's
``stats(stream=False)`` sends it zeroed (and answers in ~15 ms) while Docker
fills it only by blocking 1-2 s, unless ``one_shot`` (API 1.41+), which is
asked for. A stopped container gives no sample (Podman answers an empty body,
Docker zeros) and forgets its previous CPU figures, as does a CPU counter that
went backwards (a re-created container: Podman's stats carry no id).

This module is also the one place docker SDK and requests errors are mapped
(:func:`describe_engine_error`), for the watcher and for ``sidecar.effects``.

The Docker socket is the most dangerous thing suture touches (root on the
host, in effect). suture only inspects and restarts containers; in production
point ``docker.url`` at a filtering proxy (e.g. tecnativa/docker-socket-proxy
with ``CONTAINERS=1 POST=1 ALLOW_RESTARTS=1``) rather than the socket itself.
"""

from __future__ import annotations

import collections
import re
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from suture.engine.errors import SutureError
from suture.engine.playbook import MetricCondition, Playbook, leaves

from .base import MetricSample

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


def client_errors() -> tuple[type[BaseException], ...]:
    """What getting a client and using it may raise: no engine configured or reachable, and engine errors."""
    return (SutureError, *engine_errors())


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


# --- CPU and memory, for metric conditions ---------------------------------------------------

CONTAINER_METRICS = ("cpu_percent", "memory_percent", "memory_bytes")
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

ClientSource = Any  # a docker.DockerClient, or a callable returning one (may raise SutureError or engine errors)


def container_metric(name: str) -> tuple[str, str] | None:
    """(container, metric) of ``container.<name>.<metric>``; None for any other metric name."""
    rest = name.removeprefix("container.")
    container, _, metric = rest.rpartition(".")
    if rest == name or metric not in CONTAINER_METRICS or not _CONTAINER_NAME.fullmatch(container):
        return None
    return container, metric


def metric_containers(playbooks: Iterable[Playbook]) -> frozenset[str]:
    """The containers whose metrics a diagnosis or a validation expectation of ``playbooks`` reads."""
    names: set[str] = set()
    for pb in playbooks:
        for condition in (pb.when, *pb.validate.expect):
            for leaf in leaves(condition):
                parsed = container_metric(leaf.name) if isinstance(leaf, MetricCondition) else None
                if parsed is not None:
                    names.add(parsed[0])
    return frozenset(names)


def resolve_client(client: ClientSource) -> docker.DockerClient:
    """``client`` itself, or what calling it gives (a factory connects lazily and may raise)."""
    return client() if callable(client) and not hasattr(client, "api") else client


class ContainerStats:
    """Samples CPU and memory of named containers; keeps each one's previous CPU counters; never raises."""

    def __init__(self, client: ClientSource) -> None:
        self._client_source = client
        self._client: docker.DockerClient | None = None
        self._previous: dict[str, tuple[int, int, int]] = {}  # name -> (container total, system total, read ns)
        self.errors: dict[str, str] = {}  # name -> why its last sample is missing

    def sample(self, names: Iterable[str], now: float) -> list[MetricSample]:
        """One stats call per container; a container that cannot be read is left out (see ``errors``)."""
        out: list[MetricSample] = []
        for name in sorted(set(names)):
            out += self._sample_one(name, now)
        for gone in (set(self._previous) | set(self.errors)) - set(names):
            self._previous.pop(gone, None)
            self.errors.pop(gone, None)
        return out

    def _sample_one(self, name: str, now: float) -> list[MetricSample]:
        import requests.exceptions

        try:
            if self._client is None:
                self._client = resolve_client(self._client_source)
            stats = self._stats(self._client, name)
        except requests.exceptions.JSONDecodeError:
            stats = {}  # Podman's answer for a container that is not running: an empty body
        except client_errors() as exc:
            self._previous.pop(name, None)
            self.errors[name] = describe_engine_error(exc)
            return []
        memory = stats.get("memory_stats") or {}
        if "usage" not in memory:
            self._previous.pop(name, None)
            self.errors[name] = "not running"
            return []
        self.errors.pop(name, None)
        prefix = f"container.{name}."
        used = _memory_in_use(memory)
        out = [MetricSample(name=prefix + "memory_bytes", value=float(used), at=now)]
        limit = min(_int(memory.get("limit")), _host_memory())  # no limit: Podman says 2**63, Docker the host's
        if limit > 0:
            out.append(MetricSample(name=prefix + "memory_percent", value=round(100.0 * used / limit, 2), at=now))
        cpu = self._cpu_percent(name, stats.get("cpu_stats") or {}, stats.get("read"))
        if cpu is not None:
            out.append(MetricSample(name=prefix + "cpu_percent", value=cpu, at=now))
        return out

    @staticmethod
    def _stats(client: docker.DockerClient, name: str) -> dict[str, Any]:
        from docker.utils import version_lt

        api = client.api
        if version_lt(api.api_version, "1.41"):
            return api.stats(name, stream=False)  # type: ignore[no-any-return]
        return api.stats(name, stream=False, one_shot=True)  # type: ignore[no-any-return]

    def _cpu_percent(self, name: str, cpu: Mapping[str, Any], read: str | None) -> float | None:
        """Percent of one CPU since this container's previous sample; None for the first one."""
        total = _int((cpu.get("cpu_usage") or {}).get("total_usage"))
        system = _int(cpu.get("system_cpu_usage"))
        read_at = parse_time(read)
        read_ns = int(read_at * 1e9) if read_at is not None else 0
        previous = self._previous.get(name)
        self._previous[name] = (total, system, read_ns)
        if previous is None or total < previous[0]:
            return None  # no baseline, or a new container's counter
        used = total - previous[0]
        if system > previous[1]:
            cpus = _int(cpu.get("online_cpus")) or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ()) or 1
            return round(100.0 * used / (system - previous[1]) * cpus, 2)
        if read_ns > previous[2]:  # engines without a system counter (Windows): wall time between reads
            return round(100.0 * used / (read_ns - previous[2]), 2)
        return None


def _host_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def _memory_in_use(memory: Mapping[str, Any]) -> int:
    """Usage without the inactive page cache, as ``docker stats`` shows it (cgroup v2, then v1 names)."""
    usage = _int(memory.get("usage"))
    detail = memory.get("stats") or {}
    for key in ("inactive_file", "total_inactive_file"):
        if key in detail and _int(detail[key]) < usage:
            return usage - _int(detail[key])
    return usage
