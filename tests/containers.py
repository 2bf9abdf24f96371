"""Shared fixtures for tests that need a real Docker Engine API and a container image.

    from .containers import busybox_image, docker_api, make_container  # noqa: F401

The engine is found or started once per session:

1. ``DOCKER_HOST``, then Podman's socket ``/run/podman/podman.sock``: used if
   it answers ``/_ping``;
2. else, as root with ``podman`` installed: ``podman system service`` is
   started on that socket (``/etc/containers/containers.conf`` is written
   first if there is none: runc, cgroupfs, no default ulimits: what works in
   a container or a VM without systemd);
3. else every test that asks for it is skipped, loudly.

The image ``localhost/suture-test-busybox:latest`` is imported through the
API from a rootfs made of the static busybox (``busybox-static``) and its
applet links: no registry, no network, ~0.2 s.

Several pytest sessions may run at once (engineers, CI, and each worker of
``pytest -n``, which is a session of its own): each holds a shared lock on
LEASE for its lifetime, and finds or starts the engine under a second lock,
STARTING, one session at a time; the last one out (the one that can make its
lease exclusive) removes the image and stops the service if a test session
started it. A session that arrives while the last one cleans up waits for it,
then starts the service again.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast

import docker
import docker.errors
import pytest
from docker.models.containers import Container

PODMAN_SOCKET = Path("/run/podman/podman.sock")
PODMAN_URL = f"unix://{PODMAN_SOCKET}"
IMAGE = "localhost/suture-test-busybox:latest"
LABEL = "io.suture.test"
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
CONTAINERS_CONF_TEXT = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
NO_ENGINE = "no container engine: install podman runc (see .ci/packages)"
NO_BUSYBOX = "no static busybox to build the test image: install busybox-static (see .ci/packages)"
STATE = Path(tempfile.gettempdir())
LEASE = STATE / "suture-tests-engine.lock"
STARTING = STATE / "suture-tests-engine-start.lock"
SERVICE_PID = STATE / "suture-tests-podman.pid"

# A container that runs until stopped, and stops at once on SIGTERM (a shell as pid 1 ignores it otherwise).
SERVE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]

T = TypeVar("T")


def ping(url: str, timeout: float = 3.0) -> dict[str, str] | None:
    """The headers of a 200 answer to ``GET /_ping`` at ``url`` (unix:// or tcp://), lower-cased; else None.

    Asked over a plain socket: the docker SDK leaks its socket when a connect
    fails, and asks ``/version`` first, which costs Podman ~0.7 s a time.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = parts.path
        elif parts.scheme in ("tcp", "http") and parts.hostname:
            sock = socket.socket(socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET, socket.SOCK_STREAM)
            address = (parts.hostname, parts.port or 2375)
        else:
            return None
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return None
    status, *lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    if status.split(" ")[1:2] != ["200"]:
        return None
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


@dataclass
class Engine:
    """The engine a session uses, and the lease that tells the last session out to clean up."""

    url: str
    podman: bool = False  # Podman's API answers /_ping with a Libpod-Api-Version header
    api_version: str = "auto"  # from /_ping; saves the SDK asking /version for each client
    lease: int = -1  # fd holding a shared flock on LEASE for the whole session
    _last: bool | None = field(default=None, repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def last_user(self) -> bool:
        """True if no other session holds the lease (then we keep it exclusively until the end).

        Asked only on the way out: on Linux a refused upgrade also drops our shared lock, so of
        sessions leaving together one always finds itself last."""
        if self._last is None:
            try:
                fcntl.flock(self.lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._last = True
            except BlockingIOError:
                self._last = False
        return self._last


def _start_podman(log: Path) -> subprocess.Popen[bytes]:
    if not CONTAINERS_CONF.exists():
        CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
        CONTAINERS_CONF.write_text(CONTAINERS_CONF_TEXT)
    PODMAN_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", PODMAN_URL],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        if ping(PODMAN_URL) is not None:
            SERVICE_PID.write_text(f"{proc.pid}\n")
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail(f"podman system service did not answer on {PODMAN_URL}:\n{log.read_text()[-2000:]}")


def _stop_podman(engine: Engine) -> None:
    """Stop the service a test session started (ours, or one whose session ended before us)."""
    try:
        pid = int(SERVICE_PID.read_text())
    except (OSError, ValueError):
        return
    SERVICE_PID.unlink(missing_ok=True)
    if engine._process is not None and engine._process.pid == pid:
        engine._process.terminate()
        try:
            engine._process.wait(10)
        except subprocess.TimeoutExpired:
            engine._process.kill()
            engine._process.wait()
        return
    try:
        if b"podman" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return  # the pid was reused: not ours to stop
        os.kill(pid, 15)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


class _Shared(Generic[T]):
    """One value per test process, however many test modules import the fixture that makes it.

    Each module that imports a session fixture gets its own copy of it; they
    share the value here, and the last one to finish cleans up.
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


_ENGINE: _Shared[Engine] = _Shared()
# The service this session started and leaves running for the sessions still using it (the last one out stops
# it by its pid): its Popen is kept, as collecting a running child's Popen warns (an error under pytest).
_LEFT_RUNNING: list[subprocess.Popen[bytes]] = []
_CLIENT: _Shared[docker.DockerClient] = _Shared()
_IMAGE: _Shared[str] = _Shared()


@contextlib.contextmanager
def _starting() -> Iterator[None]:
    """STARTING held exclusively: one session at a time finds or starts the engine, or imports the image."""
    fd = os.open(STARTING, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _engine(logs: Path) -> Iterator[Engine]:
    lease = os.open(LEASE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    # Shared for the whole session, taken first: it waits while the last session out cleans up (it holds
    # LEASE exclusively then), so the engine found below is not one about to be stopped.
    fcntl.flock(lease, fcntl.LOCK_SH)
    engine = Engine(url=PODMAN_URL, lease=lease)
    try:
        with _starting():  # one session at a time finds or starts the engine
            candidates = [u for u in (os.environ.get("DOCKER_HOST"), PODMAN_URL) if u]
            found = next((u for u in candidates if ping(u) is not None), None)
            if found is not None:
                engine.url = found
            elif shutil.which("podman") is None or os.geteuid() != 0:
                pytest.skip(NO_ENGINE)
            else:
                engine._process = _start_podman(logs)
        headers = ping(engine.url) or {}
        engine.podman = "libpod-api-version" in headers
        engine.api_version = headers.get("api-version", "auto")
        yield engine
    finally:
        if engine.last_user():
            _stop_podman(engine)
        elif engine._process is not None:
            _LEFT_RUNNING.append(engine._process)
        os.close(lease)


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A Docker Engine API that answers: found, or Podman's started here; skips loudly if neither."""
    with _ENGINE.use(lambda: _engine(tmp_path_factory.mktemp("podman") / "service.log")) as engine:
        yield engine


@pytest.fixture(scope="session")
def docker_url(docker_engine: Engine) -> str:
    return docker_engine.url


@contextlib.contextmanager
def _client(engine: Engine) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=engine.url, version=engine.api_version, timeout=30)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_api(docker_engine: Engine) -> Iterator[docker.DockerClient]:
    """A docker SDK client on the session's engine."""
    with _CLIENT.use(lambda: _client(docker_engine)) as client:
        yield client


def _static_busybox() -> Path | None:
    """A busybox binary that needs no libraries (no ELF interpreter), or None."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"):
        path = Path(candidate)
        if path.is_file() and not _has_interp(path):
            return path
    return None


def _has_interp(path: Path) -> bool:
    """True if the ELF file asks for a dynamic loader (a PT_INTERP program header)."""
    data = path.read_bytes()[:65536]
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only: what CI runs
        return True
    order: Literal["little", "big"] = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[32:40], order)
    phentsize = int.from_bytes(data[54:56], order)
    phnum = int.from_bytes(data[56:58], order)
    for i in range(phnum):
        start = phoff + i * phentsize
        if int.from_bytes(data[start : start + 4], order) == 3:
            return True
    return False


def busybox_rootfs(busybox: Path) -> bytes:
    """A tar of a minimal root: /bin/busybox, a link per applet in /bin, and the usual empty folders."""
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, check=True, text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder, mode in (
            ("bin", 0o755),
            ("dev", 0o755),
            ("etc", 0o755),
            ("proc", 0o555),
            ("sys", 0o555),
            ("root", 0o700),
            ("tmp", 0o1777),
            ("var", 0o755),
        ):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        data = busybox.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in sorted(set(applets) - {"busybox"}):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return buf.getvalue()


@contextlib.contextmanager
def _image(engine: Engine, client: docker.DockerClient) -> Iterator[str]:
    with _starting():  # one import: a second would leave the first image behind, untagged
        try:
            client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            busybox = _static_busybox()
            if busybox is None:
                pytest.skip(NO_BUSYBOX)
            repository, _, tag = IMAGE.rpartition(":")
            client.api.import_image_from_data(busybox_rootfs(busybox), repository=repository, tag=tag)
    try:
        yield IMAGE
    finally:
        if engine.last_user():
            for leftover in client.containers.list(all=True, filters={"label": LABEL}):
                leftover.remove(force=True)
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(IMAGE, force=True)


@pytest.fixture(scope="session")
def busybox_image(docker_engine: Engine, docker_api: docker.DockerClient) -> Iterator[str]:
    """The tag of a tiny busybox image, imported from the local static busybox (reused if present)."""
    with _IMAGE.use(lambda: _image(docker_engine, docker_api)) as image:
        yield image


MakeContainer = Callable[..., Container]


@pytest.fixture
def make_container(docker_api: docker.DockerClient, busybox_image: str) -> Iterator[MakeContainer]:
    """``make_container(command=SERVE, name=None, start=True, **run_kwargs)``: a container removed after the test."""
    made: list[Container] = []

    def make(
        command: list[str] | None = None, *, name: str | None = None, start: bool = True, **kwargs: Any
    ) -> Container:
        options = {
            "name": name or f"suture-test-{secrets.token_hex(4)}",
            "labels": {LABEL: "1", **kwargs.pop("labels", {})},
            "network_mode": "none",  # no network to set up and tear down: ~0.5 s less per container
            **kwargs,
        }
        if start:
            container = docker_api.containers.run(busybox_image, command or SERVE, detach=True, **options)
        else:
            container = docker_api.containers.create(busybox_image, command or SERVE, **options)
        made.append(container)
        return container

    yield make
    for container in made:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def run_healthcheck(engine: Engine, client: docker.DockerClient, name: str, timeout: float = 10.0) -> str:
    """Make the engine run a container's healthcheck now; return the health status it then reports.

    Podman runs healthchecks from systemd timers, which a host without
    systemd lacks, so its libpod API is asked to run one; Docker runs them
    itself, so we wait for the status to leave ``starting``.
    """
    if engine.podman:
        client.api.get(f"{client.api.base_url}/v4.0.0/libpod/containers/{name}/healthcheck")
    deadline = time.monotonic() + timeout
    while True:
        status = str((client.api.inspect_container(name)["State"].get("Health") or {}).get("Status") or "")
        if status not in ("", "starting") or time.monotonic() >= deadline:
            return status
        time.sleep(0.1)
