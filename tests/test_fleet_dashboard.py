"""The fleet in the API and the dashboard: GET /api/fleet, POST /api/fleet/resume (token, hostile bodies, a fleet
that does not answer) and the Fleet section in headless Chromium, against running sidecars whose `fleet:` is the
test PostgreSQL (rows of the group written there directly, some of them hostile)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from suture.engine.config import load_config
from suture.sidecar.fleet_api import FLEET
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_schema import migrate
from suture.sidecar.fleet_suspensions import Suspensions
from suture.sidecar.fleet_view import heartbeat
from suture.sidecar.history_commands import render_explain
from suture.sidecar.transport import serve
from suture.sidecar.web import document

from .browser import TOKEN, chromium_fixture, open_tab_fixture, screenshot  # noqa: F401 (fixtures)
from .conftest import SETTINGS, Running, dedent, write_config
from .fleet_helpers import FleetDb, fleet_db  # noqa: F401 (fixture)
from .test_fleet_live import PROPOSE

MARKUP = '<img src=x onerror="document.body.dataset.owned=1"><script>document.body.dataset.owned=2</script>'
INJECTION = "'); DROP TABLE fleet_fixes; --"
class Served:
    def __init__(self, running: Running, url: str) -> None:
        self.running, self.url = running, url

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, json.loads(data) if data else None


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start a sidecar with its API; ``url`` None: no fleet: in its config."""
    stops: list[Callable[[], None]] = []

    def start_(url: str | None, password: str = "", name: str = "orders-1") -> Served:
        root, target = tmp_path / name, tmp_path / name / "target"
        (target / "config").mkdir(parents=True)
        (target / "logs").mkdir()
        (target / "config" / "settings.yaml").write_text(SETTINGS)
        fleet_line = f'fleet: {{postgres: "{url}", group: orders}}' if url else ""
        write_config(root, target, extra=f"name: {name}\n{fleet_line}\n")
        (root / "playbooks" / "slow.yaml").write_text(dedent(PROPOSE))
        config = load_config(root / "suture.yaml", env={"PGPASSWORD": password, "SUTURE_TOKEN": TOKEN})
        running = Running(config).start()
        public = running.sidecar
        server = serve(public)
        stops.append(lambda: (server.shutdown(), server.server_close(), running.stop()))
        return Served(running, str(public.api_url))

    yield start_
    for stop in reversed(stops):
        stop()


@pytest.fixture
def group(fleet_db: FleetDb) -> FleetConnection:
    """The group's database, migrated, as a connection of the test's own."""
    connection = fleet_db.connect()
    migrate(connection)
    return connection


@pytest.fixture
def served(start: Callable[..., Served], fleet_db: FleetDb, group: FleetConnection) -> Served:
    return start(fleet_db.url, fleet_db.server.password)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(fleet_db: FleetDb, sql: str, args: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with fleet_db.admin() as conn:
        cur = conn.execute(sql, args or [])
        return cur.fetchall() if cur.description else []


def seed(fleet_db: FleetDb, group: FleetConnection, *, hostile: bool = False) -> None:
    """Another replica, a lease, a running canary, outcomes and a suspension; names hostile if asked.

    The suspension is written last: a test that waits until the overview shows it sees all the rest."""
    name = (MARKUP + INJECTION) if hostile else "orders-2"
    heartbeat(group, group="orders", sidecar=name, version=MARKUP if hostile else "1.0", playbooks=1, in_flight=1,
              started_at=time.time() - 300)
    admin(fleet_db, "INSERT INTO fleet_leases VALUES ('orders', 'cache-restart', %s, %s, 41, now(), "
                    "now() + interval '1 min')", [MARKUP if hostile else "redis-1", name])
    admin(fleet_db, """INSERT INTO fleet_canaries (grp, playbook_id, playbook_version, fix_id, sidecar, state, detail,
                                                   expires_at)
                       VALUES ('orders', 'slow-upstream', 'v2', 'f-77', %s, 'running', %s, now() + interval '5 min')""",
          [name, MARKUP if hostile else ""])
    for i, status in enumerate(("succeeded", "succeeded", "succeeded", "rolled_back")):
        admin(fleet_db, """INSERT INTO fleet_fixes (grp, sidecar, id, playbook_id, status, decision, started_at,
                                                    finished_at)
                           VALUES ('orders', %s, %s, 'slow-upstream', %s, 'apply', now(), now())""",
              [name, f"f-{i}", status])
    Suspensions(group).suspend("orders", "slow-upstream", by=name, reason=MARKUP if hostile else "canary f-9 failed",
                               cause_fix_id="f-9")


def fleet_answer(served: Served, until: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
    """GET /api/fleet until its answer satisfies ``until`` (the overview is read once per fleet worker pass)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = served.call("GET", "/api/fleet", token=None)
        assert status == 200, body
        if until(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


# -- the API --


def test_get_fleet_without_fleet_configured_is_a_clear_404(start: Callable[..., Served]) -> None:
    """No fleet: in the config: 404 with a JSON error naming the missing section."""
    status, body = start(None).call("GET", "/api/fleet", token=None)
    assert status == 404 and "no fleet: section" in body["error"]


def test_get_fleet_answers_the_connection_and_the_overview(served: Served, fleet_db: FleetDb,
                                                           group: FleetConnection) -> None:
    """Connected, this sidecar among the replicas, the seeded lease, canary, suspension and rate; as documented."""
    seed(fleet_db, group)
    body = fleet_answer(served, lambda b: bool(b["overview"] and b["overview"]["suspensions"]
                                               and b["state"] and b["state"]["connected"]))
    jsonschema.validate(body, FLEET)
    o = body["overview"]
    assert body["group"] == "orders" and body["name"] == "orders-1" and body["state"]["connected"] is True
    assert {r["sidecar"] for r in o["replicas"]} >= {"orders-1", "orders-2"}
    assert [(x["key"], x["holder"], x["token"]) for x in o["leases"]] == [("redis-1", "orders-2", 41)]
    assert [(c["fix_id"], c["state"]) for c in o["canaries"]] == [("f-77", "running")]
    assert [(s["playbook_id"], s["cause_fix_id"]) for s in o["suspensions"]] == [("slow-upstream", "f-9")]
    assert [(r["playbook_id"], r["rate"]) for r in o["outcomes"]] == [("slow-upstream", 0.75)]


def test_resume_needs_the_token(served: Served, group: FleetConnection, fleet_db: FleetDb) -> None:
    """No token or a wrong one: 401, and the suspension holds."""
    Suspensions(group).suspend("orders", "slow-upstream", by="orders-2", reason="canary failed")
    assert served.call("POST", "/api/fleet/resume", {"playbook": "slow-upstream"}, token=None)[0] == 401
    assert served.call("POST", "/api/fleet/resume", {"playbook": "slow-upstream"}, token="wrong")[0] == 401
    assert admin(fleet_db, "SELECT resumed_at FROM fleet_suspensions") == [(None,)]


@pytest.mark.parametrize("body", [
    {}, {"playbook": ""}, {"playbook": "../x"}, {"playbook": INJECTION}, {"playbook": "x" * 200},
    {"playbook": 7}, {"playbook": "pb", "by": "b" * 200}, {"playbook": "pb", "extra": 1}, [], "pb",
])
def test_resume_refuses_a_malformed_body(served: Served, body: Any) -> None:
    """Missing, empty, non-id or too long playbook, a long by, unknown fields, not an object: 400 naming why."""
    status, answer = served.call("POST", "/api/fleet/resume", body)
    assert status == 400 and answer["error"]


def test_resume_lifts_the_groups_suspension_once(served: Served, group: FleetConnection, fleet_db: FleetDb) -> None:
    """With the token: changed, recorded by whom, an event; a second call changes nothing."""
    Suspensions(group).suspend("orders", "slow-upstream", by="orders-2", reason="canary failed")
    status, answer = served.call("POST", "/api/fleet/resume", {"playbook": "slow-upstream", "by": "alice"})
    assert status == 200 and answer == {"playbook_id": "slow-upstream", "group": "orders", "changed": True,
                                        "by": "alice"}
    assert admin(fleet_db, "SELECT resumed_by FROM fleet_suspensions") == [("alice",)]
    event = served.running.wait_for(lambda e: e.kind == "fleet_resumed")
    assert event.data == {"playbook_id": "slow-upstream", "group": "orders", "by": "alice"}
    assert served.call("POST", "/api/fleet/resume", {"playbook": "slow-upstream"})[1]["changed"] is False


def test_with_its_postgres_unreachable_resume_is_503_and_the_sidecar_goes_on(start: Callable[..., Served]) -> None:
    """Nothing listens where fleet: points: resume answers 503 with the reason; the sidecar still answers."""
    served = start(f"postgresql://probe@127.0.0.1:{closed_port()}/x", "pw")
    status, answer = served.call("POST", "/api/fleet/resume", {"playbook": "slow-upstream"})
    assert status == 503 and "unchanged" in answer["error"] and "pw" not in answer["error"]
    assert served.call("GET", "/api/monitoring/health", token=None)[0] == 200
    status, body = served.call("GET", "/api/fleet", token=None)
    assert status == 200 and body["overview"] is None


FUZZ = schemathesis.openapi.from_dict(document(), config=SchemathesisConfig.from_dict({"checks": {
    "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "405", "413", "5xx"]}}}))


@pytest.fixture
def hostile(served: Served, fleet_db: FleetDb, group: FleetConnection) -> Served:
    seed(fleet_db, group, hostile=True)
    return served


@pytest.mark.slow
@FUZZ.include(path_regex="^/api/fleet").parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_fleet_routes_answer_as_documented_over_hostile_rows(case: Any, hostile: Served) -> None:
    """Generated requests (with the token) against a group full of hostile rows: no 5xx, answers as documented."""
    case.call_and_validate(base_url=hostile.url, headers={"Authorization": f"Bearer {TOKEN}"})


# -- the page --


def open_group(open_tab: Any, served: Served, *, width: int = 1280) -> Any:
    """The dashboard at ``width``, once the Fleet section shows the seeded suspension."""
    tab, _ = open_tab(served.url + "/")
    tab.page.set_viewport_size({"width": width, "height": 844 if width < 800 else 800})
    tab.page.wait_for_selector("#fleet-suspensions li[data-playbook=slow-upstream]", timeout=15000)
    return tab




@pytest.mark.slow
@pytest.mark.e2e
def test_the_fleet_section_shows_the_group(open_tab: Any, served: Served, fleet_db: FleetDb,
                                           group: FleetConnection) -> None:
    """Connected; replicas (this sidecar marked), the lease, the running canary, the suspension, the rate."""
    seed(fleet_db, group)
    tab = open_group(open_tab, served)
    page = tab.page
    page.wait_for_selector("#fleet-connection.ok:has-text('connected')", timeout=15000)
    assert "(this sidecar)" in page.inner_text("#fleet-replicas tr[data-sidecar=orders-1]")
    assert "live" in page.inner_text("#fleet-replicas tr[data-sidecar=orders-2]")
    assert "41" in page.inner_text("#fleet-leases tr[data-playbook=cache-restart]")
    assert "running" in page.inner_text("#fleet-canaries tr[data-version=v2]")
    assert "75%" in page.inner_text("#fleet-outcomes tr[data-playbook=slow-upstream]")
    assert "canary fix f-9" in page.inner_text("#fleet-suspensions li[data-playbook=slow-upstream]")
    screenshot(page, "dashboard-fleet")
    assert tab.errors == []


@pytest.mark.slow
@pytest.mark.e2e
def test_resume_in_the_page_needs_the_token_and_lifts_the_suspension(open_tab: Any, served: Served,
                                                                     fleet_db: FleetDb,
                                                                     group: FleetConnection) -> None:
    """Resume asks for the token, the suspension is lifted in PostgreSQL by the name given, the page says so."""
    seed(fleet_db, group)
    tab = open_group(open_tab, served)
    page = tab.page
    page.locator("#fleet-suspensions li[data-playbook=slow-upstream]").get_by_role("button", name="Resume").click()
    page.fill("#token-input", TOKEN)
    page.fill("#token-name", "carol")
    page.click("#token-ok")
    page.wait_for_selector("#toast:has-text('Resumed slow-upstream for group orders')")
    assert admin(fleet_db, "SELECT resumed_by FROM fleet_suspensions") == [("carol",)]
    page.wait_for_selector("#fleet-suspensions li.empty", timeout=15000)
    assert tab.errors == []


@pytest.mark.slow
@pytest.mark.e2e
def test_hostile_rows_are_shown_as_text(open_tab: Any, served: Served, fleet_db: FleetDb,
                                        group: FleetConnection) -> None:
    """Markup and SQL in names, versions, reasons and details appear as text: no element or script is made."""
    seed(fleet_db, group, hostile=True)
    tab = open_group(open_tab, served)
    page = tab.page
    page.wait_for_function("document.querySelectorAll('#fleet-replicas tbody tr').length >= 2", timeout=15000)
    section = page.locator("#fleet-section")
    assert section.locator("img, script").count() == 0
    assert page.evaluate("document.body.dataset.owned") is None
    text = section.inner_text()
    assert text.count("<img src=x") >= 4 and INJECTION in text
    assert admin(fleet_db, "SELECT to_regclass('fleet_fixes') IS NOT NULL") == [(True,)]
    assert tab.errors == []


@pytest.mark.slow
@pytest.mark.e2e
def test_a_disconnected_fleet_is_said_with_its_last_error(open_tab: Any, start: Callable[..., Served]) -> None:
    """Nothing listens where fleet: points: the section says disconnected, since when, and why."""
    served = start(f"postgresql://probe@127.0.0.1:{closed_port()}/x", "pw")
    tab, _ = open_tab(served.url + "/")
    page = tab.page
    page.wait_for_selector("#fleet-connection.bad:has-text('disconnected')", timeout=20000)
    meta = page.inner_text("#fleet-meta")
    assert "disconnected since" in meta and "Connection refused" in meta and "pw" not in meta
    assert "not read yet" in page.inner_text("#fleet-suspensions")
    assert tab.errors == []


@pytest.mark.slow
@pytest.mark.e2e
def test_without_fleet_the_section_stays_hidden_and_is_never_asked(open_tab: Any,
                                                                   start: Callable[..., Served]) -> None:
    """No fleet: the page never requests /api/fleet (no 404 logged) and shows no Fleet section."""
    served = start(None)
    tab, _ = open_tab(served.url + "/")
    page = tab.page
    page.wait_for_timeout(6000)  # past one fleet poll
    asked = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
    assert any("/api/dashboard/state" in url for url in asked)
    assert page.locator("#fleet-section").is_hidden() and [u for u in asked if "/api/fleet" in u] == []
    assert tab.errors == []


@pytest.mark.slow
@pytest.mark.e2e
def test_the_fleet_section_fits_a_phone(open_tab: Any, served: Served, fleet_db: FleetDb,
                                        group: FleetConnection) -> None:
    """390 px wide with hostile long names: no horizontal scrolling of the page; a screenshot is kept."""
    seed(fleet_db, group, hostile=True)
    tab = open_group(open_tab, served, width=390)
    page = tab.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#fleet-section").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390.5
    screenshot(page, "dashboard-fleet-390x844")
    assert tab.errors == []


def test_explain_shows_the_groups_caps_and_what_it_would_say(served: Served, fleet_db: FleetDb,
                                                             group: FleetConnection) -> None:
    """GET /api/playbooks/ID/explain carries the fleet's numbers; `suture explain` prints them."""
    Suspensions(group).suspend("orders", "slow-upstream", by="orders-2", reason="canary f-9 failed")
    status, body = served.call("GET", "/api/playbooks/slow-upstream/explain", token=None)
    assert status == 200
    fleet = body["fleet"]
    assert (fleet["group"], fleet["scope"], fleet["max_concurrent"], fleet["fixes_per_hour"]) == (
        "orders", "replica", 1, 30)
    assert fleet["reachable"] is True and fleet["suspended"] == "canary f-9 failed"
    assert fleet["would"]["action"] == "skip"
    printed = render_explain(body)
    assert "in flight (group)   0 of max_concurrent 1" in printed
    assert "started last hour   0 of fixes_per_hour 30" in printed
    assert "suspended (group)   canary f-9 failed" in printed
    assert "the group would     skip (suspended for the group: canary f-9 failed;" in printed
