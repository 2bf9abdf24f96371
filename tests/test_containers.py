"""ContainerWatcher and ContainerStats: state, restarts, CPU and memory from a real Docker Engine API (Podman's)."""

# The container fixtures are imported below until tests/conftest.py imports them; arguments naming
# them shadow the imports, which is how pytest fixtures work.

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import docker
import docker.errors
import pytest
import requests.exceptions
from suture.engine.confine import CHILD_PATH
from suture.sidecar.sources.containers import (
    ContainerState,
    ContainerStats,
    ContainerWatcher,
    container_metric,
    describe_engine_error,
    metric_containers,
    parse_time,
)

from .conftest import dedent, playbook, write_config
from .containers import Engine, MakeContainer, run_healthcheck

SECOND = 1_000_000_000  # the Engine API counts healthcheck durations in nanoseconds


def poll_one(watcher: ContainerWatcher, name: str) -> ContainerState:
    (state,) = [s for s in watcher.poll(time.time()) if s.name == name]
    return state


def test_a_running_container_is_running(docker_api: docker.DockerClient, make_container: MakeContainer) -> None:
    """A started container: running, exists, no health, started moments ago."""
    container = make_container()
    state = poll_one(ContainerWatcher(docker_api, [container.name]), container.name)
    assert (state.state, state.exists, state.health, state.restart_count) == ("running", True, None, 0)
    assert state.started_at is not None and abs(time.time() - state.started_at) < 30


def test_a_stopped_container_is_exited(docker_api: docker.DockerClient, make_container: MakeContainer) -> None:
    """A stopped container: exited."""
    container = make_container()
    container.stop(timeout=2)
    state = poll_one(ContainerWatcher(docker_api, [container.name]), container.name)
    assert (state.state, state.exists) == ("exited", True)


def test_a_created_but_never_started_container_is_exited(
    docker_api: docker.DockerClient,
    make_container: MakeContainer,
) -> None:
    """Created, never started: not serving, so exited (the raw status is in the detail)."""
    container = make_container(start=False)
    state = poll_one(ContainerWatcher(docker_api, [container.name]), container.name)
    assert (state.state, state.detail, state.started_at) == ("exited", "created", None)


def test_a_missing_container_is_missing(docker_api: docker.DockerClient) -> None:
    """A name no container has: missing, not an exception."""
    state = poll_one(ContainerWatcher(docker_api, ["suture-test-absent"]), "suture-test-absent")
    assert (state.state, state.exists, state.detail) == ("missing", False, "no such container")


def test_the_first_poll_is_not_a_restart(docker_api: docker.DockerClient, make_container: MakeContainer) -> None:
    """Without an earlier poll to compare with, nothing counts as a restart."""
    container = make_container()
    watcher = ContainerWatcher(docker_api, [container.name])
    assert poll_one(watcher, container.name).restarted is False
    assert watcher.restarts_since(container.name, 0) == 0


def test_a_restart_through_the_api_is_seen(docker_api: docker.DockerClient, make_container: MakeContainer) -> None:
    """A manual restart, which RestartCount does not count, is seen by its new start time, once."""
    container = make_container()
    watcher = ContainerWatcher(docker_api, [container.name])
    before = poll_one(watcher, container.name)
    container.restart(timeout=2)
    after = poll_one(watcher, container.name)
    again = poll_one(watcher, container.name)
    assert (after.restarted, again.restarted) == (True, False)
    assert after.started_at is not None and before.started_at is not None and after.started_at > before.started_at
    assert watcher.restarts_since(container.name, before.at) == 1


def test_restart_policy_restarts_are_counted(docker_api: docker.DockerClient, make_container: MakeContainer) -> None:
    """A crash loop under a restart policy: RestartCount grows and every restart is counted."""
    container = make_container(["sh", "-c", "sleep 0.2; exit 1"], restart_policy={"Name": "always"})
    watcher = ContainerWatcher(docker_api, [container.name])
    first = poll_one(watcher, container.name)
    deadline = time.monotonic() + 10
    while watcher.restarts_since(container.name, first.at) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        last = poll_one(watcher, container.name)
    assert watcher.restarts_since(container.name, first.at) >= 2
    assert last.restart_count > first.restart_count


def test_an_unhealthy_running_container_is_unhealthy(
    docker_engine: Engine,
    docker_api: docker.DockerClient,
    make_container: MakeContainer,
) -> None:
    """Running with a failing healthcheck: unhealthy."""
    container = make_container(
        healthcheck={"test": ["CMD", "false"], "interval": SECOND, "timeout": SECOND, "retries": 1}
    )
    assert run_healthcheck(docker_engine, docker_api, container.name) == "unhealthy"
    state = poll_one(ContainerWatcher(docker_api, [container.name]), container.name)
    assert (state.state, state.health) == ("unhealthy", "unhealthy")


def test_a_healthy_container_is_running(
    docker_engine: Engine,
    docker_api: docker.DockerClient,
    make_container: MakeContainer,
) -> None:
    """Running with a passing healthcheck: running, health healthy."""
    container = make_container(
        healthcheck={"test": ["CMD", "true"], "interval": SECOND, "timeout": SECOND, "retries": 1}
    )
    assert run_healthcheck(docker_engine, docker_api, container.name) == "healthy"
    state = poll_one(ContainerWatcher(docker_api, [container.name]), container.name)
    assert (state.state, state.health) == ("running", "healthy")


def test_each_name_is_polled_once(docker_api: docker.DockerClient, make_container: MakeContainer) -> None:
    """Several names, repeated ones once each, in order."""
    container = make_container()
    watcher = ContainerWatcher(docker_api, [container.name, "suture-test-absent", container.name])
    states = watcher.poll(time.time())
    assert [(s.name, s.state) for s in states] == [(container.name, "running"), ("suture-test-absent", "missing")]


# --- an engine that fails ------------------------------------------------------------------


@pytest.fixture
def broken_engine() -> Iterator[str]:
    """A real HTTP server that answers every Engine API call with 500 (or drops it for /containers/drop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if "/containers/drop/" in self.path:
                self.close_connection = True
                return  # no answer at all
            body = b'{"message": "storage is on fire"}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("app", "the container engine refused (HTTP 500): storage is on fire"),
        ("drop", "cannot reach the container engine"),
    ],
)
def test_engine_errors_become_unknown_never_an_exception(broken_engine: str, name: str, detail: str) -> None:
    """An engine that refuses or hangs up: state unknown with the reason; poll() does not raise."""
    client = docker.DockerClient(base_url=broken_engine, version="1.41", timeout=2)
    try:
        state = poll_one(ContainerWatcher(client, [name]), name)
    finally:
        client.close()
    assert (state.state, state.exists, state.detail) == ("unknown", False, detail)


@pytest.mark.parametrize(
    ("error", "described"),
    [
        (docker.errors.NotFound("404 Client Error: Not Found"), "no such container"),
        (requests.exceptions.ReadTimeout("read timed out"), "the container engine did not answer in time"),
        (requests.exceptions.ConnectionError("refused"), "cannot reach the container engine"),
        (
            docker.errors.DockerException("Error while fetching server API version"),
            "container engine error: Error while fetching server API version",
        ),
        (
            FileNotFoundError(2, "No such file or directory"),
            "cannot reach the container engine: No such file or directory",
        ),
    ],
)
def test_each_known_engine_error_is_described(error: Exception, described: str) -> None:
    """docker SDK and transport errors are mapped to one line each, in one place."""
    assert describe_engine_error(error) == described


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T01:55:51.863150665Z", 1795658151.86315),
        ("2026-11-26T02:55:51+01:00", 1795658151.0),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_engine_timestamps_are_parsed(text: str | None, expected: float | None) -> None:
    """RFC 3339 with nanoseconds and zones; the zero time and garbage are None."""
    assert parse_time(text) == (pytest.approx(expected, abs=1e-3) if expected is not None else None)


# --- CPU and memory for metric conditions --------------------------------------------------

BUSY = ["sh", "-c", "trap 'exit 0' TERM; while :; do :; done"]


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("container.app.cpu_percent", ("app", "cpu_percent")),
        ("container.api.v2.memory_percent", ("api.v2", "memory_percent")),  # the metric is after the last dot
        ("container.app.memory_bytes", ("app", "memory_bytes")),
        ("container.app.rss_bytes", None),
        ("container.cpu_percent", None),
        ("container.-x.cpu_percent", None),  # not a container name
        ("process.app.cpu_percent", None),
        ("cpu_percent", None),
    ],
)
def test_container_metric_names_are_parsed(name: str, parsed: tuple[str, str] | None) -> None:
    """container.<name>.<metric>: the name is everything up to the last dot, and may hold dots."""
    assert container_metric(name) == parsed


def test_metric_containers_come_from_diagnoses_and_expectations() -> None:
    """Containers named by metric conditions in ``when`` and in ``validate.expect``; nothing else."""
    pb = playbook("""
        id: busy
        when:
          all:
            - metric: {name: container.api.v2.cpu_percent, above: 90}
            - container: {name: db, state: running}
        confidence: 50
        fix: [{restart: {container: api.v2}}]
        validate: {window: 10s, expect: [{metric: {name: container.worker.memory_percent, below: 80}}]}
        """)
    assert metric_containers([pb]) == {"api.v2", "worker"}


def test_cpu_needs_two_samples_and_memory_one(docker_api: docker.DockerClient, make_container: MakeContainer) -> None:
    """First sample: memory only (the engine's previous CPU sample is not trusted); second: CPU too."""
    container = make_container(BUSY, mem_limit="64m")
    stats = ContainerStats(docker_api)
    first = {s.name: s.value for s in stats.sample([container.name], time.time())}
    time.sleep(0.3)
    second = {s.name: s.value for s in stats.sample([container.name], time.time())}
    prefix = f"container.{container.name}."
    assert sorted(first) == [prefix + "memory_bytes", prefix + "memory_percent"]
    assert 0 < first[prefix + "memory_bytes"] < 64 * 2**20
    assert first[prefix + "memory_percent"] == pytest.approx(100 * first[prefix + "memory_bytes"] / 2**26, abs=0.01)
    assert second[prefix + "cpu_percent"] > 1  # a busy loop (on a loaded machine, less than one CPU)


def test_a_stopped_or_missing_container_gives_no_metrics(
    docker_api: docker.DockerClient, make_container: MakeContainer
) -> None:
    """No samples and a reason for each, never an exception."""
    container = make_container()
    container.stop(timeout=1)
    stats = ContainerStats(docker_api)
    assert stats.sample([container.name, "suture-test-absent"], time.time()) == []
    assert stats.errors == {container.name: "not running", "suture-test-absent": "no such container"}


@pytest.mark.slow
def test_a_container_metric_condition_fires_in_the_sidecar(
    tmp_path, target, running, make_container: MakeContainer, docker_url: str
) -> None:
    """End to end: the sidecar samples the container a metric condition names, and the condition fires."""
    container = make_container(BUSY)
    config = write_config(
        tmp_path,
        target,
        extra=f"""
        metrics: {{interval: 200ms}}
        docker: {{url: "{docker_url}"}}
        allowed_commands: [{shutil.which("true", path=CHILD_PATH)}]
        """,
    )
    (config.playbooks / "busy.yaml").write_text(
        dedent(f"""
        id: busy-worker
        when: {{metric: {{name: container.{container.name}.cpu_percent, above: 5}}}}
        confidence: 50
        mode: shadow
        fix: [{{exec: {{argv: ["true"]}}}}]
        validate: {{window: 10s, expect: [{{metric: {{name: container.{container.name}.memory_bytes, above: 0}}}}]}}
        """)
    )
    r = running(config)
    r.wait_for(lambda e: e.kind == "detected" and "busy-worker" in e.message, timeout=20)
