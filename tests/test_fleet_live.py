"""A running sidecar with `fleet:` in its suture.yaml: its journal ships to PostgreSQL, /metrics says whether
the fleet answers, and without its PostgreSQL it goes on deciding locally (issue 15 items 1 and 6, as wired)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from suture.engine.config import load_config

from .conftest import dedent
from .fleet_helpers import FleetDb, fleet_db  # noqa: F401 (fixture)

PROPOSE = """
    id: slow-upstream
    when: {log: {source: app, pattern: 'upstream timeout', at_least: 1, within: 1m}}
    confidence: 40
    fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 5, max: 60}}]
    validate: {window: 10s, expect: [{log: {source: app, pattern: 'upstream timeout', at_most: 0}}]}
"""


def configure(tmp_path: Path, target: Path, url: str, password: str):
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "slow.yaml").write_text(dedent(PROPOSE))
    path = tmp_path / "suture.yaml"
    path.write_text(dedent(f"""
        name: orders-1
        target_root: {target}
        allowed_paths: [config/]
        playbooks: ./playbooks
        state_dir: ./state
        sources: {{app: {{file: {target}/logs/app.log}}}}
        api: {{enabled: false}}
        fleet: {{postgres: "{url}", group: orders}}
    """))
    return load_config(path, env={"PGPASSWORD": password})


def gauge(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found[1]) if found else None


def trigger(target: Path) -> None:
    with (target / "logs" / "app.log").open("a") as fh:
        fh.write("ERROR upstream timeout after 5s\n")


def test_a_running_sidecar_ships_its_decisions_to_the_fleet(tmp_path, target, running, fleet_db: FleetDb):
    (target / "logs" / "app.log").write_text("")
    r = running(configure(tmp_path, target, fleet_db.url, fleet_db.server.password))
    trigger(target)
    proposed = r.wait_for(lambda e: e.kind == "proposed", timeout=15)
    fix_id = proposed.data["fix_id"]
    deadline = time.monotonic() + 20
    rows: list[tuple[str, str, str]] = []
    while time.monotonic() < deadline:
        with fleet_db.admin() as conn:
            exists = conn.execute("SELECT to_regclass('fleet_fixes') IS NOT NULL").fetchone()
            if exists and exists[0]:
                rows = conn.execute("SELECT sidecar, id, status FROM fleet_fixes WHERE id = %s", [fix_id]).fetchall()
        if rows and rows[0][2] != "matched":  # the row ships at the match, its status when the decision does
            break
        time.sleep(0.2)
    assert rows == [("orders-1", fix_id, "proposed")]
    scrape = r.sidecar.telemetry.render().decode()
    assert gauge(scrape, "suture_fleet_connected") == 1.0


def test_without_its_postgres_the_sidecar_decides_alone_and_says_so(tmp_path, target, running):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (target / "logs" / "app.log").write_text("")
    r = running(configure(tmp_path, target, f"postgresql://suture@127.0.0.1:{port}/suture", "pw"))
    trigger(target)
    assert r.wait_for(lambda e: e.kind == "proposed", timeout=15)  # the local decision is not held up
    deadline = time.monotonic() + 10
    while gauge(r.sidecar.telemetry.render().decode(), "suture_fleet_consecutive_failures") in (None, 0.0):
        assert time.monotonic() < deadline, "the fleet worker never tried"
        time.sleep(0.2)
    scrape = r.sidecar.telemetry.render().decode()
    assert gauge(scrape, "suture_fleet_connected") == 0.0
    assert "pw" not in scrape


# -- the decision path, wired: the core asks the group before it applies (items 3, 4, 6) --

APPLY = """
    id: slow-upstream
    scope: {scope}
    when: {{log: {{source: app, pattern: 'upstream timeout', at_least: 1, within: 1m}}}}
    confidence: 95
    fix: [{{adjust: {{file: config/settings.yaml, key: upstream.timeout_s, add: 5, max: 60}}}}]
    validate: {{window: 2s, settle: 0s, expect: [{{log: {{source: app, pattern: 'upstream timeout', at_most: 0}}}}]}}
    cooldown: 0s
"""


def replica(tmp_path: Path, name: str, target: Path, url: str, password: str, scope: str, **fleet: object):
    root = tmp_path / name
    (root / "playbooks").mkdir(parents=True)
    (root / "playbooks" / "slow.yaml").write_text(dedent(APPLY.format(scope=scope)))
    options = ", ".join(f"{k}: {v}" for k, v in ({"group": "orders"} | fleet).items())
    (root / "suture.yaml").write_text(dedent(f"""
        name: {name}
        target_root: {target}
        allowed_paths: [config/]
        playbooks: ./playbooks
        state_dir: ./state
        sources: {{app: {{file: {target}/logs/{name}.log}}}}
        api: {{enabled: false}}
        fleet: {{postgres: "{url}", {options}}}
    """))
    (target / "logs" / f"{name}.log").write_text("")
    return load_config(root / "suture.yaml", env={"PGPASSWORD": password})


def copy_target(target: Path, where: Path) -> Path:
    where.mkdir(parents=True)
    (where / "config").mkdir()
    (where / "logs").mkdir()
    (where / "config" / "settings.yaml").write_bytes((target / "config" / "settings.yaml").read_bytes())
    return where


def say(target: Path, name: str) -> None:
    with (target / "logs" / f"{name}.log").open("a") as fh:
        fh.write("ERROR upstream timeout after 5s\n")


@pytest.fixture
def traffic():
    """Healthy lines every 0.2 s in the given logs while the test runs (a validation window needs data)."""
    logs: list[Path] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.wait(0.2):
            for log in list(logs):
                with log.open("a") as fh:
                    fh.write("INFO GET /orders 200\n")

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    yield logs
    stop.set()
    thread.join()


def decided_fleet(r, fix_id: str) -> dict:
    store = r.sidecar.store
    return next(json.loads(s["detail"])["fleet"] for s in store.steps(fix_id) if s["step"] == "decided")


def test_a_replica_waits_for_the_canary_then_acts_naming_it(tmp_path, target, running, fleet_db: FleetDb, traffic):
    url, pw = fleet_db.url, fleet_db.server.password
    first = running(replica(tmp_path, "orders-1", target, url, pw, "replica", canary=1, max_concurrent=5))
    other = copy_target(target, tmp_path / "t2")
    second = running(replica(tmp_path, "orders-2", other, url, pw, "replica", canary=1, max_concurrent=5))
    traffic += [target / "logs" / "orders-1.log", other / "logs" / "orders-2.log"]
    assert first.wait_for(lambda e: e.kind == "loaded") and second.wait_for(lambda e: e.kind == "loaded")
    deadline = time.monotonic() + 15  # the first admission needs the migrated schema (the fleet thread's first pass)
    while not (first.sidecar.fleet_worker and first.sidecar.fleet_worker.migrated):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    say(target, "orders-1")
    canary = first.wait_for(lambda e: e.kind == "validating", timeout=15).data["fix_id"]
    say(other, "orders-2")
    waiting = second.wait_for(lambda e: e.kind == "waiting", timeout=15)
    assert waiting.data["reason"] == f"waiting for canary {canary} (orders-1)"
    assert first.wait_for(lambda e: e.kind == "succeeded", timeout=15).data["fix_id"] == canary
    healed = second.wait_for(lambda e: e.kind == "succeeded", timeout=15).data["fix_id"]
    assert decided_fleet(second, healed)["canary"] == canary
    assert decided_fleet(first, canary)["role"] == "canary"
    skipped = second.sidecar.store.query("SELECT status, reason FROM fixes WHERE status = 'skipped'").rows
    assert skipped == (("skipped", f"waiting for canary {canary} (orders-1)"),)  # one row, however many retries


def test_two_sidecars_on_one_shared_target_one_applies_the_other_skips(tmp_path, target, running,
                                                                        fleet_db: FleetDb, traffic):
    url, pw = fleet_db.url, fleet_db.server.password
    sidecars = [running(replica(tmp_path, f"orders-{i}", target, url, pw, "fleet")) for i in (1, 2)]
    traffic += [target / "logs" / "orders-1.log", target / "logs" / "orders-2.log"]
    for r in sidecars:
        deadline = time.monotonic() + 15
        while not (r.sidecar.fleet_worker and r.sidecar.fleet_worker.migrated):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for i in (1, 2):
        say(target, f"orders-{i}")
    ends = [r.wait_for(lambda e: e.kind in ("succeeded", "skipped"), timeout=15) for r in sidecars]
    assert sorted(e.kind for e in ends) == ["skipped", "succeeded"]
    applied = next(r for r, e in zip(sidecars, ends, strict=True) if e.kind == "succeeded")
    skipper = next(e for e in ends if e.kind == "skipped")
    assert f"lease held by {applied.sidecar.config.name}" in skipper.message
    fix_id = next(e for e in ends if e.kind == "succeeded").data["fix_id"]
    tokens = {json.loads(s["detail"] or "{}").get("fence") for s in applied.sidecar.store.steps(fix_id)}
    assert len(tokens) == 1 and isinstance(next(iter(tokens)), int)


def test_without_its_postgres_a_shared_fix_is_proposed_never_applied(tmp_path, target, running):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = (target / "config" / "settings.yaml").read_bytes()
    r = running(replica(tmp_path, "orders-1", target, f"postgresql://suture@127.0.0.1:{port}/suture", "pw", "fleet"))
    say(target, "orders-1")
    proposed = r.wait_for(lambda e: e.kind == "proposed", timeout=15)
    assert "proposed, never applied without a lease" in proposed.message
    assert (target / "config" / "settings.yaml").read_bytes() == before
