"""Hostile log lines never reach a shell, a template, a path or an argv, and cannot stall matching."""

from __future__ import annotations

import json
import sys
import time

import pytest

from .conftest import dedent, write_config

pytestmark = pytest.mark.slow

HOSTILE = [
    "$(id)", "`id`", "; rm -rf /", "{{ 7*7 }}", "${HOME}", "../../etc/shadow", "\x1b[2J\x1b[31mred", "a\x00b",
    "%s%s%n", "' OR 1=1 --", "|| touch /tmp/pwned", "\u202eevil",
]
ARGV_DUMP = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps({'argv': sys.argv, 'env': dict(os.environ)}))"


@pytest.fixture
def world(tmp_path, target, running):
    config = write_config(tmp_path, target, extra=f"allowed_commands: [{json.dumps(sys.executable)}]\n")
    dump = tmp_path / "argv.json"
    (config.playbooks / "hostile.yaml").write_text(dedent(f"""
        id: hostile
        when: {{log: {{source: app, pattern: 'ERROR user=(?P<user>.*)', group_by: [user]}}}}
        confidence: 95
        cooldown: 1ms
        fix:
          - exec: {{argv: [{json.dumps(sys.executable)}, "-c", {json.dumps(ARGV_DUMP)}, {json.dumps(str(dump))}], timeout: 10s}}
        validate: {{window: 1s, expect: [{{log: {{source: app, pattern: 'NEVER', at_most: 0}}}}]}}
        on_inconclusive: keep
        """))
    log = target / "logs" / "app.log"
    log.write_text("")
    return config, running(config), log, dump, tmp_path


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_text_from_a_log_line_never_reaches_argv_env_path_or_shell(world, payload):
    """The exec runs exactly the playbook's argv with a minimal environment, whatever the line held."""
    _config, r, log, dump, tmp = world
    with open(log, "ab") as fh:
        fh.write(f"ERROR user={payload}\n".encode())
    event = r.wait_for(lambda e: e.kind in ("succeeded", "inconclusive", "failed", "rolled_back"), timeout=15)
    assert event.kind in ("succeeded", "inconclusive"), [(e.kind, e.message) for e in r.events]
    seen = json.loads(dump.read_text())
    assert seen["argv"][1:] == [str(dump)]
    assert payload not in json.dumps(seen["env"])
    assert set(seen["env"]) <= {"PATH", "LANG", "LC_ALL", "SUTURE_FIX_ID", "SUTURE_PLAYBOOK_ID"}
    assert not (tmp / "pwned").exists() and not __import__("os").path.exists("/tmp/pwned")
    detected = next(e for e in r.events if e.kind == "detected")
    assert "\x1b" not in detected.message and "\x00" not in detected.message


def test_a_50_kib_line_and_a_backtracking_pattern_do_not_stall_the_sidecar(tmp_path, target, running):
    """A catastrophic pattern on a hostile line is cut by the match timeout; the next line still counts."""
    config = write_config(tmp_path, target, extra="notify: {allowed_hosts: [127.0.0.1]}\n")
    (config.playbooks / "slow.yaml").write_text(dedent("""
        id: slow-pattern
        when: {log: {source: app, pattern: '(a+)+$', at_least: 1}}
        confidence: 10
        mode: shadow
        fix: [{notify: {webhook: "http://127.0.0.1:9/x"}}]
        validate: {window: 1s, expect: [{log: {source: app, pattern: 'x'}}]}
        """))
    (config.playbooks / "marker.yaml").write_text(dedent("""
        id: marker
        when: {log: {source: app, pattern: 'MARKER'}}
        confidence: 10
        mode: shadow
        fix: [{notify: {webhook: "http://127.0.0.1:9/x"}}]
        validate: {window: 1s, expect: [{log: {source: app, pattern: 'x'}}]}
        """))
    log = target / "logs" / "app.log"
    log.write_text("")
    r = running(config)
    began = time.monotonic()
    with open(log, "a") as fh:
        fh.write("a" * 50 * 1024 + "!\n")
        fh.write("MARKER\n")
    r.wait_for(lambda e: e.kind == "detected" and "marker" in e.message, timeout=20)
    assert time.monotonic() - began < 10
