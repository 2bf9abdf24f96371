"""The `suture` command, run as users run it: in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from suture.engine.backup import BackupStore
from suture.sidecar.demo import demo_source, free_port

from .test_sidecar import DemoWorld

SUTURE = [sys.executable, "-m", "suture.sidecar.cli"]
REPO = Path(__file__).resolve().parents[1]


def suture(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SUTURE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    root = tmp_path / "demo"
    shutil.copytree(demo_source(), root, ignore=shutil.ignore_patterns("__pycache__", ".suture", "logs"))
    (root / "logs").mkdir()
    cfg = (root / "suture.yaml").read_text().replace("127.0.0.1:8765", f"127.0.0.1:{free_port()}")
    (root / "suture.yaml").write_text(cfg)
    return root


def test_check_passes_the_demo_playbooks(demo):
    """A valid set: exit 0 and a count."""
    result = suture("check", "--config", str(demo / "suture.yaml"))
    assert result.returncode == 0, result.stderr
    assert "1 playbook(s) ok" in result.stdout


def test_check_fails_with_file_and_line(demo):
    """A broken playbook: exit 1, and each problem as file:line:col: message (at path)."""
    bad = demo / "playbooks" / "broken.yaml"
    bad.write_text("id: broken\nwhen:\n  log: {source: nowhere, pattern: '(', within: soon}\n")
    result = suture("check", "--config", str(demo / "suture.yaml"))
    assert result.returncode == 1
    assert "broken.yaml:3:" in result.stderr
    assert "(at when.log.within)" in result.stderr


def test_check_json_is_machine_readable(demo):
    """--json prints every problem as an object."""
    (demo / "playbooks" / "broken.yaml").write_text("id: x\n")
    result = suture("check", "--json", "--config", str(demo / "suture.yaml"))
    body = json.loads(result.stdout)
    assert result.returncode == 1 and body["ok"] is False
    assert {"file", "line", "column", "path", "message"} <= set(body["problems"][0])


def test_a_config_error_names_the_key(demo):
    """A bad config is exit 2 with file:line and the key."""
    (demo / "suture.yaml").write_text("target_root: .\nthreshold: high\n")
    result = suture("history", "--config", str(demo / "suture.yaml"))
    assert result.returncode == 2
    assert "suture.yaml:2:" in result.stderr and "(at threshold)" in result.stderr


def _start(demo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*SUTURE, "run", "--config", str(demo / "suture.yaml")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen[str], needle: str, timeout: float = 20) -> str:
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not seen in:\n{''.join(seen)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_within_two_seconds(demo, sig):
    """SIGTERM and Ctrl-C (SIGINT) end `suture run` with exit 0 in under 2 s."""
    proc = _start(demo)
    try:
        _wait_for(proc, "loaded")
        start = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=5)
        took = time.monotonic() - start
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0
    assert took < 2.0, f"took {took:.2f}s"


def test_history_backups_and_rollback_after_a_real_fix(tmp_path):
    """After a fix: history as table and JSON, the backup listed, and rollback restores it."""
    w = DemoWorld(tmp_path / "w")
    original = w.settings.read_bytes()
    w.start()
    try:
        assert w.wait_final().kind == "succeeded"
    finally:
        w.stop()
    cfg = str(w.root / "suture.yaml")

    table = suture("history", "--config", cfg, "--sql", "SELECT playbook_id, status FROM fixes")
    assert table.returncode == 0, table.stderr
    assert "rate-limit-backoff  succeeded" in table.stdout and "(1 row)" in table.stdout

    rows = json.loads(suture("history", "--json", "--config", cfg).stdout)
    assert rows[0]["status"] == "succeeded" and rows[0]["backup_id"].startswith("b-")

    listed = suture("backups", "--config", cfg)
    assert rows[0]["backup_id"] in listed.stdout

    restored = suture("rollback", rows[0]["backup_id"], "--config", cfg)
    assert restored.returncode == 0, restored.stderr
    assert w.settings.read_bytes() == original


def test_rollback_refuses_a_file_changed_since_unless_forced(tmp_path):
    """A person edited the file after the fix: refused (exit 1) unless --force."""
    w = DemoWorld(tmp_path / "w")
    original = w.settings.read_bytes()
    w.start()
    try:
        assert w.wait_final().kind == "succeeded"
    finally:
        w.stop()
    cfg = str(w.root / "suture.yaml")
    (backup,) = BackupStore(w.root / ".suture" / "backups").all()
    w.settings.write_text("# hand edit\n")
    refused = suture("rollback", backup.id, "--config", cfg)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert w.settings.read_text() == "# hand edit\n"
    forced = suture("rollback", backup.id, "--force", "--config", cfg)
    assert forced.returncode == 0 and w.settings.read_bytes() == original


def test_history_refuses_a_missing_state_dir(demo):
    """No history yet: a clear message, exit 1."""
    result = suture("history", "--config", str(demo / "suture.yaml"))
    assert result.returncode == 1 and "no history yet" in result.stderr


@pytest.mark.slow
def test_plain_pip_install_gives_a_working_command(tmp_path):
    """`pip install .` of the checkout installs `suture` with its schemas, playbooks and demo."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], capture_output=True, text=True,
                         timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    exe = venv / "bin" / "suture"
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copytree(demo_source() / "playbooks", other / "playbooks")
    result = subprocess.run([str(exe), "check", "playbooks"], cwd=other, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    found = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "from suture.sidecar.demo import demo_source; from suture.engine.documents import schema_dir;"
                            "print(demo_source(), schema_dir())"], cwd=other, capture_output=True, text=True)
    assert str(venv) in found.stdout, found.stdout + found.stderr


def test_readme_reference_matches_the_schema():
    """The playbook reference in docs/playbooks.md is the one generated from the schema (no drift)."""
    from suture.sidecar.reference import readme_section, render_reference

    readme = (REPO / "docs" / "playbooks.md").read_text()
    assert readme_section(readme) == render_reference(), "run: python -m suture.sidecar.reference --write"


def test_check_says_which_engine_matches_each_pattern(demo):
    """A pattern hyperscan cannot run alone (it matches the empty line) is named, with its engine."""
    (demo / "playbooks" / "empty.yaml").write_text(
        "id: empty-lines\nwhen: {log: {source: app, pattern: '^$', at_least: 100, within: 1m}}\nconfidence: 10\n"
        "mode: shadow\nfix: [{restore: {file: config/settings.yaml}}]\n"
        "validate: {window: 1m, expect: [{log: {source: app, pattern: 'x'}}]}\n"
    )
    result = suture("check", "--config", str(demo / "suture.yaml"))
    assert result.returncode == 0, result.stderr
    assert "empty.yaml:2: pattern /^$/ runs on re: " in result.stdout
    verbose = suture("check", "-v", "--config", str(demo / "suture.yaml"))
    assert "/429 .*Too Many Requests/ runs on hyperscan" in verbose.stdout


# --- `suture check` on a config that does not load (issue 13 item 4) ---------------------

BROKEN_CONFIGS = {
    "schema": "target_root: .\nthreshold: high\nsourcs: {}\n",
    "yaml": "target_root: .\nsources: {app: {file: app.log}\n",
    "semantic": "target_root: .\nallowed_paths: [../etc]\nprobes: {api: {http: 'http://x/', interval: soon}}\n",
}


def _problems_of(config: Path) -> list[str]:
    from suture.engine.config import load_config
    from suture.engine.errors import DocumentError

    try:
        load_config(config)
    except DocumentError as exc:
        return [p.render() for p in exc.problems]
    raise AssertionError(f"{config} loaded")


@pytest.mark.parametrize("kind", sorted(BROKEN_CONFIGS))
def test_check_reports_every_problem_of_a_config_that_does_not_load(tmp_path, kind):
    """`suture check --config FILE` (no paths) on a broken config: each problem as file:line, exit 1."""
    (tmp_path / "suture.yaml").write_text(BROKEN_CONFIGS[kind])
    expected = _problems_of(tmp_path / "suture.yaml")
    result = suture("check", "--config", str(tmp_path / "suture.yaml"))
    assert result.returncode == 1, result.stderr
    assert [line for line in expected if line not in result.stderr] == []
    assert "name playbook files or folders" not in result.stderr


def test_check_reports_a_broken_config_beside_its_playbooks(demo):
    """With playbook paths too, the config's problems are still reported, and the exit is 1."""
    (demo / "suture.yaml").write_text(BROKEN_CONFIGS["schema"])
    expected = _problems_of(demo / "suture.yaml")
    result = suture("check", "--config", str(demo / "suture.yaml"), str(demo / "playbooks"))
    assert result.returncode == 1
    assert [line for line in expected if line not in result.stderr] == []


def test_check_reports_the_default_config_when_it_does_not_load(tmp_path):
    """`suture check` alone in a folder whose suture.yaml is broken: its problems at file:line, exit 1."""
    (tmp_path / "suture.yaml").write_text(BROKEN_CONFIGS["schema"])
    result = suture("check", cwd=tmp_path)
    assert result.returncode == 1
    assert "suture.yaml:2:12: expected a number, got a string 'high' (at threshold)" in result.stderr
    assert "suture.yaml:3:1: unknown key 'sourcs' (did you mean 'sources'?) (at sourcs)" in result.stderr


def test_check_json_lists_the_problems_of_a_config_that_does_not_load(tmp_path):
    """--json on a broken config: ok false, every problem as an object, exit 1."""
    (tmp_path / "suture.yaml").write_text(BROKEN_CONFIGS["schema"])
    result = suture("check", "--json", "--config", str(tmp_path / "suture.yaml"))
    body = json.loads(result.stdout)
    assert (result.returncode, body["ok"]) == (1, False)
    assert [(p["path"], p["line"]) for p in body["problems"]] == [("threshold", 2), ("sourcs", 3)]


def test_check_reports_a_named_config_that_does_not_exist(tmp_path):
    """A --config that is not there fails to load like any other: named, exit 1."""
    result = suture("check", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory" in result.stderr


def test_check_without_config_or_paths_is_still_a_usage_error(tmp_path):
    """No ./suture.yaml and no paths: nothing to check, exit 2 with the usage hint."""
    result = suture("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "name playbook files or folders" in result.stderr


def test_the_readme_playbook_is_a_valid_playbook():
    """The playbook shown on the front page loads (schema and model) as it is written."""
    import re

    from suture.engine.loader import parse_playbook

    (block,) = re.findall(r"```yaml\n(id: .*?)```", (REPO / "README.md").read_text(), re.S)
    assert parse_playbook(block, "README.md").id == "rate-limit-backoff"


def test_every_command_the_readme_shows_exists():
    """Each `suture <command>` in the README's shell blocks is a real subcommand."""
    import re

    readme = (REPO / "README.md").read_text()
    shown = {m for block in re.findall(r"```sh\n(.*?)```", readme, re.S) for m in re.findall(r"^suture (\w+)", block, re.M)}
    helptext = subprocess.run([*SUTURE, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert shown and {c for c in shown if not re.search(rf"^    {c}\b", helptext, re.M)} == set()
