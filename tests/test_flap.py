"""Flap and storm protection in a running sidecar: serialized files, persisted cooldowns and suspensions."""

from __future__ import annotations

import time

import pytest

from .conftest import dedent, write_config

pytestmark = pytest.mark.slow

PB = """
id: {id}
when: {{log: {{source: app, pattern: '{pattern}'}}}}
confidence: 95
fix: [{{adjust: {{file: config/settings.yaml, key: {key}, add: 1, max: 1000}}}}]
validate:
  window: {window}
  settle: 200ms
  expect: [{{log: {{source: app, pattern: 'FAIL', at_most: 0}}}}]
cooldown: {cooldown}
max_attempts: {attempts}
"""


def pb(id="a", pattern="ALPHA", key="upstream.timeout_s", window="1500ms", cooldown="1h", attempts=3):
    return dedent(PB.format(id=id, pattern=pattern, key=key, window=window, cooldown=cooldown, attempts=attempts))


def append(log, *lines):
    with open(log, "a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def keep_alive(log, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        append(log, "INFO ok")
        time.sleep(0.2)


def keep_alive_until(r, log, predicate, timeout=15.0):
    """Keep the source alive (a line every 0.2 s, so a window has data) until ``r`` emits an event that
    satisfies ``predicate``: on a busy machine the fixes take longer than a fixed stretch would allow."""
    deadline = time.monotonic() + timeout
    while True:
        append(log, "INFO ok")
        try:
            return r.wait_for(predicate, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
        except AssertionError:
            if time.monotonic() >= deadline:
                raise


@pytest.fixture
def world(tmp_path, target):
    config = write_config(tmp_path, target)
    log = target / "logs" / "app.log"
    log.write_text("")
    return config, log


def test_two_fixes_of_the_same_file_run_one_after_the_other(world, running):
    """The second playbook waits for the first fix's window, then runs; they never overlap."""
    config, log = world
    (config.playbooks / "a.yaml").write_text(pb(id="a", pattern="ALPHA"))
    (config.playbooks / "b.yaml").write_text(pb(id="b", pattern="BETA", key="upstream.request_delay_s"))
    r = running(config)
    append(log, "ALPHA", "BETA")
    r.wait_for(lambda e: e.kind == "deferred" and e.data["playbook_id"] == "b")
    keep_alive_until(r, log, lambda e: e.kind == "succeeded" and e.data["playbook_id"] == "b")
    done = [e for e in r.events if e.kind == "succeeded"]
    assert [e.data["playbook_id"] for e in done] == ["a", "b"]
    starts = [e.at for e in r.events if e.kind == "validating"]
    assert starts[1] >= done[0].at, "b's fix began only after a's ended"


def test_cooldown_survives_a_restart(world, running):
    """Fired once, restarted, fired again within the cooldown: skipped (the cooldown is in DuckDB)."""
    config, log = world
    (config.playbooks / "a.yaml").write_text(pb(window="600ms"))
    first = running(config)
    append(log, "ALPHA")
    keep_alive_until(first, log, lambda e: e.kind == "succeeded")
    first.stop()
    second = running(config)
    append(log, "ALPHA")
    keep_alive(log, 1.0)
    assert "decided" not in second.kinds()


def test_a_suspension_survives_a_restart_until_a_person_resumes(world, running):
    """max_attempts failures suspend the playbook; after a restart it still does not act."""
    from suture.engine.store import Store

    config, log = world
    (config.playbooks / "a.yaml").write_text(pb(window="800ms", cooldown="1ms", attempts=1))
    first = running(config)
    append(log, "ALPHA")
    first.wait_for(lambda e: e.kind == "validating")
    time.sleep(0.4)
    append(log, "FAIL")
    first.wait_for(lambda e: e.kind == "suspended")
    first.stop()
    second = running(config)
    append(log, "INFO ok", "ALPHA")
    keep_alive(log, 1.0)
    assert "decided" not in second.kinds()
    second.stop()
    store = Store.open(config.db_path)
    try:
        assert store.resume("a", time.time(), by="test")
    finally:
        store.close()
    third = running(config)
    append(log, "ALPHA")
    third.wait_for(lambda e: e.kind == "decided")
