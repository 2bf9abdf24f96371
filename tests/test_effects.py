"""Effects: restart (container, pid file), exec and notify, against real containers, processes and servers."""

# The container fixtures are imported below until tests/conftest.py imports them; arguments naming
# them shadow the imports, which is how pytest fixtures work.

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import psutil
import pytest
from suture.engine.actions import EffectRunner
from suture.engine.backup import BackupStore
from suture.engine.config import Config
from suture.engine.confine import CHILD_PATH
from suture.engine.decide import decide
from suture.engine.errors import ActionError
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.playbook import Adjust, Exec, Learning, Notify, Restart, Stop, Where
from suture.engine.store import Store
from suture.sidecar.effects import Effects
from suture.sidecar.notify import Notifier
from suture.sidecar.programs import TAIL_BYTES, run_program

from .conftest import SETTINGS, Clock, playbook
from .containers import MakeContainer
from .test_notify import Webhook, webhook  # noqa: F401

AT = Where(file="pb.yaml", line=1, path="fix[0]")
FIX = {"fix_id": "f-20261126T013000Z-3fa2c1", "playbook_id": "restart-app", "labels": {}}
HOSTILE = [
    "$(id)",
    "`id`",
    "; rm -rf /",
    "{{ 7*7 }}",
    "${PATH}",
    "../../etc/shadow",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "nul\x00byte",
    "line\r\nInjected-Header: 1",
    "%s%n%x",
]
# Writes what the program saw (argv, environment, working folder) to saw.json in its working folder.
DUMP = "import json, os, sys; json.dump({'argv': sys.argv, 'env': dict(os.environ), 'cwd': os.getcwd()}, open('saw.json', 'w'))"


# The one container these tests act on (made and removed by each test), and the programs they run:
# what the config of this module allows (engine.confine refuses anything else).
CONTAINER = f"suture-test-effects-{secrets.token_hex(3)}"
PROGRAMS = (sys.executable, "/no/such/program", *(shutil.which(p, path=CHILD_PATH) or p for p in ("sh", "cat", "printf")))


@pytest.fixture
def config(config: Config) -> Config:
    """The shared test config, allowing this module's container, programs and the local webhook host."""
    return dataclasses.replace(config, allowed_containers=frozenset({CONTAINER, "suture-test-absent", "app"}),
                               allowed_commands=PROGRAMS, notify_allowed_hosts=("127.0.0.1",))


def exec_(*argv: str, timeout: float = 10.0) -> Exec:
    return Exec(argv=argv, timeout=timeout, at=AT)


@pytest.fixture
def effects(config: Config) -> Iterator[Effects]:
    """Effects on the test's target_root, with no container engine and no environment."""
    runner = Effects(config, env={}, kill_grace=0.3)
    yield runner
    runner.close(0.2)


# --- restart: container ------------------------------------------------------------------


@pytest.fixture
def engine_effects(config: Config, docker_api: docker.DockerClient) -> Effects:
    return Effects(config, docker_client=docker_api, env={})


def test_restart_brings_a_container_back_with_a_new_start(
    engine_effects: Effects,
    make_container: MakeContainer,
) -> None:
    """A running container is restarted and seen running again, with a new start time."""
    container = make_container(name=CONTAINER)
    before = container.attrs["State"]["StartedAt"]
    message = engine_effects.run(Restart(container=container.name, at=AT), FIX)
    container.reload()
    assert f"restarted container {container.name} (was running, now running, restart count" in message
    assert (container.status, container.attrs["State"]["StartedAt"] != before) == ("running", True)


def test_restart_starts_an_exited_container(engine_effects: Effects, make_container: MakeContainer) -> None:
    """A stopped container is started by a restart."""
    container = make_container(name=CONTAINER)
    container.stop(timeout=2)
    message = engine_effects.run(Restart(container=container.name, at=AT), FIX)
    assert "(was exited, now running" in message


def test_stop_ends_a_crash_loop_its_restart_policy_would_continue(
    engine_effects: Effects, make_container: MakeContainer
) -> None:
    """A container with restart policy `always` stays stopped after `stop`."""
    container = make_container(name=CONTAINER, restart_policy={"Name": "always"})
    message = engine_effects.run(Stop(container=container.name, timeout=1, at=AT), FIX)
    assert message == f"stopped container {container.name} (was running)"
    time.sleep(1.5)
    container.reload()
    assert container.status == "exited"


def test_stop_of_a_missing_container_is_an_action_error(engine_effects: Effects) -> None:
    """A container that does not exist: ActionError naming it."""
    with pytest.raises(ActionError, match="cannot stop container suture-test-absent: no such container"):
        engine_effects.run(Stop(container="suture-test-absent", at=AT), FIX)


def test_restart_of_a_missing_container_is_an_action_error(engine_effects: Effects) -> None:
    """A container that does not exist: ActionError naming it."""
    with pytest.raises(ActionError, match="cannot restart container suture-test-absent: no such container"):
        engine_effects.run(Restart(container="suture-test-absent", at=AT), FIX)


def test_restart_the_engine_refuses_is_an_action_error(
    engine_effects: Effects,
    make_container: MakeContainer,
) -> None:
    """The engine cannot start the container (its program is missing): ActionError with the engine's reason."""
    container = make_container(["/no/such/program"], name=CONTAINER, start=False)
    with pytest.raises(ActionError, match=r"the container engine refused \(HTTP 500\).*no/such/program"):
        engine_effects.run(Restart(container=container.name, at=AT), FIX)


def test_restart_uses_docker_url_from_the_config(
    config: Config,
    docker_url: str,
    make_container: MakeContainer,
) -> None:
    """Without an injected client, Effects connects to ``docker.url`` on first use."""
    container = make_container(name=CONTAINER)
    runner = Effects(dataclasses.replace(config, docker_url=docker_url), env={})
    try:
        assert "now running" in runner.run(Restart(container=container.name, at=AT), FIX)
    finally:
        runner.close()


def test_restart_falls_back_to_docker_host(config: Config, docker_url: str, make_container: MakeContainer) -> None:
    """With no ``docker.url``, DOCKER_HOST from the injected environment is used."""
    container = make_container(name=CONTAINER)
    runner = Effects(config, env={"DOCKER_HOST": docker_url})
    try:
        assert "now running" in runner.run(Restart(container=container.name, at=AT), FIX)
    finally:
        runner.close()


def test_an_unreachable_engine_is_an_action_error(config: Config, tmp_path: Path) -> None:
    """No engine at docker.url: ActionError naming the URL, not a docker SDK exception."""
    url = f"unix://{tmp_path}/no-engine.sock"
    runner = Effects(dataclasses.replace(config, docker_url=url), env={})
    with pytest.raises(ActionError, match=f"container engine at {url}"):
        runner.run(Restart(container="app", at=AT), FIX)


# --- restart: process by pid file --------------------------------------------------------


@pytest.fixture
def sleeper(target: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real ``sleep`` child and ``run/app.pid`` under target_root naming it."""
    proc = subprocess.Popen(["sleep", "30"])
    pidfile = target / "run" / "app.pid"
    pidfile.parent.mkdir()
    pidfile.write_text(f"{proc.pid}\n")
    yield proc, pidfile
    proc.kill()
    proc.wait()


def test_signal_goes_to_the_process_in_the_pidfile(
    effects: Effects, sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    """A relative pid file resolves under target_root; its process gets the signal."""
    proc, _ = sleeper
    message = effects.run(Restart(pidfile="run/app.pid", signal="SIGTERM", at=AT), FIX)
    assert proc.wait(5) == -signal.SIGTERM
    assert f"sent SIGTERM to process {proc.pid} (from run/app.pid)" == message


def test_an_absolute_pidfile_is_used_as_written(
    effects: Effects, sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    """An absolute pid file path is read where it says."""
    proc, pidfile = sleeper
    effects.run(Restart(pidfile=str(pidfile), signal="SIGHUP", at=AT), FIX)
    assert proc.wait(5) == -signal.SIGHUP


@pytest.mark.parametrize(
    "content", [b"", b"abc\n", b"12 13\n", b"12\n13\n", b"-5\n", b" 12\n", b"12abc", b"1e3", b"12\x00", b"9" * 11]
)
def test_a_pidfile_must_hold_just_a_pid(effects: Effects, target: Path, content: bytes) -> None:
    """Anything but digits and one optional newline is refused."""
    (target / "app.pid").write_bytes(content)
    with pytest.raises(ActionError, match="does not hold just a pid"):
        effects.run(Restart(pidfile="app.pid", at=AT), FIX)


@pytest.mark.parametrize("pid", ["0", "1"])
def test_pid_0_and_1_are_refused(effects: Effects, target: Path, pid: str) -> None:
    """init and 'the whole process group' are never signalled."""
    (target / "app.pid").write_text(pid)
    with pytest.raises(ActionError, match="refusing"):
        effects.run(Restart(pidfile="app.pid", at=AT), FIX)


def test_our_own_pid_is_refused(effects: Effects, target: Path) -> None:
    """A pid file naming suture itself is refused."""
    (target / "app.pid").write_text(f"{os.getpid()}\n")
    with pytest.raises(ActionError, match="suture's own pid"):
        effects.run(Restart(pidfile="app.pid", at=AT), FIX)


def test_a_pid_without_a_process_is_an_action_error(effects: Effects, target: Path) -> None:
    """The process named has exited: ActionError, nothing signalled."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    (target / "app.pid").write_text(f"{gone.pid}\n")
    with pytest.raises(ActionError, match=f"no process {gone.pid}"):
        effects.run(Restart(pidfile="app.pid", at=AT), FIX)


def test_a_pidfile_older_than_its_process_is_refused(
    effects: Effects, sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    """A pid file written before its process started names a reused pid: refused, process untouched."""
    proc, pidfile = sleeper
    old = time.time() - 3600
    os.utime(pidfile, (old, old))
    with pytest.raises(ActionError, match="pid was reused"):
        effects.run(Restart(pidfile="run/app.pid", at=AT), FIX)
    assert proc.poll() is None


@pytest.mark.parametrize(
    ("pidfile", "message"),
    [("missing.pid", "does not exist"), ("../app.pid", "must not contain '..'"), ("run", "not a regular file")],
)
def test_a_pidfile_that_cannot_be_read_is_an_action_error(
    effects: Effects, sleeper: tuple[subprocess.Popen[bytes], Path], pidfile: str, message: str
) -> None:
    """Missing, escaping target_root, or not a file: ActionError."""
    with pytest.raises(ActionError, match=message):
        effects.run(Restart(pidfile=pidfile, at=AT), FIX)


def test_a_pidfile_that_is_a_link_is_refused(effects: Effects, sleeper: tuple[subprocess.Popen[bytes], Path]) -> None:
    """The pid file itself must not be a symlink (it could point anywhere)."""
    proc, pidfile = sleeper
    (pidfile.parent / "link.pid").symlink_to(pidfile)
    with pytest.raises(ActionError, match="cannot open pid file"):
        effects.run(Restart(pidfile="run/link.pid", at=AT), FIX)
    assert proc.poll() is None


# --- exec ---------------------------------------------------------------------------------


def test_exec_runs_in_target_root_and_returns_its_output(effects: Effects, config: Config) -> None:
    """The program runs with target_root as its working folder; its output ends the message."""
    message = effects.run(exec_(sys.executable, "-c", "import os; print(os.getcwd())"), FIX)
    assert message.startswith(f"{sys.executable} exited 0 in ")
    assert message.endswith(f": {config.target_root}")


def test_exec_environment_is_minimal(effects: Effects, config: Config) -> None:
    """The program's whole environment: PATH, LANG and suture's ids."""
    effects.run(exec_(sys.executable, "-c", DUMP), FIX)
    saw = json.loads((config.target_root / "saw.json").read_text())
    assert {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "SUTURE_FIX_ID": FIX["fix_id"],
        "SUTURE_PLAYBOOK_ID": FIX["playbook_id"],
    } == saw["env"]


def test_a_nonzero_exit_names_the_code_and_the_end_of_stderr(effects: Effects) -> None:
    """Exit status 3: ActionError with the code and what the program said last."""
    with pytest.raises(ActionError, match=r"^sh exited 3: the first words \| the last words$"):
        effects.run(
            exec_("sh", "-c", "echo starting; echo 'the first words' >&2; echo 'the last words' >&2; exit 3"), FIX
        )


def test_a_program_killed_by_a_signal_says_so(effects: Effects) -> None:
    """Death by signal is named, not shown as a negative exit code."""
    with pytest.raises(ActionError, match="sh was killed by SIGKILL"):
        effects.run(exec_("sh", "-c", "kill -9 $$"), FIX)


def test_a_timeout_kills_the_whole_process_group(effects: Effects, config: Config) -> None:
    """Past its timeout the program and the children it started are killed."""
    with pytest.raises(ActionError, match=r"^sh timed out after 1s"):
        effects.run(exec_("sh", "-c", "sleep 30 & echo $! > child.pid; wait", timeout=1.0), FIX)
    child = int((config.target_root / "child.pid").read_text())
    assert not _alive(child)


def test_a_program_ignoring_sigterm_is_killed_after_the_grace(effects: Effects) -> None:
    """SIGTERM ignored: SIGKILL follows after the grace period, so a timeout always ends."""
    start = time.monotonic()
    with pytest.raises(ActionError, match="timed out"):
        effects.run(exec_("sh", "-c", "trap '' TERM; sleep 30", timeout=0.3), FIX)
    assert time.monotonic() - start < 3.0


def test_output_kept_is_the_last_4_kib(config: Config) -> None:
    """A megabyte of output: only the last 4 KiB are kept."""
    result = run_program(
        [sys.executable, "-c", "print('x' * 1_000_000 + 'END')"], cwd=config.target_root, env={}, timeout=10
    )
    assert (result.returncode, len(result.stdout)) == (0, TAIL_BYTES)
    assert result.stdout.endswith(b"xEND\n")


def test_stdin_is_empty(effects: Effects) -> None:
    """A program reading stdin sees end of file at once, never the sidecar's terminal."""
    assert effects.run(exec_("cat"), FIX).startswith("cat exited 0")


def test_a_missing_program_is_an_action_error(effects: Effects) -> None:
    """A program that does not exist: ActionError."""
    with pytest.raises(ActionError, match="cannot run /no/such/program"):
        effects.run(exec_("/no/such/program"), FIX)


def test_a_child_left_running_does_not_hold_the_fix(effects: Effects) -> None:
    """A program that exits leaving a child holding its output returns at once."""
    start = time.monotonic()
    message = effects.run(exec_("sh", "-c", "sleep 5 & echo $!"), FIX)
    assert time.monotonic() - start < 2.0
    os.kill(int(message.rpartition(": ")[2]), signal.SIGKILL)


def test_output_control_characters_are_escaped(effects: Effects) -> None:
    """Escape sequences in a program's output reach the journal escaped, not raw."""
    message = effects.run(exec_("printf", "\\033[31mred\\033[0m"), FIX)
    assert message.endswith(": \\x1b[31mred\\x1b[0m")


# --- hostile context (SAFETY 12) ----------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_labels_never_reach_argv_environment_or_folder(effects: Effects, config: Config, text: str) -> None:
    """Labels from log lines change nothing about what runs: argv as written, fixed env, target_root."""
    argv = (sys.executable, "-c", DUMP, "{label}", "$user")
    effects.run(exec_(*argv), {**FIX, "labels": {"user": text, text: text}})
    saw = json.loads((config.target_root / "saw.json").read_text())
    assert saw["argv"] == ["-c", "{label}", "$user"]  # python -c: argv[0] is "-c"
    assert {"PATH", "LANG", "SUTURE_FIX_ID", "SUTURE_PLAYBOOK_ID"} == set(saw["env"])
    assert str(config.target_root) == saw["cwd"]
    assert not any(text in value for value in saw["env"].values())


@pytest.mark.parametrize("text", HOSTILE)
def test_ids_that_suture_did_not_make_stay_out_of_the_environment(effects: Effects, config: Config, text: str) -> None:
    """A fix or playbook id that is not a plain id is not passed to the program."""
    effects.run(exec_(sys.executable, "-c", DUMP), {"fix_id": text, "playbook_id": text, "labels": {}})
    saw = json.loads((config.target_root / "saw.json").read_text())
    assert {"PATH", "LANG"} == set(saw["env"])


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_labels_do_not_change_the_pidfile(
    effects: Effects, sleeper: tuple[subprocess.Popen[bytes], Path], text: str
) -> None:
    """The pid file is the playbook's, whatever the labels say."""
    proc, _ = sleeper
    effects.run(Restart(pidfile="run/app.pid", signal="SIGTERM", at=AT), {**FIX, "labels": {"pidfile": text}})
    assert proc.wait(5) == -signal.SIGTERM


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_labels_travel_only_as_json_data(config: Config, webhook: Webhook, text: str) -> None:
    """In a notification, labels are JSON strings in the body; the URL is the playbook's, untouched."""
    notifier = Notifier()
    notifier.start()
    runner = Effects(config, notifier=notifier, env={})
    try:
        runner.run(Notify(webhook=f"{webhook.url}/hook?team=ops", at=AT), {**FIX, "labels": {"user": text}})
        (request,) = webhook.wait_for(1)
    finally:
        notifier.stop(1.0)
    assert request.path == "/hook?team=ops"
    assert {"user": text} == request.json()["labels"]  # type: ignore[index]
    assert all(32 <= b < 127 for b in request.body)  # escaped: no control bytes on the wire


# --- notify ---------------------------------------------------------------------------------


def test_notify_returns_queued_without_waiting(config: Config, webhook: Webhook) -> None:
    """Notify hands the event over and returns at once, even when the webhook hangs."""
    webhook.then = None
    notifier = Notifier(timeout=30)
    notifier.start()
    runner = Effects(config, notifier=notifier, env={})
    try:
        runner.run(Notify(webhook=webhook.url, at=AT), FIX)
        webhook.wait_for(1)
        start = time.monotonic()
        assert runner.run(Notify(webhook=webhook.url, at=AT), FIX) == "queued"
        assert time.monotonic() - start < 0.5
    finally:
        notifier.stop(0.2)


def test_a_full_notification_queue_does_not_fail_the_fix(config: Config, webhook: Webhook) -> None:
    """A dropped notification is reported, not raised: an alert never rolls a fix back."""
    runner = Effects(config, notifier=Notifier(max_queue=1), env={})
    runner.run(Notify(webhook=webhook.url, at=AT), FIX)
    assert runner.run(Notify(webhook=webhook.url, at=AT), FIX).startswith("not sent")


def test_notify_event_describes_the_fix(config: Config, webhook: Webhook, clock: Clock) -> None:
    """The body names the fix, the playbook, the labels, whether it is a rollback, and when."""
    runner = Effects(config, env={}, clock=clock)
    runner.run(Notify(webhook=webhook.url, at=AT), {**FIX, "labels": {"host": "db1"}, "rollback": True})
    (request,) = webhook.wait_for(1)
    runner.close(1.0)
    assert {
        "source": "suture",
        "kind": "rollback",
        "fix_id": FIX["fix_id"],
        "playbook_id": "restart-app",
        "labels": {"host": "db1"},
        "at": clock.now,
    } == request.json()


# --- as the executor's effect runner ----------------------------------------------------------


def test_file_actions_are_not_effects(effects: Effects) -> None:
    """Effects refuses a file action: those are planned and written by the executor."""
    runner: EffectRunner = effects
    with pytest.raises(ActionError, match="is a file action"):
        runner.run(Adjust(file="config/settings.yaml", key="a", op="add", amount=1, at=AT), FIX)


FIX_THEN_EXEC = """
    id: delay-then-reload
    when: {{log: {{source: app, pattern: 'x', at_least: 1, within: 10s}}}}
    confidence: 95
    fix:
      - adjust: {{file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2}}
      - exec: {{argv: [sh, -c, '{script}'], timeout: 5s}}
    validate: {{window: 10s, expect: [{{log: {{source: app, pattern: 'x', at_most: 0}}}}]}}
"""


@pytest.fixture
def start_fix(config: Config, effects: Effects, clock: Clock) -> Iterator[Callable[[str], FixRun | Outcome]]:
    """Start a playbook whose fix edits settings.yaml then runs ``sh -c SCRIPT``, through a real Executor."""
    store = Store.open(config.db_path)
    executor = Executor(config=config, store=store, backups=BackupStore(config.state_dir / "backups"), effects=effects)

    def start(script: str) -> FixRun | Outcome:
        pb = playbook(FIX_THEN_EXEC.format(script=script))
        decision = decide(
            pb,
            key="",
            labels={"user": "$(id)"},
            outcomes=store.outcomes(pb.id),
            gate=store.gate(pb.id, "", clock()),
            threshold=85,
            learning=Learning(),
            fixes_per_hour=100,
            now=clock(),
        )
        return executor.start(pb, decision, now=clock())

    yield start
    store.close()


def test_the_executor_runs_exec_after_the_edit(start_fix: Callable[[str], FixRun | Outcome], target: Path) -> None:
    """Through the executor, the exec runs after the edit, with the fix's id in its environment."""
    run = start_fix("echo $SUTURE_FIX_ID > reloaded")
    assert isinstance(run, FixRun)
    assert run.fix_id == (target / "reloaded").read_text().strip()
    assert "request_delay_s:   1.0" in (target / "config/settings.yaml").read_text()


def test_a_failing_exec_rolls_the_edit_back(start_fix: Callable[[str], FixRun | Outcome], target: Path) -> None:
    """Through the executor, an exec exiting non-zero fails the fix and restores the file."""
    outcome = start_fix("echo no reload >&2; exit 4")
    assert isinstance(outcome, Outcome)
    assert (outcome.status, outcome.detail) == ("failed", "apply failed: sh exited 4: no reload")
    assert (target / "config/settings.yaml").read_text() == SETTINGS


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
