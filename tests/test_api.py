"""The HTTP API and /metrics of a running sidecar, over real HTTP."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from suture.sidecar.transport import serve

from .conftest import dedent, write_config

pytestmark = pytest.mark.slow

PLAYBOOK = """
id: timeouts
when: {log: {source: app, pattern: 'TIMEOUT calling (?P<ep>/\\S+)', at_least: 2, within: 1m, group_by: [ep]}}
confidence: 40
fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]
validate: {window: 5s, expect: [{log: {source: app, pattern: TIMEOUT, at_most: 0}}]}
"""


@pytest.fixture
def api(tmp_path, target, running):
    config = write_config(tmp_path, target)
    (config.playbooks / "timeouts.yaml").write_text(dedent(PLAYBOOK))
    log = target / "logs" / "app.log"
    log.write_text("")
    r = running(config)
    server = serve(r.sidecar)
    yield r, log
    server.shutdown()
    server.server_close()


def get(r, path: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(r.sidecar.api_url + path, timeout=5) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read()


def scrape(r) -> dict[str, float]:
    _, _, body = get(r, "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_count_lines_bytes_and_condition_matches(api):
    """Prometheus text: lines and bytes per source, matches per playbook condition, a decision counted."""
    r, log = api
    text = "INFO ok\nTIMEOUT calling /orders\nTIMEOUT calling /orders\n"
    with open(log, "a") as fh:
        fh.write(text)
    r.wait_for(lambda e: e.kind == "proposed")
    time.sleep(0.2)
    status, content_type, _ = get(r, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    m = scrape(r)
    assert m['suture_source_lines_total{source="app"}'] == 3
    assert m['suture_source_bytes_total{source="app"}'] == len(text.encode())
    assert m['suture_condition_matches_total{condition="when.log",playbook="timeouts"}'] == 2
    assert m['suture_fixes_total{outcome="proposed",playbook="timeouts"}'] == 1
    assert m['suture_playbook_confidence{playbook="timeouts"}'] == 40
    assert m["suture_detection_latency_seconds_count"] == 1
    assert m["suture_playbooks_loaded"] == 1


def test_playbooks_endpoint_shows_version_counters_and_errors(api, tmp_path):
    """GET /api/monitoring/playbooks lists what is loaded, the reload counters and problems with file:line."""
    r, _ = api
    folder = r.sidecar.config.playbooks
    (folder / "broken.yaml").write_text("id: broken\nwhen: {log: {source: nowhere, pattern: x}}\n")
    r.wait_for(lambda e: e.kind == "reloaded")
    _, content_type, body = get(r, "/api/monitoring/playbooks")
    data = json.loads(body)
    assert content_type == "application/json"
    assert [p["id"] for p in data["loaded"]] == ["timeouts"]
    assert data["reloads"] == 1 and data["reload_errors"] == 1
    assert any("broken.yaml:1:" in e["rendered"] for e in data["errors"])


def test_health_reports_every_probe(api):
    """No probes configured: overall healthy with no checks."""
    r, _ = api
    _, _, body = get(r, "/api/monitoring/health")
    assert json.loads(body)["overall_status"] == "healthy"


def test_metrics_pass_promtool_check_metrics(tmp_path, target, running, promtool):
    """What /metrics serves, with every family holding samples (a probe with a latency, a fix, a matched line,
    the API's own counters), passes `promtool check metrics`: base units in names, counters end in _total."""
    import socket
    import subprocess

    listener = socket.create_server(("127.0.0.1", 0))  # something the tcp probe finds healthy
    try:
        port = listener.getsockname()[1]
        config = write_config(tmp_path, target, extra=f'probes:\n  api: {{tcp: "127.0.0.1:{port}", interval: 1s}}\n')
        (config.playbooks / "timeouts.yaml").write_text(dedent(PLAYBOOK))
        log = target / "logs" / "app.log"
        log.write_text("")
        r = running(config)
        server = serve(r.sidecar)
        try:
            with open(log, "a") as fh:
                fh.write("TIMEOUT calling /orders\nTIMEOUT calling /orders\n")
            r.wait_for(lambda e: e.kind == "proposed")
            deadline = time.monotonic() + 10
            while b"suture_probe_latency_seconds{" not in get(r, "/metrics")[2] and time.monotonic() < deadline:
                time.sleep(0.1)
            _, _, body = get(r, "/metrics")
        finally:
            server.shutdown()
            server.server_close()
    finally:
        listener.close()
    assert b'suture_probe_latency_seconds{probe="api"}' in body and b"suture_fixes_total{" in body
    checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
