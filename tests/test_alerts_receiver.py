"""POST /api/alerts/alertmanager on a running sidecar: a real Alertmanager (Debian's prometheus-alertmanager,
one per test, its webhook receiver pointed at the sidecar) delivers firing, repeated and resolved
notifications of alerts posted to its v2 API, and they reach the core as alert events keyed by fingerprint;
hand-made requests for the token, the size limits, malformed payloads and a busy core; the route fuzzed from
the OpenAPI document with the alert token; the examples of docs/alerts.md checked."""

from __future__ import annotations

import http.client
import json
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from suture.engine.alerts import fingerprint
from suture.engine.config import load_config
from suture.sidecar.alerts_api import NO_RECEIVER, PATH
from suture.sidecar.observations import Tick
from suture.sidecar.transport import serve
from suture.sidecar.web import document

from .conftest import SETTINGS, Running, write_config
from .servers import AlertmanagerServer, alertmanager_binary, run_alertmanager  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow
ALERT_TOKEN = "alert-token-5678"
API_TOKEN = "api-token-1234"
MAX_BYTES = 128 * 1024  # the route's body limit (other routes keep 256 KiB; tests/test_route_limits.py)
RECEIVER = f"alerts:\n  alertmanager: {{token_env: SUTURE_ALERT_TOKEN, max_bytes: {MAX_BYTES}}}\n"


class Served:
    """A running sidecar with its API: requests to it, and what reached its core."""

    def __init__(self, running: Running, stop: Callable[[], None]) -> None:
        self.running, self.stop = running, stop
        self.url = str(running.sidecar.api_url)

    def post(self, body: bytes | Any, token: str | None = ALERT_TOKEN, **headers: str) -> tuple[int, Any, Any]:
        """Status, JSON answer and headers of a POST to the receiver (``body`` bytes as they are, else JSON)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        sent = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {}) | headers
        try:
            conn.request("POST", PATH, body=raw, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return resp.status, json.loads(data) if data else None, resp.headers

    def alert_events(self, after: int = 0) -> list[tuple[str, str, str]]:
        """(fingerprint, name, state) of every alert event from index ``after`` on."""
        return [(e.data["fingerprint"], e.data["name"], e.data["state"]) for e in self.running.events[after:]
                if e.kind == "alert"]

    def wait_alert(self, fp: str, state: str, after: int = 0, timeout: float = 15.0) -> None:
        self.running.wait_for(lambda e: e.kind == "alert" and e.data.get("fingerprint") == fp
                              and e.data.get("state") == state, timeout=timeout, after=after)

    def core_alerts(self) -> dict[str, Any]:
        """The firing alerts the core keeps, by fingerprint (read on the core)."""
        core = self.running.sidecar.core
        assert core is not None
        return dict(self.running.sidecar.call(lambda: dict(core.alerts)))


def start_sidecar(root: Path, extra: str, env: dict[str, str]) -> Served:
    target = root / "target"
    (target / "config").mkdir(parents=True)
    (target / "logs").mkdir()
    (target / "config" / "settings.yaml").write_text(SETTINGS)
    write_config(root, target, extra=extra)
    running = Running(load_config(root / "suture.yaml", env=env)).start()
    server = serve(running.sidecar)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        running.stop()

    return Served(running, stop)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One sidecar for the module, receiving alerts with ALERT_TOKEN."""
    s = start_sidecar(tmp_path_factory.mktemp("receiver"), RECEIVER,
                      {"SUTURE_TOKEN": API_TOKEN, "SUTURE_ALERT_TOKEN": ALERT_TOKEN})
    yield s
    s.stop()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[Callable[[str, dict[str, str]], Served]]:
    """Start a sidecar of the test's own (``extra`` config, ``env``)."""
    started: list[Served] = []

    def start(extra: str, env: dict[str, str]) -> Served:
        started.append(start_sidecar(tmp_path / f"s{len(started)}", extra, env))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def alertmanager(alertmanager_binary: str, served: Served) -> Iterator[Callable[..., AlertmanagerServer]]:
    """Start a real Alertmanager whose webhook posts to ``served`` (token ALERT_TOKEN unless told)."""
    stack: list[Any] = []

    def start(token: str = ALERT_TOKEN, **timings: str) -> AlertmanagerServer:
        root = Path(tempfile.mkdtemp(prefix="suture-am-"))
        manager = run_alertmanager(root, webhook_url=served.url + PATH, token=token, **timings)
        stack.append((manager, root))
        return manager.__enter__()

    yield start
    for manager, root in reversed(stack):
        manager.__exit__(None, None, None)
        shutil.rmtree(root, ignore_errors=True)


def posted(labels: dict[str, str], *, resolved: bool = False) -> dict[str, Any]:
    """An alert as Prometheus posts it to Alertmanager's v2 API: started a minute ago, ending in 5 minutes,
    or (``resolved``) a second ago."""
    now = datetime.now(UTC)
    ends = now - timedelta(seconds=1) if resolved else now + timedelta(minutes=5)
    return {"labels": labels, "annotations": {"summary": "5xx above 5 %"},
            "startsAt": (now - timedelta(minutes=1)).isoformat(), "endsAt": ends.isoformat(),
            "generatorURL": "http://prometheus:9090/graph?g0.expr=errors"}


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# -- through a real Alertmanager --


def test_a_firing_alert_then_its_resolution_reach_the_core(served: Served,
                                                            alertmanager: Callable[..., AlertmanagerServer]) -> None:
    """Posted to Alertmanager firing, then with endsAt past: suture gets both, keyed by Alertmanager's fingerprint,
    and the resolved one retracts the alert."""
    am, after = alertmanager(), len(served.running.events)
    labels = {"alertname": "HighErrorRate", "service": "orders"}
    am.post_alerts([posted(labels)])
    [held] = am.alerts()
    fp = held["fingerprint"]
    assert fingerprint(tuple(labels.items())) == fp
    served.wait_alert(fp, "firing", after)
    assert [a.name for f, a in served.core_alerts().items() if f == fp] == ["HighErrorRate"]
    am.post_alerts([posted(labels, resolved=True)])
    served.wait_alert(fp, "resolved", after)
    assert fp not in served.core_alerts()
    assert [(fp, "HighErrorRate", "firing"), (fp, "HighErrorRate", "resolved")] == served.alert_events(after)


def test_a_repeated_notification_is_one_alert(served: Served, alertmanager: Callable[..., AlertmanagerServer]) -> None:
    """Alertmanager notifies the same firing alert again (repeat_interval 1 s): one alert event, one alert kept."""
    am, after = alertmanager(repeat_interval="1s"), len(served.running.events)
    labels = {"alertname": "QueueBacklog", "service": "orders", "instance": "orders-1:8000"}
    am.post_alerts([posted(labels)])
    fp = fingerprint(tuple(labels.items()))
    served.wait_alert(fp, "firing", after)
    wait_until(lambda: am.metric("alertmanager_notifications_total", integration="webhook") >= 3, what="repeats")
    assert am.metric("alertmanager_notifications_failed_total", integration="webhook") == 0
    assert [(fp, "QueueBacklog", "firing")] == served.alert_events(after)
    assert sum(f == fp for f in served.core_alerts()) == 1


def test_a_group_of_alerts_arrives_in_one_notification(served: Served,
                                                        alertmanager: Callable[..., AlertmanagerServer]) -> None:
    """Three alerts of one group (alertname, service), odd label values too: each its own fingerprint, as
    Alertmanager computed them."""
    am, after = alertmanager(), len(served.running.events)
    group = [{"alertname": "DiskFilling", "service": "orders", "mount": m} for m in ("/", "/var/lib/ü", 'a "b" c')]
    am.post_alerts([posted(labels) for labels in group])
    prints = {a["fingerprint"] for a in am.alerts()}
    assert {fingerprint(tuple(labels.items())) for labels in group} == prints
    for fp in prints:
        served.wait_alert(fp, "firing", after)
    wait_until(lambda: am.metric("alertmanager_notifications_total", integration="webhook") >= 1, what="a notify")
    assert prints <= set(served.core_alerts())


def test_alertmanager_with_a_wrong_token_is_refused(served: Served,
                                                     alertmanager: Callable[..., AlertmanagerServer]) -> None:
    """Its notifications fail (401, which it counts as failed) and nothing reaches the core."""
    am, after = alertmanager(token="not-the-token"), len(served.running.events)
    am.post_alerts([posted({"alertname": "Intruder", "service": "orders"})])
    wait_until(lambda: am.metric("alertmanager_notifications_failed_total", integration="webhook") >= 1,
               what="a failed notification")
    assert served.alert_events(after) == []
    assert "401" in am.log()


# -- hand-made requests --

FIRING = {"version": "4", "status": "firing", "alerts": [
    {"status": "firing", "labels": {"alertname": "Hand", "service": "orders"}, "fingerprint": "0000000000000001"},
    {"status": "resolved", "labels": {"alertname": "Hand", "service": "billing"}, "fingerprint": "0000000000000002"}]}


def test_an_accepted_notification_is_counted_in_the_answer(served: Served) -> None:
    """200 with how many alerts were received, firing and resolved; the firing one reaches the core."""
    after = len(served.running.events)
    assert served.post(FIRING)[:2] == (200, {"received": 2, "firing": 1, "resolved": 1})
    served.wait_alert("0000000000000001", "firing", after)


@pytest.mark.parametrize(("token", "header"), [(None, None), ("wrong", None), (API_TOKEN, None),
                                               (None, f"Basic {ALERT_TOKEN}"), (None, ALERT_TOKEN)])
def test_without_the_alert_token_it_is_401(served: Served, token: str | None, header: str | None) -> None:
    """No token, a wrong one, the API's token, another scheme, no scheme: 401, nothing reaches the core."""
    after = len(served.running.events)
    status, body, headers = served.post(FIRING, token=token, **({"Authorization": header} if header else {}))
    assert (status, headers["WWW-Authenticate"]) == (401, "Bearer"), body
    time.sleep(0.3)
    assert served.alert_events(after) == []


def test_an_unset_token_env_refuses_every_request(sidecar: Callable[[str, dict[str, str]], Served]) -> None:
    """token_env names a variable that was not set: 503 naming it whatever the token; 401 without one."""
    s = sidecar(RECEIVER, {"SUTURE_TOKEN": API_TOKEN})
    for token in (ALERT_TOKEN, API_TOKEN, "x"):
        status, body, _ = s.post(FIRING, token=token)
        assert status == 503 and "$SUTURE_ALERT_TOKEN" in body["error"] and "not set" in body["error"]
    assert s.post(FIRING, token=None)[0] == 401


def test_without_the_alerts_section_it_is_404(sidecar: Callable[[str, dict[str, str]], Served]) -> None:
    """No alerts.alertmanager in the config: 404 naming the section (401 without any token, as on every route
    that needs one)."""
    s = sidecar("", {"SUTURE_TOKEN": API_TOKEN, "SUTURE_ALERT_TOKEN": ALERT_TOKEN})
    assert s.post(FIRING)[:2] == (404, {"error": NO_RECEIVER})
    assert s.post(FIRING, token=None)[0] == 401


def test_a_body_over_max_bytes_is_413(served: Served) -> None:
    """Over alerts.alertmanager.max_bytes (here 128 KiB): 413 saying both sizes."""
    body = json.dumps(FIRING | {"receiver": "x" * MAX_BYTES}).encode()
    status, answer, _ = served.post(body)
    assert (413, f"the body is {len(body)} bytes; alerts.alertmanager.max_bytes is {MAX_BYTES}") == (
        status, answer["error"])


def test_a_2_mib_body_is_413(served: Served) -> None:
    """2 MiB announced: refused from its Content-Length, before a byte of it is read (max_bytes is the route's limit)."""
    parts = urlsplit(served.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {ALERT_TOKEN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {2 * 1024 * 1024}\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ") and json.loads(body) == {
        "error": f"the body is {2 * 1024 * 1024} bytes; alerts.alertmanager.max_bytes is {MAX_BYTES}"}


def test_a_body_over_max_bytes_without_the_token_is_401(served: Served) -> None:
    """The token is checked first: a stranger learns nothing of the limits."""
    assert served.post(b"x" * (MAX_BYTES + 1), token=None)[0] == 401


@pytest.mark.parametrize(("reason", "body"), [
    ("not JSON: Expecting value: line 1 column 1 (char 0)", b"alerts!"),
    ("not JSON: Expecting value: line 1 column 1 (char 0)", b""),
    ('version must be "4", got "3"', {"version": "3", "alerts": []}),
    ("alerts[1].labels.alertname is missing", {"version": "4", "alerts": [
        FIRING["alerts"][0], {"status": "firing", "labels": {"service": "orders"}}]}),
    ('alerts[0].status must be firing or resolved, got "pending"', {"version": "4", "alerts": [
        {"status": "pending", "labels": {"alertname": "A"}}]}),
    ("too many alerts: 1001 (at most 1000 in one notification)", {"version": "4", "alerts": [
        {"status": "firing", "labels": {"alertname": "A"}}] * 1001}),
    ('an object repeats the key "alertname"',
     b'{"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "A", "alertname": "B"}}]}'),
])
def test_a_malformed_payload_is_400_with_the_reason(served: Served, reason: str, body: Any) -> None:
    """The parser's reason is the answer; nothing reaches the core."""
    after = len(served.running.events)
    assert (400, {"error": reason}) == served.post(body)[:2]
    assert served.alert_events(after) == []


def test_a_busy_core_is_503_within_seconds(sidecar: Callable[[str, dict[str, str]], Served]) -> None:
    """The core stuck on a command and its queue full: 503 with Retry-After after about 2 s, not a hang; once it
    is free, the same notification is taken."""
    s = sidecar(RECEIVER, {"SUTURE_TOKEN": API_TOKEN, "SUTURE_ALERT_TOKEN": ALERT_TOKEN})
    side = s.running.sidecar
    release, stuck = threading.Event(), threading.Event()
    threading.Thread(target=lambda: side.call(lambda: (stuck.set(), release.wait(30)), timeout=35),
                     daemon=True).start()
    assert stuck.wait(10)
    try:
        while True:
            side.queue.put_nowait(Tick(side.clock()))
    except queue.Full:
        pass
    began = time.monotonic()
    status, body, headers = s.post(FIRING)
    took = time.monotonic() - began
    release.set()
    assert (status, headers["Retry-After"]) == (503, "5") and "busy" in body["error"]
    assert 1.5 < took < 5
    after = len(s.running.events)
    assert s.post(FIRING)[0] == 200
    s.wait_alert("0000000000000001", "firing", after)


# -- the route, fuzzed from the document --

FUZZ = schemathesis.openapi.from_dict(document(), config=SchemathesisConfig.from_dict({"checks": {
    "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "405", "413", "5xx"]}}}))


@FUZZ.include(path=PATH).parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_receiver_answers_as_documented(case: Any, served: Served) -> None:
    """Generated payloads with the alert token: no 5xx, valid ones accepted, answers as the document says."""
    case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {ALERT_TOKEN}"})


# -- docs/alerts.md, kept true --

DOC = Path(__file__).resolve().parents[1] / "docs" / "alerts.md"


def test_the_documented_alertmanager_config_is_valid(alertmanager_binary: str, tmp_path: Path) -> None:
    """The alertmanager.yml of docs/alerts.md passes amtool check-config (max_alerts, credentials_file and all)."""
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not found: apt-get install prometheus-alertmanager (see .ci/packages)")
    block = DOC.read_text().split("# alertmanager.yml", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    (tmp_path / "alertmanager.yml").write_text(block)
    checked = subprocess.run([amtool, "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_documented_request_is_answered_as_shown(served: Served) -> None:
    """The curl example of docs/alerts.md: its body, its answer."""
    text = DOC.read_text()
    body = text.split("-d '", 1)[1].split("'", 1)[0]
    shown = json.loads("{" + text.split("# {", 1)[1].split("\n", 1)[0])
    assert served.post(body.encode())[:2] == (200, shown)
