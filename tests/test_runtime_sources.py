"""The running sidecar with every kind of source: metrics, containers, and alerts out."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
from suture.engine.confine import CHILD_PATH

from .conftest import dedent, write_config

pytestmark = pytest.mark.slow


def test_a_metric_condition_fires_when_a_watched_process_dies(tmp_path, target, running):
    """process.worker.up below 1: the sidecar sees the worker die through its metrics."""
    worker = subprocess.Popen(["sleep", "60"])
    pidfile = target / "worker.pid"
    pidfile.write_text(f"{worker.pid}\n")
    config = write_config(tmp_path, target, extra=f"""
        metrics:
          interval: 200ms
          processes: {{worker: {{pidfile: {pidfile}}}}}
        allowed_commands: [{shutil.which("true", path=CHILD_PATH)}]
        """)
    (config.playbooks / "worker-down.yaml").write_text(dedent("""
        id: worker-down
        when: {metric: {name: process.worker.up, below: 1}}
        confidence: 50
        mode: shadow
        fix: [{exec: {argv: ["true"]}}]
        validate: {window: 10s, expect: [{metric: {name: process.worker.up, above: 0}}]}
        """))
    try:
        r = running(config)
        worker.kill()
        worker.wait()
        r.wait_for(lambda e: e.kind == "detected" and "process.worker.up < 1" in e.message)
        r.wait_for(lambda e: e.kind == "shadow")
    finally:
        worker.kill()
        worker.wait()


def test_an_exited_container_is_restarted_and_validated_through_the_engine(tmp_path, target, running, make_container,
                                                                        docker_url):
    """container state exited -> restart through the Docker API -> running for the window: succeeded."""
    container = make_container()
    container.stop(timeout=1)
    config = write_config(tmp_path, target, extra=f"""
        metrics: {{interval: 300ms}}
        docker: {{url: "{docker_url}"}}
        allowed_containers: [{container.name}]
        """)
    (config.playbooks / "restart-app.yaml").write_text(dedent(f"""
        id: restart-app
        when: {{container: {{name: {container.name}, state: exited}}}}
        confidence: 95
        fix: [{{restart: {{container: {container.name}}}}}]
        validate:
          window: 3s
          settle: 500ms
          expect: [{{container: {{name: {container.name}, state: running}}}}]
        """))
    r = running(config)
    final = r.wait_for(lambda e: e.kind in ("succeeded", "failed", "rolled_back", "inconclusive"), timeout=30)
    assert final.kind == "succeeded", [(e.kind, e.message) for e in r.events]
    container.reload()
    assert container.status == "running"


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        type(self).arrived.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_proposal_is_alerted_to_the_webhook(tmp_path, target, running):
    """Below the threshold: the proposal is POSTed as JSON to the configured webhook."""
    _Hook.received, _Hook.arrived = [], threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = write_config(tmp_path, target, extra=f"""
            notify: {{webhook: "http://127.0.0.1:{server.server_address[1]}/hook"}}
            """)
        (config.playbooks / "low.yaml").write_text(dedent("""
            id: low-confidence
            when: {log: {source: app, pattern: 'BOOM'}}
            confidence: 40
            fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]
            validate: {window: 5s, expect: [{log: {source: app, pattern: BOOM, at_most: 0}}]}
            """))
        log = target / "logs" / "app.log"
        log.write_text("")
        running(config)
        with open(log, "a") as fh:
            fh.write("BOOM\n")
        assert _Hook.arrived.wait(10)
        (alert,) = _Hook.received
        assert (alert["kind"], alert["playbook_id"], alert["source"]) == ("proposed", "low-confidence", "suture")
    finally:
        server.shutdown()
        server.server_close()


def test_database_and_cache_probes_report_health_through_the_api(tmp_path, target, running, postgres_server,
                                                                   redis_server):
    """Real PostgreSQL and Redis servers: both probes healthy in /api/monitoring/health, with latency."""
    from suture.sidecar.transport import serve

    config = write_config(tmp_path, target, extra=f"""
        probes:
          db: {{postgres: "{postgres_server.url()}", interval: 300ms, timeout: 2s}}
          cache: {{redis: "{redis_server.url()}", interval: 300ms, timeout: 2s}}
        """)
    r = running(config)
    server = serve(r.sidecar)
    try:
        deadline = time.monotonic() + 15
        while True:
            with urllib.request.urlopen(r.sidecar.api_url + "/api/monitoring/health", timeout=5) as resp:
                health = json.loads(resp.read())
            if all(c["status"] != "unknown" for c in health["checks"].values()) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert health["overall_status"] == "healthy", health
        assert health["checks"]["db"]["latency_ms"] > 0 and health["checks"]["cache"]["latency_ms"] > 0
        assert postgres_server.password not in json.dumps(health)
    finally:
        server.shutdown()
        server.server_close()
