"""`suture init`, end to end against a fresh app folder: what it writes passes check, replay and run."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from suture.engine.config import load_config
from suture.sidecar.demo import free_port
from suture.sidecar.init import (
    Answers,
    InitError,
    api_port,
    choose_allowed,
    choose_target_root,
    interview,
    plan,
    probe_url,
    restart_argv,
    self_check,
)
from suture.sidecar.init import write as write_files
from suture.sidecar.init_texts import modeline, texts, yaml_str

SUTURE = [sys.executable, "-m", "suture.sidecar.cli"]
BIN = Path(sys.executable).parent  # where the `suture` command the printed lines name is installed

CONFIGS = {  # format -> (file name under config/, text)
    "yaml": ("settings.yaml", "upstream:\n  timeout_s: 5\n"),
    "json": ("settings.json", '{"upstream": {"timeout_s": 5}}\n'),
    "toml": ("settings.toml", "[upstream]\ntimeout_s = 5\n"),
    "ini": ("settings.ini", "[upstream]\ntimeout_s = 5\n"),
    "env": (".env", "UPSTREAM_TIMEOUT_S=5\n"),
}

# twelve errors within a minute (error-burst), then three tracebacks within five (app-down)
LOG = "".join(
    [f"2026-11-25T10:00:{i:02d}Z ERROR could not process order {i}: upstream refused\n" for i in range(1, 13)]
    + [f"2026-11-25T10:0{i}:00Z ERROR unhandled\nTraceback (most recent call last):\n"
       '  File "/app/server.py", line 88, in handle\nValueError: bad order\n' for i in range(1, 4)]
)


def make_app(root: Path, fmt: str = "yaml") -> Path:
    """An app folder: config/<settings> in ``fmt`` and logs/app.log."""
    name, text = CONFIGS[fmt]
    (root / "config").mkdir(parents=True)
    (root / "config" / name).write_text(text)
    (root / "logs").mkdir()
    (root / "logs" / "app.log").write_text(LOG)
    return root


def init(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`suture init` with flags, without a terminal (stdin is not a TTY, as in CI)."""
    return subprocess.run([*SUTURE, "init", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)


def next_commands(stdout: str) -> list[str]:
    """The command lines init printed under "Next:"."""
    return [line.strip() for line in stdout.split("\nNext:\n", 1)[1].splitlines() if line.strip()]


def shell_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def typed(line: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a printed line as the user would: in a shell, in the folder init ran in."""
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=shell_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def health_url() -> Iterator[str]:
    """A real HTTP server answering 200 at /health."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return make_app(tmp_path / "app")


@pytest.fixture
def initialized(app: Path, health_url: str) -> tuple[Path, list[str], int]:
    """An app after `suture init --log 'logs/*.log' --app-config ... --url ... --port N`: (folder, commands, port)."""
    port = free_port()
    result = init("--log", "logs/*.log", "--app-config", "config/settings.yaml", "--url", health_url,
                  "--port", str(port), cwd=app)
    assert result.returncode == 0, result.stderr
    return app, next_commands(result.stdout), port


# --- end to end: init, then the three commands it prints -------------------------------


@pytest.mark.e2e
def test_init_prints_check_replay_and_run(initialized):
    """The three next commands, exactly as typed in the app folder."""
    _, commands, _ = initialized
    assert commands == [
        "suture check --run-examples --config suture.yaml",
        "suture replay logs/*.log --config suture.yaml",
        "suture run --config suture.yaml",
    ]


@pytest.mark.e2e
def test_the_printed_check_passes_with_every_example(initialized):
    """`suture check --run-examples` as printed: exit 0, both playbooks, every example passed."""
    app, commands, _ = initialized
    result = typed(commands[0], app)
    assert result.returncode == 0, result.stderr
    assert "2 playbook(s) ok" in result.stdout
    assert "examples: 17 of 17 passed" in result.stdout


@pytest.mark.e2e
def test_a_plain_check_passes_too(initialized):
    """`suture check --config suture.yaml`, the command README shows: exit 0."""
    app, _, _ = initialized
    result = subprocess.run([*SUTURE, "check", "--config", "suture.yaml"], cwd=app, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.e2e
def test_the_printed_replay_shows_both_playbooks_in_shadow(initialized):
    """`suture replay` as printed: the error burst and the tracebacks each fire once, recorded in shadow."""
    app, commands, _ = initialized
    result = typed(commands[1], app)
    assert result.returncode == 0, result.stderr
    shadow = [line for line in result.stdout.splitlines() if " SHADOW " in line]
    assert [line.split()[2] for line in shadow] == ["error-burst:", "app-down:"]
    assert "firings: app-down 1 (1 shadow); error-burst 1 (1 shadow)" in result.stdout


@pytest.mark.e2e
def test_the_printed_run_is_ready_and_stops_on_sigterm(initialized):
    """`suture run` as printed: its API answers health (the probe init wrote is healthy), SIGTERM ends it, exit 0."""
    app, commands, port = initialized
    proc = subprocess.Popen(["bash", "-c", f"exec {commands[2]}"], cwd=app, env=shell_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        health = _wait_healthy(f"http://127.0.0.1:{port}/api/monitoring/health", proc)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        took = time.monotonic() - start
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert health["checks"]["api"]["status"] == "healthy"
    assert proc.returncode == 0, err
    assert took < 3.0, f"took {took:.2f}s"


def _wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                body: dict[str, object] = json.load(resp)
            checks = body["checks"]
            assert isinstance(checks, dict)
            if body["overall_status"] == "healthy" and all(c["status"] == "healthy" for c in checks.values()):
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer healthy within {timeout}s")


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", sorted(CONFIGS))
def test_each_config_format_passes_check_with_its_examples(tmp_path, fmt):
    """YAML, JSON, TOML, INI and .env: init's output passes `suture check --run-examples`."""
    app = make_app(tmp_path / "app", fmt)
    result = init("--log", "logs/app.log", "--app-config", f"config/{CONFIGS[fmt][0]}", cwd=app)
    assert result.returncode == 0, result.stderr
    check = typed(next_commands(result.stdout)[0], app)
    assert check.returncode == 0, check.stderr
    assert "examples: 17 of 17 passed" in check.stdout  # the parser line of each format is one of them


@pytest.mark.e2e
def test_a_container_source_passes_check_and_replays_a_saved_log(app):
    """--container: the source follows it, fixes restart it (allowed implicitly), and the printed replay works."""
    result = init("--container", "shop", "--app-config", "config/settings.yaml", cwd=app)
    assert result.returncode == 0, result.stderr
    check, replay, _ = next_commands(result.stdout)
    assert typed(check, app).returncode == 0
    save, _, replay_only = replay.partition(" && ")
    assert save == "docker logs --timestamps shop > shop.log 2>&1"
    (app / "shop.log").write_text(LOG)  # what `docker logs` would have saved
    replayed = typed(replay_only, app)
    assert replayed.returncode == 0, replayed.stderr
    assert "firings: app-down 1 (1 shadow); error-burst 1 (1 shadow)" in replayed.stdout
    down = yaml.safe_load((app / "playbooks" / "app-down.yaml").read_text())
    assert down["fix"] == [{"restart": {"container": "shop"}}]


@pytest.mark.e2e
def test_init_refuses_to_overwrite_unless_forced(initialized):
    """A second init: exit 1, the files named and left as they are; with --force they are rewritten."""
    app, _, _ = initialized
    (app / "suture.yaml").write_text("# mine\n")
    again = init("--log", "logs/app.log", "--app-config", "config/settings.yaml", cwd=app)
    assert again.returncode == 1
    assert "suture.yaml, playbooks/error-burst.yaml, playbooks/app-down.yaml already exist" in again.stderr
    assert (app / "suture.yaml").read_text() == "# mine\n"
    forced = init("--log", "logs/app.log", "--app-config", "config/settings.yaml", "--force", cwd=app)
    assert forced.returncode == 0, forced.stderr
    assert "target_root: '.'" in (app / "suture.yaml").read_text()


BAD = {
    "missing config": (["--log", "logs/app.log", "--app-config", "config/nope.yaml"],
                       "app config config/nope.yaml does not exist"),
    "ftp url": (["--log", "logs/app.log", "--app-config", "config/settings.yaml", "--url", "ftp://example.com/"],
                "health URL 'ftp://example.com/' is not an http:// or https:// URL"),
    "log and container": (["--log", "logs/app.log", "--container", "shop", "--app-config", "config/settings.yaml"],
                          "give a log (--log) or a container (--container), not both"),
    "no flags": ([], "--log PATH|GLOB or --container NAME and --app-config FILE needed"),
    "bad container": (["--container", "shop;rm -rf", "--app-config", "config/settings.yaml"],
                      "container 'shop;rm -rf' is not a container name"),
    "log folder": (["--log", "logs", "--app-config", "config/settings.yaml"], "log logs is a folder"),
    "app dir elsewhere": (["--log", "logs/app.log", "--app-config", "config/settings.yaml", "--app-dir", "logs"],
                          "is not inside the app folder"),
    "unknown restart": (["--log", "logs/app.log", "--app-config", "config/settings.yaml",
                         "--restart-command", "no-such-program-here restart"], "'no-such-program-here' is not found"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_input_is_named_and_nothing_is_written(app, case):
    """Each wrong flag: exit 2, a message naming it, no file written."""
    flags, message = BAD[case]
    result = init(*flags, cwd=app)
    assert (result.returncode, message in result.stderr) == (2, True), result.stderr
    assert not (app / "suture.yaml").exists() and not (app / "playbooks").exists()


@pytest.mark.e2e
def test_a_log_that_matches_nothing_yet_is_a_warning(app):
    """A log glob with no file yet: warned, written, and it still passes check."""
    result = init("--log", "logs/later-*.log", "--app-config", "config/settings.yaml", cwd=app)
    assert result.returncode == 0, result.stderr
    assert "logs/later-*.log matches no file yet" in result.stderr
    assert typed(next_commands(result.stdout)[0], app).returncode == 0


@pytest.mark.e2e
def test_a_path_with_a_space_is_quoted_so_the_printed_replay_runs(tmp_path):
    """An app folder named "my app": the printed replay names the log so the shell passes it whole."""
    app = make_app(tmp_path / "my app")
    result = init("--log", f"{app}/logs/*.log", "--app-config", f"{app}/config/settings.yaml", "--config",
                  f"{app}/suture.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    replay = next_commands(result.stdout)[1]
    assert replay == f"suture replay 'my app/logs/app.log' --config '{app}/suture.yaml'"  # --config as typed
    assert typed(replay, tmp_path).returncode == 0


# --- interactive: answered through a pseudo-terminal -----------------------------------


class Terminal:
    """`suture init` on a pseudo-terminal: read until a prompt, type an answer."""

    def __init__(self, cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([*SUTURE, "init"], cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True)
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"{text!r} not seen in:\n{self.seen}")
            try:
                chunk = os.read(self.master, 4096).decode(errors="replace")
            except OSError:  # the child closed the terminal
                chunk = ""
            if not chunk:
                raise AssertionError(f"{text!r} not seen before the end:\n{self.seen}")
            self.seen += chunk
        return self.seen

    def answer(self, prompt: str, text: str) -> None:
        self.expect(prompt)
        self.seen = ""  # what follows is the next question's
        os.write(self.master, text.encode() + b"\n")

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # still waiting for an answer: the test failed before the end
            return self.proc.wait()
        finally:
            os.close(self.master)


@pytest.mark.e2e
def test_interactive_init_asks_with_defaults_and_asks_again_on_a_bad_answer(app):
    """At a terminal: guessed defaults, a missing file and an ftp URL re-asked, then written and checked."""
    port = free_port()
    term = Terminal(app)
    try:
        term.answer("App log: a file or glob, or container:NAME [logs/*.log]: ", "")
        term.answer("App config file (YAML, JSON, TOML, INI or .env) [config/settings.yaml]: ", "config/nope.yaml")
        term.answer("app config config/nope.yaml does not exist; try again", "")
        term.answer("Health URL to probe (http:// or https://; empty for none): ", "ftp://example.com/")
        term.answer("is not an http:// or https:// URL with a host; try again", "http://127.0.0.1:9/health")
        term.answer("Command that restarts the app (empty for none): ", "")
        term.answer("App folder (target_root: the playbooks' file paths are relative to it) [.]: ", "")
        term.answer("Port for suture's API on 127.0.0.1 [", str(port))
        term.expect("suture run --config suture.yaml")
    finally:
        code = term.close()
    assert code == 0
    config = load_config(app / "suture.yaml")
    assert (config.probes["api"].target, config.api.port) == ("http://127.0.0.1:9/health", port)
    assert config.sources["app"].file == str(app / "logs" / "*.log")


def test_interview_takes_a_container_answer(app):
    """container:NAME answers the log question; no restart command is asked for then."""
    asked: list[str] = []
    answers = iter(["container:shop", "config/settings.yaml", "", "", "8800"])

    def prompt(question: str) -> str:
        asked.append(question)
        return next(answers)

    got = interview(Answers(port=8765), app, app / "suture.yaml", prompt=prompt, out=io.StringIO())
    assert (got.container, got.log, got.port) == ("shop", None, 8800)
    assert not any("restarts" in q for q in asked)


# --- every combination of inputs, in process (the same pipeline as `suture check --run-examples`) ---


@pytest.mark.parametrize("fmt", sorted(CONFIGS))
@pytest.mark.parametrize("source", ["file", "container", "restart-command"])
@pytest.mark.parametrize("url", [None, "https://app.example.com/healthz"])
def test_every_combination_passes_the_check(tmp_path, fmt, source, url):
    """Format x source x probe: what init writes loads, every action is allowed, every example passes."""
    app = make_app(tmp_path / "app", fmt)
    answers = Answers(app_config=f"config/{CONFIGS[fmt][0]}", url=url,
                      log="logs/*.log" if source != "container" else None,
                      container="shop" if source == "container" else None,
                      restart_command="true --restart" if source == "restart-command" else None)
    setup = plan(answers, app / "suture.yaml", app)
    write_files(texts(setup), force=False, cwd=app)
    assert self_check(app / "suture.yaml") == []
    playbooks = {p.stem: yaml.safe_load(p.read_text()) for p in (app / "playbooks").glob("*.yaml")}
    assert {pb["mode"] for pb in playbooks.values()} == {"shadow"}
    assert {"fires", "ignores"} <= set(playbooks["error-burst"]["examples"]) & set(playbooks["app-down"]["examples"])


def test_allowed_paths_is_the_config_folder(app):
    """Fixes may change the config's folder and nothing else under target_root."""
    setup = plan(Answers(log="logs/*.log", app_config="config/settings.yaml"), app / "suture.yaml", app)
    write_files(texts(setup), force=False, cwd=app)
    config = load_config(app / "suture.yaml")
    assert (config.target_root, config.allowed_paths) == (app, (app / "config",))


def test_a_config_beside_suture_yaml_allows_only_itself(tmp_path):
    """When the config's folder also holds suture.yaml (and its playbooks), only the config file is allowed."""
    (tmp_path / "settings.toml").write_text("a = 1\n")
    assert choose_allowed(tmp_path / "settings.toml", tmp_path, None, tmp_path) == tmp_path / "settings.toml"


def test_target_root_is_the_common_parent_of_config_and_logs(tmp_path):
    """config/ and logs/ of one app folder: the app folder."""
    assert choose_target_root(tmp_path / "config" / "s.yaml", str(tmp_path / "logs" / "*.log"), tmp_path) == tmp_path


def test_target_root_is_the_config_folder_when_the_logs_are_far_away(tmp_path):
    """Logs in /var/log and the config under /tmp share only /: the config's folder is the root instead."""
    assert choose_target_root(tmp_path / "s.yaml", "/var/log/app/*.log", tmp_path) == tmp_path


def test_a_restart_command_needs_an_absolute_program(app):
    """A relative program path is refused: allowed_commands holds absolute paths."""
    with pytest.raises(InitError, match="is a relative path"):
        plan(Answers(log="logs/app.log", app_config="config/settings.yaml", restart_command="./restart.sh"),
             app / "suture.yaml", app)


@pytest.mark.parametrize(("check", "text", "message"), [
    (probe_url, "http://app/he\talth", "holds a space or a control character"),
    (probe_url, "http://app:99999/", "has an invalid port"),
    (probe_url, "localhost:8000", "is not an http:// or https:// URL"),
    (restart_argv, "systemctl restart shop && echo done", "&& would be passed to the program as text"),
    (api_port, "0", "is not a port number"),
])
def test_an_answer_init_cannot_use_says_why(check, text, message):
    """Each check refuses what it cannot write safely, naming the answer."""
    with pytest.raises(InitError, match=re.escape(message)):
        check(text)


def test_the_schema_modelines_resolve_from_where_they_are_written(initialized):
    """Each written file's yaml-language-server comment names a schema file that exists, relative to it."""
    app, _, _ = initialized
    for path in [app / "suture.yaml", *(app / "playbooks").glob("*.yaml")]:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        assert (path.parent / first.split("=", 1)[1]).resolve().is_file(), path


def test_no_modeline_when_the_schema_cannot_be_reached(tmp_path):
    """A schema that is not installed gives no comment rather than a dangling one."""
    assert modeline(tmp_path, "no-such") is None


@pytest.mark.parametrize("text", ["plain", "it's", "back\\slash", "#hash: colon", "new\nline", "tab\there", "ünï"])
def test_yaml_str_reads_back_as_itself(text):
    """Whatever the user typed, quoted into YAML, parses back to the same string."""
    assert yaml.safe_load(f"k: {yaml_str(text)}") == {"k": text}


@pytest.mark.e2e
def test_init_takes_a_baseline_so_restore_knows_a_good_version(initialized):
    """The app's config as it was at init is backed up, so the starters' restore has a version to put back."""
    app, commands, _ = initialized
    listed = subprocess.run([*SUTURE, "backups", "--config", "suture.yaml", "--json"], cwd=app, capture_output=True,
                            text=True, timeout=60)
    (manifest,) = json.loads(listed.stdout)
    assert (manifest["fix_id"], [f["path"] for f in manifest["files"]]) == ("baseline", ["config/settings.yaml"])
    burst = next(line for line in typed(commands[1], app).stdout.splitlines() if "error-burst:" in line)
    assert "would change nothing" in burst, burst  # the file is the baseline: restoring it changes nothing
    settings = app / "config" / "settings.yaml"
    settings.write_text(settings.read_text() + "# a later hand edit\n")
    burst = next(line for line in typed(commands[1], app).stdout.splitlines() if "error-burst:" in line)
    assert "no good version is known yet" not in burst and "the baseline suture init took" in burst, burst


def test_a_config_that_does_not_parse_gets_no_baseline(tmp_path):
    """A broken config is never recorded as the good version: init says so and takes no baseline."""
    app = make_app(tmp_path / "app")
    (app / "config" / "settings.yaml").write_text("upstream: [unclosed\n")
    result = init("--log", "logs/*.log", "--app-config", "config/settings.yaml", "--port", str(free_port()), cwd=app)
    assert "no baseline backup of config/settings.yaml: it does not parse now" in result.stderr
    assert not (app / ".suture" / "backups" / "manifests").exists()
