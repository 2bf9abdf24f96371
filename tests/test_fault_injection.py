"""No step of a fix can stop the sidecar (SAFETY 13): an exception raised at any step ends that fix in a final
state, with the error in its journal and an alert; every file holds its pre- or post-image; the next incident is
still handled. Faults are injected at the executor's and the core's hook points of a real sidecar."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from suture.engine.confine import CHILD_PATH
from suture.engine.store import FINAL
from suture.sidecar.observations import Command

from .conftest import Running, dedent, write_config

pytestmark = pytest.mark.slow

TRUE = shutil.which("true", path=CHILD_PATH)
FAULTY = """
    id: faulty
    when: {log: {source: app, pattern: 'TRIGGER-A'}}
    confidence: 95
    cooldown: 1ms
    fix:
      - adjust: {file: config/a.yaml, key: level, add: 1}
      - adjust: {file: config/a2.yaml, key: level, add: 1}
      - exec: {argv: ["true"]}
    on_rollback:
      - exec: {argv: ["true"]}
    validate: {window: 1s, expect: [{log: {source: app, pattern: 'BAD-A', at_most: 0}}]}
"""
HEALTHY = """
    id: healthy
    when: {log: {source: app, pattern: 'TRIGGER-B'}}
    confidence: 95
    cooldown: 1ms
    fix: [{adjust: {file: config/b.yaml, key: level, add: 1}}]
    validate: {window: 1s, expect: [{log: {source: app, pattern: 'BAD-B', at_most: 0}}]}
"""
ENDS = ("succeeded", "rolled_back", "failed", "conflict", "inconclusive", "exhausted", "proposed")


class Injected(RuntimeError):
    """The fault these tests raise: not one of suture's errors, as a bug would not be."""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raise_once(name: str) -> Callable[..., None]:
    fired: list[bool] = []

    def hook(*_args: Any) -> None:
        if not fired:
            fired.append(True)
            raise Injected(f"injected at {name}")

    return hook


@pytest.fixture
def world(tmp_path: Path, target: Path):
    for name in ("a", "a2", "b"):
        (target / "config" / f"{name}.yaml").write_text("# level of care\nlevel: 1\n")
    config = write_config(tmp_path, target, extra=f"allowed_commands: [{TRUE}]\n")
    (config.playbooks / "faulty.yaml").write_text(dedent(FAULTY))
    (config.playbooks / "healthy.yaml").write_text(dedent(HEALTHY))
    log = target / "logs" / "app.log"
    log.write_text("")
    return config, target, log


def write(log: Path, line: str) -> None:
    with open(log, "a") as fh:
        fh.write(line + "\n")


def end_of(r: Running, playbook: str, after: int = 0):
    return r.wait_for(lambda e: e.kind in ENDS and e.data.get("playbook_id") == playbook, timeout=20, after=after)


# (hook point, what makes the fix reach it after the trigger line)
POINTS = [
    ("plan", "apply"),  # planning the edit
    ("after_intent", "apply"),  # the intent is journaled, the backup not yet made
    ("after_backup", "apply"),
    ("before_rename", "apply"),  # the first file's temp file is written, not yet renamed over it
    ("after_apply_file", "apply"),  # one of two files written
    ("before_effect", "apply"),  # the exec, after both files
    ("judge", "window"),  # the validation itself
    ("settle", "window"),  # judging the end of the window
    ("rolling_back", "breach"),  # the rollback, before any restore
    ("restore_before_rename", "breach"),  # a restore's temp file written, not renamed
]


@pytest.mark.parametrize(("point", "reach"), POINTS, ids=[p for p, _ in POINTS])
def test_a_fault_at_any_step_ends_the_fix_and_the_next_incident_still_heals(world, running, point: str, reach: str):
    """Raise at ``point``: the sidecar lives, the fix is final with the error journaled and alerted, every file
    is whole (pre- or post-image), and another playbook then heals as usual."""
    config, target, log = world
    files = [target / "config" / f"{n}.yaml" for n in ("a", "a2")]
    pre = [sha(f) for f in files]
    r = running(config, hooks={point: raise_once(point)})
    write(log, "TRIGGER-A")
    if reach in ("window", "breach"):
        r.wait_for(lambda e: e.kind == "validating" and "watching" in e.message, timeout=10)
        write(log, "BAD-A" if reach == "breach" else "all quiet")
    end = end_of(r, "faulty")
    assert r.thread.is_alive()
    fix = r.sidecar.call(lambda: r.sidecar.store.fix(end.data["fix_id"]))
    steps = r.sidecar.call(lambda: r.sidecar.store.steps(end.data["fix_id"]))
    assert fix["status"] in FINAL and fix["finished_at"] is not None, fix
    assert fix["status"] != "succeeded", "an injected fault is never a success"
    assert any(s["step"] in ("error", "restore_failed") and "Injected" in s["detail"] for s in steps), steps
    assert end.kind in ("failed", "rolled_back", "conflict")  # each of these is an alert
    for f, before in zip(files, pre, strict=True):
        assert sha(f) == before or f.read_text() == "# level of care\nlevel: 2\n", f"{f} is torn: {f.read_text()!r}"
    assert list(target.glob("config/.*.tmp")) == []

    marker = len(r.events)
    write(log, "TRIGGER-B")
    r.wait_for(lambda e: e.kind == "validating" and "watching" in e.message, timeout=10, after=marker)
    write(log, "all quiet")
    healed = end_of(r, "healthy", after=marker)
    assert healed.kind == "succeeded", [(e.kind, e.message) for e in r.events[marker:]]
    assert (target / "config" / "b.yaml").read_text() == "# level of care\nlevel: 2\n"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("nan.json", b'{"level": NaN, "other": Infinity}'),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000),
        ("deep.yaml", b"level: " + b"[" * 50_000 + b"]" * 50_000),
        ("eof.yaml", b"other: 1\nlevel:"),
        ("binary.yaml", b"level: 1\n\x00\xff"),
    ],
    ids=["nan-json", "deep-json", "deep-yaml", "empty-value-at-eof", "not-utf8"],
)
@pytest.mark.parametrize("mode", ["auto", "ask"])
def test_hostile_target_content_ends_the_fix_and_the_sidecar_goes_on(world, running, name: str, content: bytes,
                                                                        mode: str):
    """A target whose content no parser expected (NaN, deep nesting, a value cut at EOF, bytes) ends that fix
    in a final state, in apply and in propose mode alike; the file is untouched; the next incident heals."""
    config, target, log = world
    path = target / "config" / name
    path.write_bytes(content)
    (config.playbooks / "faulty.yaml").write_text(dedent(f"""
        id: faulty
        when: {{log: {{source: app, pattern: 'TRIGGER-A'}}}}
        confidence: {95 if mode == "auto" else 10}
        cooldown: 1ms
        fix: [{{adjust: {{file: config/{name}, key: level, add: 1}}}}]
        validate: {{window: 1s, expect: [{{log: {{source: app, pattern: 'BAD-A', at_most: 0}}}}]}}
        """))
    r = running(config)
    write(log, "TRIGGER-A")
    end = end_of(r, "faulty")
    assert r.thread.is_alive()
    fix = r.sidecar.call(lambda: r.sidecar.store.fix(end.data["fix_id"]))
    assert fix["finished_at"] is not None, fix
    assert fix["status"] == ("failed" if mode == "auto" else "proposed"), fix
    assert path.read_bytes() == content
    marker = len(r.events)
    write(log, "TRIGGER-B")
    r.wait_for(lambda e: e.kind == "validating" and "watching" in e.message, timeout=10, after=marker)
    write(log, "all quiet")
    assert end_of(r, "healthy", after=marker).kind == "succeeded"


def test_the_core_survives_an_item_that_raises_and_counts_it(world, running):
    """Whatever a queued item raises ends that item only: the core goes on, /metrics counts it, fixes still heal."""
    config, _target, log = world
    r = running(config)
    assert r.sidecar._put(Command(lambda: 1 / 0))
    r.wait_for(lambda e: e.kind == "error" and "ZeroDivisionError" in e.message, timeout=5)
    assert r.sidecar.core_errors == 1 and r.thread.is_alive()
    assert b"suture_core_errors_total 1.0" in r.sidecar.telemetry.render()
    write(log, "TRIGGER-B")
    r.wait_for(lambda e: e.kind == "validating" and "watching" in e.message, timeout=10)
    write(log, "all quiet")
    assert end_of(r, "healthy").kind == "succeeded"


def test_a_loop_that_raises_is_restarted_not_the_sidecar_stopped(world, running):
    """A thread's loop that raises (a source meeting input nobody foresaw) is run again after a pause."""
    config, _target, _log = world
    r = running(config)
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise Injected(f"loop failure {len(calls)}")

    r.sidecar.world.spawn("flaky", flaky)
    r.wait_for(lambda e: e.kind == "error" and "loop failure 2" in e.message, timeout=10)
    r.sidecar.world.threads[-1].join(10)
    assert (len(calls), r.sidecar.thread_restarts, r.sidecar.stop.is_set()) == (3, 2, False)
    assert b"suture_thread_restarts_total 2.0" in r.sidecar.telemetry.render()
