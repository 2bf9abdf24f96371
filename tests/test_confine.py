"""Every action is confined like a file edit: containers, programs and webhook hosts outside their allowlists
are refused when the playbook loads (file:line) and again when the fix runs (SAFETY 19)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from suture.engine.config import Config
from suture.engine.config_notify import host_entry
from suture.engine.confine import (
    CHILD_PATH,
    Refused,
    address_problem,
    container_problem,
    webhook_problem,
)
from suture.engine.loader import load_playbooks
from suture.engine.playbook import Exec, Notify, Restart, Stop, Where
from suture.sidecar.effects import Effects
from suture.sidecar.notify import Notifier, _checked_address

from .conftest import dedent, write_config
from .containers import MakeContainer
from .test_notify import Webhook, webhook  # noqa: F401 (fixture)

AT = Where(file="pb.yaml", line=1, path="fix[0]")
FIX = {"fix_id": "f-20261126T013000Z-3fa2c1", "playbook_id": "pb", "labels": {}}
SH = shutil.which("sh", path=CHILD_PATH)


def problems_of(config: Config, fix: str, *, on_rollback: str = "") -> list[str]:
    """Load one playbook with ``fix`` (YAML flow list) against ``config``; its problems, rendered."""
    path = config.playbooks / "pb.yaml"
    path.write_text(dedent(f"""
        id: pb
        when: {{log: {{source: app, pattern: BOOM}}}}
        confidence: 90
        fix: {fix}
        validate: {{window: 1m, expect: [{{log: {{source: app, pattern: BOOM, at_most: 0}}}}]}}
        """) + (f"on_rollback: {on_rollback}\n" if on_rollback else ""))
    return [p.render() for p in load_playbooks([config.playbooks], config).problems]


# --- at load time: suture check and every reload ------------------------------------------------


def test_a_container_outside_allowed_containers_is_refused_at_its_line(config: Config) -> None:
    """restart of a container nobody allowed: the problem names the file, line, YAML path and the fix."""
    (problem,) = problems_of(config, "[{restart: {container: db}}]")
    assert problem.startswith(f"{config.playbooks / 'pb.yaml'}:4:")
    assert "container 'db' is not in allowed_containers (allowed: none)" in problem
    assert problem.endswith("(at fix[0].restart.container)")


def test_stop_is_confined_like_restart(config: Config) -> None:
    """stop of a container outside the allowlist is refused too."""
    (problem,) = problems_of(config, "[{stop: {container: db}}]")
    assert "container 'db' is not in allowed_containers" in problem and "(at fix[0].stop.container)" in problem


def test_a_container_a_source_follows_is_allowed_without_listing_it(tmp_path: Path, target: Path) -> None:
    """The containers named in sources are the sidecar's own app: restarting them needs no allowlist entry."""
    config = write_config(tmp_path, target, extra="""
        allowed_containers: [cache]
        """)
    config = dataclasses.replace(config, sources={**config.sources, "worker": dataclasses.replace(
        config.sources["app"], name="worker", file=None, container="worker")})
    assert problems_of(config, "[{restart: {container: worker}}, {stop: {container: cache}}]") == []


def test_a_program_outside_allowed_commands_is_refused_at_argv0(config: Config) -> None:
    """exec of a program nobody allowed: refused at fix[0].exec.argv[0]."""
    (problem,) = problems_of(config, "[{exec: {argv: [/usr/bin/curl, http://x]}}]")
    assert "program /usr/bin/curl is not in allowed_commands (allowed: none)" in problem
    assert problem.endswith("(at fix[0].exec.argv[0])")


def test_a_bare_program_name_is_resolved_in_the_child_path_and_must_be_allowed(tmp_path: Path, target: Path) -> None:
    """argv[0] 'sh' resolves (in the fixed PATH programs run with) to an absolute path, which must be listed."""
    refused = problems_of(write_config(tmp_path, target), "[{exec: {argv: [sh, -c, 'true']}}]")
    assert [f"'sh' resolves to {SH}" in p for p in refused] == [True]
    allowed = write_config(tmp_path, target, extra=f"allowed_commands: [{SH}]\n")
    assert problems_of(allowed, "[{exec: {argv: [sh, -c, 'true']}}]") == []


@pytest.mark.parametrize(("argv0", "says"), [("./bin/reload", "relative path"), ("no-such-program-x", "not found in the PATH")])
def test_relative_and_unknown_programs_are_refused(config: Config, argv0: str, says: str) -> None:
    """A relative path or a name not found cannot be confined, so it is refused."""
    (problem,) = problems_of(config, f"[{{exec: {{argv: ['{argv0}']}}}}]")
    assert says in problem


def test_a_webhook_to_a_cloud_metadata_address_fails_check(config: Config) -> None:
    """The issue's example: a webhook to 169.254.169.254 passed `suture check`; now it is refused."""
    (problem,) = problems_of(config, "[{notify: {webhook: 'http://169.254.169.254/latest/meta-data/'}}]")
    assert "webhook host 169.254.169.254:80 is not in notify.allowed_hosts (allowed: none)" in problem
    assert problem.endswith("(at fix[0].notify.webhook)")


def test_on_rollback_actions_are_confined_too(config: Config) -> None:
    """An on_rollback effect is checked like a fix's."""
    (problem,) = problems_of(config, "[{adjust: {file: config/settings.yaml, key: a, add: 1}}]",
                             on_rollback="[{restart: {container: db}}]")
    assert "(at on_rollback[0].restart.container)" in problem


def test_a_file_action_in_on_rollback_is_refused(config: Config) -> None:
    """on_rollback runs after the files are restored: a file action there is a mistake, said so at its line."""
    (problem,) = problems_of(config, "[{adjust: {file: config/settings.yaml, key: a, add: 1}}]",
                             on_rollback="[{restore: {file: config/settings.yaml}}]")
    assert "on_rollback runs after the fix's files are restored" in problem and "(at on_rollback[0].restore)" in problem


def test_suture_check_exits_nonzero_naming_the_line(tmp_path: Path, target: Path) -> None:
    """The CLI: a playbook that restarts an unlisted container fails `suture check` with file:line."""
    config = write_config(tmp_path, target)
    problems_of(config, "[{restart: {container: db}}]")
    result = subprocess.run([sys.executable, "-m", "suture.sidecar.cli", "check", "--config", str(config.file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "pb.yaml:4:" in result.stdout + result.stderr and "allowed_containers" in result.stdout + result.stderr


# --- the rules themselves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "url", "allowed"),
    [
        (("hooks.example.com",), "https://hooks.example.com/x", True),
        (("hooks.example.com",), "https://HOOKS.example.com:8443/x", True),  # no port: any port of the host
        (("hooks.example.com:443",), "https://hooks.example.com/x", True),  # the scheme's default port
        (("hooks.example.com:443",), "http://hooks.example.com/x", False),
        (("hooks.example.com",), "https://hooks.example.com.evil.test/x", False),
        (("hooks.example.com",), "https://evil.test/?u=hooks.example.com", False),
        (("hooks.example.com",), "https://hooks.example.com@evil.test/x", False),  # userinfo is not the host
        (("[::1]:9000",), "http://[::1]:9000/x", True),
        (("[::1]:9000",), "http://[::1]:9001/x", False),
        ((), "https://hooks.example.com/x", False),
    ],
)
def test_webhook_hosts_match_exactly(config: Config, entries: tuple[str, ...], url: str, allowed: bool) -> None:
    """A host matches by name (case-insensitive), and by port when the entry gives one; nothing else matches."""
    cfg = dataclasses.replace(config, notify_allowed_hosts=entries)
    assert (webhook_problem(cfg, url) is None) is allowed


def test_the_configured_webhook_host_is_allowed(config: Config) -> None:
    """notify.webhook in suture.yaml is the operator's own choice: its host needs no allowlist entry."""
    cfg = dataclasses.replace(config, notify_webhook="https://alerts.example.org/suture")
    assert webhook_problem(cfg, "https://alerts.example.org/other") is None


def test_host_entries_are_read_as_the_schema_writes_them() -> None:
    """host, host:port, [v6], [v6]:port."""
    assert [host_entry(e) for e in ("A.example", "a.example:80", "[::1]", "[fd00::1]:9")] == [
        ("a.example", None), ("a.example", 80), ("::1", None), ("fd00::1", 9)]


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "fd00:ec2::254"])
def test_a_name_resolving_to_a_metadata_address_is_refused(address: str) -> None:
    """Link-local and cloud metadata addresses are refused unless the allowlist names the address itself."""
    assert address_problem(address, "innocent.example") is not None
    assert address_problem(address, address) is None


def test_the_notifier_connects_to_the_address_it_checked() -> None:
    """The address a webhook host resolves to is checked, then used for the connection (no second lookup)."""
    assert _checked_address("localhost", 80) in ("127.0.0.1", "::1")


# --- at run time: the executor's effects check again -----------------------------------------------


@pytest.fixture
def nothing_allowed(config: Config) -> Iterator[Effects]:
    runner = Effects(dataclasses.replace(config, allowed_containers=frozenset(), allowed_commands=(),
                                         notify_allowed_hosts=()), env={})
    yield runner
    runner.close(0.2)


def test_a_refused_container_is_never_touched(
    config: Config, docker_api: docker.DockerClient, make_container: MakeContainer
) -> None:
    """A restart or stop that a config does not allow raises Refused and the container keeps running."""
    container = make_container()
    runner = Effects(config, docker_client=docker_api, env={})
    container.reload()
    before = container.attrs["State"]["StartedAt"]
    for action in (Restart(container=container.name, at=AT), Stop(container=container.name, at=AT)):
        with pytest.raises(Refused, match="not in allowed_containers"):
            runner.run(action, FIX)
    container.reload()
    assert (container.status, container.attrs["State"]["StartedAt"]) == ("running", before)
    assert container_problem(dataclasses.replace(config, allowed_containers=frozenset({container.name})),
                             container.name) is None


def test_a_refused_program_never_runs(nothing_allowed: Effects, config: Config) -> None:
    """An exec outside allowed_commands raises Refused before anything starts."""
    marker = config.target_root / "ran"
    with pytest.raises(Refused, match="not in allowed_commands"):
        nothing_allowed.run(Exec(argv=(sys.executable, "-c", f"open({str(marker)!r}, 'w')"), at=AT), FIX)
    assert not marker.exists()


def test_an_allowed_bare_name_runs_the_path_that_was_checked(config: Config) -> None:
    """What runs is the absolute program the allowlist matched (its argv[0] shows it), not a second lookup."""
    assert SH is not None
    runner = Effects(dataclasses.replace(config, allowed_commands=(SH,)), env={})
    message = runner.run(Exec(argv=("sh", "-c", "echo $0"), at=AT), FIX)
    assert message.startswith("sh exited 0") and message.endswith(f": {SH}")


def test_a_refused_webhook_is_never_posted(config: Config, webhook: Webhook) -> None:
    """A notify to a host outside notify.allowed_hosts raises Refused; the receiver sees nothing."""
    notifier = Notifier()
    notifier.start()
    runner = Effects(config, notifier=notifier, env={})
    with pytest.raises(Refused, match=r"not in notify\.allowed_hosts"):
        runner.run(Notify(webhook=webhook.url, at=AT), FIX)
    notifier.stop(1.0)
    assert webhook.requests == []
