"""A running sidecar with `fleet:` in its suture.yaml: its journal ships to PostgreSQL, /metrics says whether
the fleet answers, and without its PostgreSQL it goes on deciding locally (issue 15 items 1 and 6, as wired)."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

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
        if rows:
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
