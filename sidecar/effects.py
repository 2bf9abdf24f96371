"""The effects a fix may have besides file edits: restart, stop, exec, notify.

:class:`Effects` is the :class:`~suture.engine.actions.EffectRunner` the
sidecar hands the executor. ``run(action, context)`` returns one line for the
journal, or raises :class:`~suture.engine.errors.ActionError`.

What reaches the world is exactly what the playbook says (SAFETY 12). The
context (fix id, playbook id, labels) may hold text taken from log lines
(``group_by`` labels), so it never reaches a shell, an argv, a path or a
template: argv runs as written, with no shell; pid files and container names
come from the playbook; the child's environment is built from scratch and
only carries ids that match suture's own id pattern; labels travel only as
JSON data in a notification body. How a program is run (no shell, bounded,
its process group stopped at the timeout) is ``sidecar.programs``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from suture.engine.config import Config
from suture.engine.confine import CHILD_PATH, Refused, container_problem, resolve_command, webhook_problem
from suture.engine.errors import ActionError
from suture.engine.paths import relative_problem
from suture.engine.playbook import FILE_ACTIONS, Action, Exec, Notify, Restart, Stop

from .notify import Notifier
from .programs import printable, run_program
from .sources.containers import connect, describe_engine_error, docker_url, engine_errors, state_of

if TYPE_CHECKING:
    import docker

log = logging.getLogger("suture.effects")

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PIDFILE = re.compile(rb"[0-9]{1,10}\n?")


# --- exec ------------------------------------------------------------------------------


def child_env(context: Mapping[str, Any]) -> dict[str, str]:
    """The whole environment of an exec'd program: fixed values and suture's own ids, nothing else."""
    env = {"PATH": CHILD_PATH, "LANG": "C.UTF-8"}
    for key, var in (("fix_id", "SUTURE_FIX_ID"), ("playbook_id", "SUTURE_PLAYBOOK_ID")):
        value = context.get(key)
        if isinstance(value, str) and _SAFE_ID.fullmatch(value):
            env[var] = value
        elif value is not None:
            log.warning("not passing %s to the program: %r is not an id suture made", var, value)
    if context.get("rollback") is True:
        env["SUTURE_ROLLBACK"] = "1"
    return env


# --- the runner ------------------------------------------------------------------------


class Effects:
    """Carries out Restart, Exec and Notify for the executor (an EffectRunner).

    The docker client is built on first use from ``config.docker_url`` (or
    ``DOCKER_HOST`` in ``env``) unless one is injected; so is the notifier,
    from ``config.notify_webhook``. What Effects builds, ``close()`` ends.
    """

    def __init__(
        self,
        config: Config,
        *,
        docker_client: docker.DockerClient | None = None,
        notifier: Notifier | None = None,
        env: Mapping[str, str] | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        stop_timeout: int = 10,
        restart_wait: float = 5.0,
        poll_interval: float = 0.1,
        kill_grace: float = 2.0,
    ) -> None:
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.stop = stop or threading.Event()
        self.clock = clock
        self.stop_timeout = stop_timeout
        self.restart_wait = restart_wait
        self.poll_interval = poll_interval
        self.kill_grace = kill_grace
        self._docker = docker_client
        self._own_docker = False
        self._notifier = notifier
        self._own_notifier = False
        # what carries out each kind of effect: a new kind adds its line here
        self._runners: Mapping[type[Action], Callable[[Any, Mapping[str, Any]], str]] = {
            Restart: lambda a, _: self.restart(a),
            Stop: lambda a, _: self.stop_container(a.container, a.timeout),
            Exec: self.exec,
            Notify: lambda a, context: self.notify(a.webhook, context),
        }

    def run(self, action: Action, context: Mapping[str, Any]) -> str:
        """Carry ``action`` out, checked again against the allowlists (a playbook passed them when it loaded)."""
        runner = self._runners.get(type(action))
        if runner is not None:
            return runner(action, context)
        if isinstance(action, FILE_ACTIONS):
            raise ActionError(f"{type(action).__name__} is a file action: the executor plans and writes it")
        raise ActionError(f"{type(action).__name__} cannot be carried out here (Effects runs restart, stop, exec, "
                          "notify)")

    def restart(self, action: Restart) -> str:
        """A container through the Engine API, or a process through its pid file."""
        if action.container:
            return self.restart_container(action.container)
        if action.pidfile:
            return self.signal_pidfile(action.pidfile, action.signal)
        raise ActionError(f"restart needs a container or a pidfile ({action.at})")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the notifier and close the docker client, if Effects built them."""
        if self._own_notifier and self._notifier is not None:
            self._notifier.stop(timeout)
        if self._own_docker and self._docker is not None:
            self._docker.close()

    # -- restart: container --

    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            url = docker_url(self.config.docker_url, self.env)
            try:
                self._docker = connect(url)
            except engine_errors() as exc:
                raise ActionError(f"container engine at {url}: {describe_engine_error(exc)}") from exc
            self._own_docker = True
        return self._docker

    def restart_container(self, name: str) -> str:
        """Restart through the Engine API, then wait (bounded) until it runs again with a new start time."""
        what = f"cannot restart container {name}"
        self._allowed_container(name)
        client = self.docker()
        try:
            container = client.containers.get(name)
            was, _, _ = state_of(container.attrs)
            started_before = _started(container.attrs)
            container.restart(timeout=self.stop_timeout)
            deadline = time.monotonic() + self.restart_wait
            while True:
                container.reload()
                state, _, status = state_of(container.attrs)
                if state in ("running", "unhealthy") and _started(container.attrs) != started_before:
                    break
                if time.monotonic() >= deadline:
                    exit_code = (container.attrs.get("State") or {}).get("ExitCode")
                    raise ActionError(
                        f"container {name} did not come back within {self.restart_wait:g}s "
                        f"(now {status or state}, exit code {exit_code})"
                    )
                if self.stop.wait(self.poll_interval):
                    raise ActionError(f"container {name}: restarted, but suture stopped before it was seen running")
        except engine_errors() as exc:
            raise ActionError(f"{what}: {describe_engine_error(exc)}") from exc
        count = container.attrs.get("RestartCount", 0)
        return f"restarted container {name} (was {was}, now {state}, restart count {count})"

    def stop_container(self, name: str, timeout: float) -> str:
        """Stop through the Engine API (the engine's restart policy leaves a stopped container alone)."""
        self._allowed_container(name)
        try:
            container = self.docker().containers.get(name)
            was, _, _ = state_of(container.attrs)
            container.stop(timeout=int(timeout))
            container.reload()
            state, _, status = state_of(container.attrs)
        except engine_errors() as exc:
            raise ActionError(f"cannot stop container {name}: {describe_engine_error(exc)}") from exc
        if state not in ("exited",):
            raise ActionError(f"container {name} is still {status or state} after stop")
        return f"stopped container {name} (was {was})"

    # -- restart: process by pid file --

    def signal_pidfile(self, pidfile: str, signame: str) -> str:
        """Send ``signame`` to the process a pid file names, after checking the pid file is current."""
        try:
            sig = signal.Signals[signame]
        except KeyError:
            raise ActionError(f"unknown signal {signame!r}") from None
        path = self._pidfile_path(pidfile)
        pid, mtime = read_pidfile(path)
        if pid == os.getpid():
            raise ActionError(f"{pidfile} holds suture's own pid {pid}; refusing to signal it")
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise ActionError(f"{pidfile}: no process {pid} (stale pid file?)") from None
        except OSError as exc:
            raise ActionError(f"{pidfile}: cannot open process {pid}: {exc.strerror}") from exc
        try:
            _check_current(pidfile, pid, mtime)  # the pidfd pins the pid: no reuse between check and signal
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            raise ActionError(f"{pidfile}: process {pid} exited before it could be signalled") from None
        except PermissionError:
            raise ActionError(f"{pidfile}: not permitted to signal process {pid}") from None
        finally:
            os.close(pidfd)
        return f"sent {sig.name} to process {pid} (from {pidfile})"

    def _pidfile_path(self, pidfile: str) -> Path:
        if pidfile.startswith("/"):
            if "\x00" in pidfile:
                raise ActionError("a pid file path must not contain NUL bytes")
            return Path(pidfile)
        problem = relative_problem(pidfile)
        if problem:
            raise ActionError(problem)
        root: Path = self.config.target_root
        return root / pidfile

    # -- exec --

    def _allowed_container(self, name: str) -> None:
        problem = container_problem(self.config, name)
        if problem:
            raise Refused(problem)

    def exec(self, action: Exec, context: Mapping[str, Any]) -> str:
        name = action.argv[0]
        program = resolve_command(self.config, name)  # what is checked is what runs: never looked up again
        try:
            result = run_program(
                (program, *action.argv[1:]),
                cwd=self.config.target_root,
                env=child_env(context),
                timeout=action.timeout,
                grace=self.kill_grace,
            )
        except OSError as exc:
            raise ActionError(f"cannot run {name}: {exc.strerror or exc}") from exc
        if result.timed_out:
            tail = printable(result.stderr)[-500:]
            raise ActionError(f"{name} timed out after {action.timeout:g}s" + (f": {tail}" if tail else ""))
        if result.returncode != 0:
            code = result.returncode
            how = f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited {code}"
            tail = printable(result.stderr) or printable(result.stdout)
            raise ActionError(f"{name} {how}" + (f": {tail}" if tail else ""))
        out = printable(result.stdout)
        return f"{name} exited 0 in {result.seconds:.2f}s" + (f": {out}" if out else "")

    # -- notify --

    def notifier(self) -> Notifier:
        if self._notifier is None:
            self._notifier = Notifier(self.config.notify_webhook)
            self._notifier.start()
            self._own_notifier = True
        return self._notifier

    def notify(self, webhook: str, context: Mapping[str, Any]) -> str:
        """Queue a JSON event for ``webhook``; never waits on the network, never fails the fix for it."""
        problem = webhook_problem(self.config, webhook)
        if problem:
            raise Refused(problem)
        event = {
            "source": "suture",
            "kind": "rollback" if context.get("rollback") else "fix",
            "fix_id": context.get("fix_id"),
            "playbook_id": context.get("playbook_id"),
            "labels": {str(k): str(v) for k, v in dict(context.get("labels") or {}).items()},
            "at": self.clock(),
        }
        try:
            queued = self.notifier().send(event, webhook=webhook)
        except ValueError as exc:
            raise ActionError(f"cannot notify: {exc}") from exc
        return "queued" if queued else "not sent: the notification queue is full (dropped, counted)"


def _started(attrs: Mapping[str, Any]) -> Any:
    return (attrs.get("State") or {}).get("StartedAt")


def read_pidfile(path: Path, limit: int = 64) -> tuple[int, float]:
    """(pid, mtime) from a pid file holding one integer and at most a newline; ActionError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ActionError(f"pid file {path} does not exist") from None
    except OSError as exc:
        raise ActionError(f"cannot open pid file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ActionError(f"pid file {path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if not _PIDFILE.fullmatch(data):
        shown = printable(data[:limit])
        raise ActionError(f"pid file {path} does not hold just a pid (read {shown!r})")
    pid = int(data)
    if pid <= 1:
        raise ActionError(f"pid file {path} holds pid {pid}; refusing to signal init or a process group")
    return pid, st.st_mtime


def _check_current(pidfile: str, pid: int, mtime: float, slack: float = 2.0) -> None:
    """Refuse a pid that was reused: a process started after its pid file was written is another one."""
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        raise ProcessLookupError(pid) from None
    except psutil.Error as exc:
        raise ActionError(f"{pidfile}: cannot inspect process {pid}: {exc}") from exc
    if zombie:
        raise ActionError(f"{pidfile}: process {pid} has already exited (a zombie)")
    if created > mtime + slack:
        raise ActionError(
            f"{pidfile} is older than process {pid} (written {created - mtime:.0f}s before it started): "
            "the pid was reused; refusing to signal a process the pid file does not describe"
        )
