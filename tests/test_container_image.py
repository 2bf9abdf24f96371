"""The sidecar image, proven for real: suture in a container heals the container beside it.

The tests marked ``container`` run in ``make test-container``, not in ``make
test``: they build three images with Podman (tests/container_image.py) — a Debian
bookworm base made with debootstrap (no registry can be reached here; the
rootfs is cached in ``~/.cache/suture-ci/``), the suture image from the
Dockerfile on that base, and the demo app (examples/container-demo/app) —
and removes them afterwards (the cached rootfs and download caches stay).

Each test starts its own pod by hand: a holder container owns a network
namespace with nothing but loopback, and the app and suture join it, as in a
Kubernetes pod (suture probes the app on 127.0.0.1:8000, and restarting the
app does not cut suture off). Shared folders, as examples/compose mounts them:

- logs: the app (uid 10002) writes, suture reads (mounted read-only);
- config: suture (uid 10001) owns and edits it, the app reads (read-only);
- /etc/suture: suture.yaml and the playbooks, read-only;
- state: suture's only, mode 0700.

suture runs as the image's user (uid 10001) with ``--read-only`` and *no*
tmpfs at all (``--read-only-tmpfs=false``): it writes to its state volume and
nowhere else. The Docker Engine API is a Podman service started here on its
own socket, mounted at /var/run/docker.sock; the socket is root's and group
:data:`SOCKET_GID`'s, mode 0660, and suture gets that group with
``--group-add`` — what ``/var/run/docker.sock`` and the ``docker`` group are
on a Docker host. The outcome is read back the way a person would, inside
the container: ``podman exec <suture> suture history --sql ... --json``,
which asks the running sidecar through its API with ``$SUTURE_TOKEN``.

Where no container engine can be had (not root, no apt-get to install
podman, runc and debootstrap) the tests skip with a loud reason; on CI
(``CI`` set) that is a failure instead.

The examples (container-demo's config and playbooks, compose.yaml, the
Kubernetes manifest) are also checked without an engine, in ``make test``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import container_image as ci
from .containers import CONTAINERS_CONF, CONTAINERS_CONF_TEXT, ping

# The tests that build and run containers: `make test-container` (-m container); builds take minutes.
in_containers = pytest.mark.container
builds_images = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "container-demo"
SETTINGS = ROOT / "examples" / "demo" / "config" / "settings.yaml"
SUTURE_UID, APP_UID = 10001, 10002
SOCKET_GID = 10100  # the group that may use the engine's socket (the "docker" group of a Docker host)
LABEL = "io.suture.test.container"
MAX_IMAGE_BYTES = 250 * 1000 * 1000
FINAL = ("succeeded", "rolled_back", "failed", "conflict", "inconclusive", "exhausted")
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}  # command -> Debian package


def unavailable(reason: str) -> None:
    message = f"CONTAINER TESTS NOT RUN: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def say(config: pytest.Config, line: str) -> None:
    """A line on the terminal whatever the capture mode (the sizes and times this test measures)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line(f"[container] {line}")


def podman(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *argv], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


@pytest.fixture(scope="module")
def tools() -> None:
    """podman, runc and debootstrap, installed with apt-get if missing (root only); containers.conf as CI needs."""
    if os.geteuid() != 0:
        unavailable("needs root (rootful Podman: the tests run containers as uid 10001 and give it the API socket)")
    missing = sorted({pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None})
    if missing and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, capture_output=True, check=False)
        missing = sorted({pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None})
    if missing:
        unavailable(f"no container engine: cannot install {' '.join(missing)} (see .ci/packages)")
    if not CONTAINERS_CONF.exists():  # runc and cgroupfs: what works without systemd (as tests/containers.py)
        CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
        CONTAINERS_CONF.write_text(CONTAINERS_CONF_TEXT)


@pytest.fixture(scope="module")
def engine_socket(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Podman API service of our own on /run/suture-ci-*/podman.sock: root:SOCKET_GID, mode 0660."""
    folder = Path(tempfile.mkdtemp(prefix="suture-ci-", dir="/run"))
    socket_path = folder / "podman.sock"
    log = tmp_path_factory.mktemp("engine") / "service.log"
    with log.open("wb") as out:
        service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while ping(f"unix://{socket_path}") is None:
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service did not answer on {socket_path}:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        os.chown(socket_path, -1, SOCKET_GID)
        os.chmod(socket_path, 0o660)
        yield socket_path
    finally:
        service.terminate()
        try:
            service.wait(15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class Images:
    base: str
    suture: str
    app: str


@pytest.fixture(scope="module")
def images(tools: None, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Images]:
    """The base (from the cached debootstrap rootfs), suture's image and the demo app's; removed at the end.

    ``SUTURE_CI_KEEP_IMAGES=1`` (while working on the tests, not on the image): tag them ``:kept``, reuse
    them when they are there, and leave them behind.
    """
    keep = os.environ.get("SUTURE_CI_KEEP_IMAGES") == "1"
    run = "kept" if keep else secrets.token_hex(4)
    made = Images(base=f"localhost/suture-ci/base:{run}", suture=f"localhost/suture-ci/suture:{run}",
                  app=f"localhost/suture-ci/demo-app:{run}")
    log = tmp_path_factory.mktemp("images") / "build.log"
    if keep and all(podman("image", "exists", tag, check=False).returncode == 0 for tag in vars(made).values()):
        say(pytestconfig, f"reusing {made} (SUTURE_CI_KEEP_IMAGES=1)")
        yield made
        return
    if not keep:
        ci.remove_stale_images("localhost/suture-ci/", older_than=3 * 3600)  # left by a run that was killed
    try:
        started = time.monotonic()
        try:
            tar = ci.base_rootfs(log)
        except ci.ToolMissing as exc:
            unavailable(str(exc))
        say(pytestconfig, f"base rootfs {tar} ({tar.stat().st_size / 1e6:.0f} MB): {time.monotonic() - started:.0f} s")
        ci.import_image(tar, made.base, log)
        for tag, context, containerfile in (
            (made.suture, ROOT, None),
            (made.app, ROOT / "examples", DEMO / "app" / "Containerfile"),
        ):
            started = time.monotonic()
            ci.build_image(tag, context, log, containerfile=containerfile, build_args={"BASE_IMAGE": made.base})
            say(pytestconfig, f"built {tag}: {ci.image_size(tag) / 1e6:.1f} MB in {time.monotonic() - started:.0f} s")
        yield made
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"{' '.join(exc.cmd[:3])} failed (full log: {log}):\n{exc.output}")
    finally:
        if not keep:
            ci.remove_images(made.suture, made.app, made.base)


@dataclass
class Pod:
    """The app and suture sharing one network namespace, and the host folders mounted into them."""

    prefix: str
    folder: Path
    token: str
    app_started_at: str = ""  # the app container's start time, taken before suture could restart it

    @property
    def net(self) -> str:
        return f"{self.prefix}-net"

    @property
    def app(self) -> str:
        return f"{self.prefix}-app"

    @property
    def suture(self) -> str:
        return f"{self.prefix}-suture"

    @property
    def settings(self) -> Path:
        return self.folder / "config" / "settings.yaml"

    def logs(self, name: str) -> str:
        done = podman("logs", name, check=False)
        return (done.stdout + done.stderr)[-3000:]

    def history(self, sql: str) -> list[dict[str, Any]]:
        """Rows from ``suture history --sql SQL --json``, run inside the suture container."""
        done = podman("exec", self.suture, "suture", "history", "--sql", sql, "--json", check=False, timeout=60)
        assert done.returncode == 0, f"suture history failed:\n{done.stdout}{done.stderr}\n{self.logs(self.suture)}"
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows

    def outcome(self, playbook_id: str, timeout: float = 120) -> dict[str, Any]:
        """The first fix of ``playbook_id`` once it reaches a final status."""
        sql = ("SELECT id, status, decision, changes, fix_types, detail FROM fixes "
               f"WHERE playbook_id = '{playbook_id}' ORDER BY started_at LIMIT 1")
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.history(sql)
            if rows and rows[0]["status"] in FINAL:
                return rows[0]
            time.sleep(1)
        raise AssertionError(f"no final outcome for {playbook_id} within {timeout:g}s: {rows}\n"
                             f"--- suture:\n{self.logs(self.suture)}")

    def steps(self, fix_id: str) -> list[dict[str, Any]]:
        return self.history(f"SELECT seq, step, detail FROM fix_steps WHERE fix_id = '{fix_id}' ORDER BY seq")

    def explain(self, outcome: dict[str, Any]) -> str:
        """What to read when an outcome is not the expected one: the fix, its window, suture's log."""
        windows = self.history(f"SELECT verdict, reason, measured FROM validations WHERE fix_id = '{outcome['id']}'")
        return (f"{json.dumps(outcome, indent=1)}\n{json.dumps(windows, indent=1)}\n"
                f"--- suture:\n{self.logs(self.suture)}")

    def started_at(self, name: str) -> str:
        return podman("inspect", "--format", "{{.State.StartedAt}}", name).stdout.strip()

    def healthcheck(self) -> str:
        """Run suture's HEALTHCHECK now (no systemd timers here) and return the status the engine reports."""
        podman("healthcheck", "run", self.suture, check=False)
        return podman("inspect", "--format", "{{.State.Health.Status}}", self.suture).stdout.strip()


StartPod = Callable[[Path], Pod]


@pytest.fixture
def start_pod(images: Images, engine_socket: Path, tmp_path: Path) -> Iterator[StartPod]:
    """``start_pod(playbook)``: holder, app and suture (with that one playbook) running, suture healthy."""
    pods: list[Pod] = []

    def start(playbook: Path) -> Pod:
        pod = Pod(prefix=f"suture-ci-{secrets.token_hex(3)}", folder=tmp_path / f"pod{len(pods)}",
                  token=secrets.token_urlsafe(24))
        pods.append(pod)
        logs, config, state, etc = (pod.folder / name for name in ("logs", "config", "state", "etc"))
        for folder in (logs, config, state, etc / "playbooks"):
            folder.mkdir(parents=True)
        shutil.copyfile(SETTINGS, pod.settings)
        # the playbook names the container to restart, and the config allows it: this pod's app
        (etc / "suture.yaml").write_text((DEMO / "suture" / "suture.yaml").read_text().replace(
            "allowed_containers: [demo-app]", f"allowed_containers: [{pod.app}]"))
        text = playbook.read_text().replace("container: demo-app", f"container: {pod.app}")
        (etc / "playbooks" / playbook.name).write_text(text)
        for path, uid in ((logs, APP_UID), (config, SUTURE_UID), (pod.settings, SUTURE_UID), (state, SUTURE_UID)):
            os.chown(path, uid, uid)
        state.chmod(0o700)
        label = f"--label={LABEL}=1"
        podman("run", "--detach", label, "--name", pod.net, "--network", "none", "--read-only",
               images.base, "sleep", "infinity")
        podman("run", "--detach", label, "--name", pod.app, "--network", f"container:{pod.net}", "--read-only",
               "--volume", f"{logs}:/app/logs", "--volume", f"{config}:/app/config:ro", images.app)
        pod.app_started_at = pod.started_at(pod.app)
        podman("run", "--detach", label, "--name", pod.suture, "--network", f"container:{pod.net}",
               "--read-only", "--read-only-tmpfs=false", "--cap-drop=all", "--security-opt=no-new-privileges",
               "--group-add", str(SOCKET_GID), "--env", f"SUTURE_TOKEN={pod.token}",
               "--health-interval=disable",  # no systemd to run the timer: the test runs the check itself
               "--volume", f"{engine_socket}:/var/run/docker.sock",
               "--volume", f"{logs}:/app/logs:ro", "--volume", f"{config}:/app/config",
               "--volume", f"{state}:/var/lib/suture", "--volume", f"{etc}:/etc/suture:ro",
               images.suture)
        deadline = time.monotonic() + 60
        while (status := pod.healthcheck()) != "healthy":
            if time.monotonic() > deadline:
                raise AssertionError(f"suture's healthcheck says {status!r} after 60 s:\n{pod.logs(pod.suture)}")
            time.sleep(0.5)
        return pod

    yield start
    for pod in pods:
        for name in (pod.suture, pod.app, pod.net):  # the holder last: the others use its namespace
            podman("rm", "--force", "--time", "0", name, check=False)


@in_containers
@builds_images
def test_the_image_is_small_non_root_and_has_a_healthcheck(images: Images, pytestconfig: pytest.Config) -> None:
    """Under 250 MB; uid 10001; HEALTHCHECK on the health API; the entrypoint, state volume and env of the brief."""
    size = ci.image_size(images.suture)
    say(pytestconfig, f"suture image: {size:,} bytes ({size / 1e6:.1f} MB; limit {MAX_IMAGE_BYTES / 1e6:.0f} MB)")
    config = ci.image_config(images.suture)
    env = dict(item.split("=", 1) for item in config["Env"])  # type: ignore[attr-defined]
    assert size < MAX_IMAGE_BYTES
    assert config["User"] == f"{SUTURE_UID}:{SUTURE_UID}"
    assert config["Entrypoint"] == ["suture", "run", "--config", "/etc/suture/suture.yaml"]
    assert "/var/lib/suture" in config["Volumes"]  # type: ignore[operator]
    assert "/api/monitoring/health" in " ".join(ci.image_healthcheck(images.suture))
    assert (env["PYTHONDONTWRITEBYTECODE"], env["MALLOC_ARENA_MAX"]) == ("1", "2")


@in_containers
@builds_images
def test_the_sidecar_is_healthy_as_uid_10001_on_a_read_only_root(start_pod: StartPod) -> None:
    """suture runs and passes its HEALTHCHECK as 10001, with a read-only root, no tmpfs, no capabilities."""
    pod = start_pod(DEMO / "suture" / "playbooks" / "rate-limit-backoff.yaml")
    (inspected,) = json.loads(podman("inspect", pod.suture).stdout)
    ids = podman("exec", pod.suture, "id", "-u").stdout.strip()
    denied = podman("exec", pod.suture, "sh", "-c", "touch /opt/suture/x || touch /tmp/x || echo read-only",
                    check=False)
    assert (ids, inspected["HostConfig"]["ReadonlyRootfs"], pod.healthcheck()) == ("10001", True, "healthy")
    assert denied.stdout.strip() == "read-only"


@in_containers
@builds_images
def test_a_fix_that_helps_is_kept_and_the_app_container_is_restarted(start_pod: StartPod) -> None:
    """429s -> delay 0.1 -> 0.3 and a restart through the API -> validated -> succeeded; the edit stays."""
    pod = start_pod(DEMO / "suture" / "playbooks" / "rate-limit-backoff.yaml")
    before = SETTINGS.read_bytes()  # what the pod started with (suture may have acted already)
    outcome = pod.outcome("rate-limit-backoff")
    steps = pod.steps(outcome["id"])
    assert (outcome["status"], outcome["decision"]) == ("succeeded", "apply"), pod.explain(outcome)
    assert pod.settings.read_bytes() == before.replace(b"request_delay_s: 0.1", b"request_delay_s: 0.3")
    assert yaml.safe_load(pod.settings.read_text())["upstream"]["request_delay_s"] == 0.3
    assert pod.started_at(pod.app) != pod.app_started_at  # restarted through the Docker Engine API, from inside suture
    assert any(f"restarted container {pod.app}" in json.dumps(s["detail"]) for s in steps), steps


@in_containers
@builds_images
def test_a_fix_that_does_not_help_is_rolled_back_byte_for_byte(start_pod: StartPod) -> None:
    """429s -> delay x1.01 and a restart -> 429s again in the window -> rolled_back; the file is as before."""
    pod = start_pod(DEMO / "suture" / "unhelpful" / "rate-limit-nudge.yaml")
    before = SETTINGS.read_bytes()  # what the pod started with (suture may have acted already)
    outcome = pod.outcome("rate-limit-nudge")
    steps = pod.steps(outcome["id"])
    changes = outcome["changes"] if isinstance(outcome["changes"], list) else json.loads(outcome["changes"])
    assert (outcome["status"], outcome["decision"]) == ("rolled_back", "apply"), pod.explain(outcome)
    assert [(c["old"], c["new"]) for c in changes] == [("0.1", "0.101")], changes
    assert pod.settings.read_bytes() == before
    assert any(f"restarted container {pod.app}" in json.dumps(s["detail"]) for s in steps), steps


# -- the examples, checked without an engine: these run in `make test` -------------------------------

COMPOSE = ROOT / "examples" / "compose" / "compose.yaml"
KUBERNETES = ROOT / "examples" / "kubernetes" / "suture-sidecar.yaml"


def suture_check(capsys: pytest.CaptureFixture[str], config: Path, *paths: Path) -> tuple[int, str]:
    from suture.sidecar.cli import main

    code = main(["check", "--run-examples", "--config", str(config), *map(str, paths)])
    out, err = capsys.readouterr()
    return code, out + err


def kubernetes_documents() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(KUBERNETES.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def containers_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"] + spec.get("initContainers", [])}


@pytest.mark.parametrize("playbooks", ["playbooks", "unhelpful"])
def test_the_container_demo_config_and_playbooks_pass_suture_check(
    playbooks: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/container-demo: suture.yaml and each playbook folder validate, and their examples pass."""
    code, output = suture_check(capsys, DEMO / "suture" / "suture.yaml", DEMO / "suture" / playbooks)
    assert (code, "examples: 2 of 2 passed" in output) == (0, True), output


def test_the_kubernetes_config_and_playbooks_pass_suture_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The suture-config and suture-playbooks ConfigMaps, written out as kubelet mounts them, validate."""
    docs = kubernetes_documents()
    (tmp_path / "suture.yaml").write_text(docs[("ConfigMap", "suture-config")]["data"]["suture.yaml"])
    (tmp_path / "playbooks").mkdir()
    for name, text in docs[("ConfigMap", "suture-playbooks")]["data"].items():
        (tmp_path / "playbooks" / name).write_text(text)
    code, output = suture_check(capsys, tmp_path / "suture.yaml")
    assert (code, "1 playbook(s) ok" in output) == (0, True), output


def test_the_kubernetes_sidecar_is_locked_down_and_sized() -> None:
    """suture's container: non-root, read-only root, no capabilities, the sized resources, the mounts it needs."""
    deployment = kubernetes_documents()[("Deployment", "demo-app")]
    pod_spec = deployment["spec"]["template"]["spec"]
    suture = containers_of(deployment)["suture"]
    security = suture["securityContext"]
    mounts = {m["mountPath"]: m for m in suture["volumeMounts"]}
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert (security["runAsUser"], security["readOnlyRootFilesystem"], security["allowPrivilegeEscalation"],
            security["capabilities"]["drop"]) == (10001, True, False, ["ALL"])
    assert suture["resources"] == {"requests": {"cpu": "50m", "memory": "128Mi"},
                                   "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert (mounts["/app/logs"].get("readOnly"), mounts["/app/config"].get("readOnly")) == (True, None)
    assert "subPath" not in mounts["/etc/suture/playbooks"]  # a folder mount: the ..data swap reloads
    assert "/var/lib/suture" in mounts


def test_the_compose_sidecar_is_locked_down_and_restarts_the_named_app() -> None:
    """compose.yaml: suture read-only, no capabilities, no published port; the app's name is the playbook's."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    suture, app = services["suture"], services["app"]
    mounts = {v.split(":")[1]: v for v in suture["volumes"]}
    playbook = yaml.safe_load((DEMO / "suture" / "playbooks" / "rate-limit-backoff.yaml").read_text())
    assert (suture["read_only"], suture["cap_drop"], "ports" in suture, "user" in suture) == (True, ["ALL"], False, False)
    assert suture["network_mode"] == app["network_mode"] == "service:pod"
    assert mounts["/var/run/docker.sock"].endswith(":ro") and mounts["/app/logs"].endswith(":ro")
    assert {"/var/lib/suture", "/app/config", "/etc/suture"} <= set(mounts)
    assert {"restart": {"container": app["container_name"]}} in playbook["fix"]
