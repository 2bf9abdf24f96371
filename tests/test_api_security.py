"""Who may do what through the API: tokens, ids, SQL that tries to escape, CORS, Host names."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from suture.engine.config import load_config
from suture.sidecar.transport import serve

from .conftest import RATE_LIMIT, Running, dedent, write_config

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"


def _start(tmp_path):
    target = tmp_path / "target"
    (target / "config").mkdir(parents=True)
    (target / "logs").mkdir()
    from .conftest import SETTINGS

    (target / "config" / "settings.yaml").write_text(SETTINGS)
    write_config(tmp_path, target, threshold=95, api='{listen: "127.0.0.1:0", cors_origin: "https://ops.example.com", '
                                                    'allowed_hosts: [suture.example, "ops.example:8443"]}')
    config = load_config(tmp_path / "suture.yaml", env={"SUTURE_TOKEN": TOKEN})
    (config.playbooks / "rate.yaml").write_text(dedent(RATE_LIMIT))
    log = target / "logs" / "app.log"
    log.write_text("")
    r = Running(config).start()
    server = serve(r.sidecar)
    return r, log, server


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One sidecar for the checks that change nothing (tokens, ids, SQL, CORS)."""
    r, log, server = _start(tmp_path_factory.mktemp("api"))
    yield r, log
    server.shutdown()
    server.server_close()
    r.stop()


@pytest.fixture
def fresh_api(tmp_path):
    """A sidecar of its own, for a test that changes the history."""
    r, log, server = _start(tmp_path)
    yield r, log
    server.shutdown()
    server.server_close()
    r.stop()


def call(r, method, path, body=None, token=TOKEN, headers=None):
    host, port = r.sidecar.api_url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data and resp.getheader("Content-Type") == "application/json" else data, resp


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/sql", {"sql": "SELECT 1"}),
    ("POST", "/api/monitoring/trigger-check", None),
    ("POST", "/api/monitoring/rollback/b-20260101T000000Z-abcdef", None),
    ("POST", "/api/proposals/f-20260101T000000Z-abcdef/approve", {}),
    ("POST", "/api/playbooks/rate-limit-backoff/suspend", {}),
    ("POST", "/api/playbooks/rate-limit-backoff/resume", {}),
])
@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_mutating_calls_and_sql_need_the_token(api, method, path, body, token):
    """No token, a wrong one, or a prefix of the right one: 401, and nothing happens."""
    r, _ = api
    status, payload, _ = call(r, method, path, body, token=token)
    assert status == 401, payload
    assert "token" in payload["error"]


def test_reads_need_no_token(api):
    """Health, status and the playbooks list are open (on loopback)."""
    r, _ = api
    for path in ("/api/monitoring/health", "/api/monitoring/status", "/api/monitoring/playbooks", "/openapi.json"):
        assert call(r, "GET", path, token=None)[0] == 200


@pytest.mark.parametrize("backup_id", [
    "..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "b-20260101T000000Z-abcdef%2F..%2F..", "%2e%2e", "..", "b-..",
    "b-20260101T000000Z-abcdef.json", "%00", "a" * 300,
])
def test_backup_ids_cannot_traverse(api, backup_id):
    """Traversal attempts are refused (400/404) and never read or restore anything."""
    r, _ = api
    status, payload, _ = call(r, "POST", f"/api/monitoring/rollback/{backup_id}")
    assert status in (400, 404), payload


@pytest.mark.parametrize("sql, message", [
    ("SELECT * FROM read_csv('/etc/passwd')", "Cannot access file"),
    ("SELECT * FROM '/etc/passwd'", "does not exist"),
    ("COPY fixes TO '/tmp/stolen.csv'", "only SELECT"),
    ("ATTACH '/tmp/other.duckdb'", "only SELECT"),
    ("INSTALL httpfs", "only SELECT"),
    ("LOAD httpfs", "only SELECT"),
    ("DELETE FROM fixes", "only SELECT"),
    ("DROP TABLE fixes", "only SELECT"),
    ("UPDATE fixes SET status = 'succeeded'", "only SELECT"),
    ("SELECT 1; DELETE FROM fixes", "exactly one statement"),
    ("SET enable_external_access = true", "only SELECT"),
    ("PRAGMA database_list", "only SELECT"),
    ("SELECT * FROM glob('/etc/*')", "Cannot access file"),
    ("SELECT * FROM read_text('/etc/hostname')", "Cannot access file"),
    ("SELECT * FROM read_parquet('/tmp/*.parquet')", "Cannot access file"),
    ("", "empty query"),
])
def test_sql_that_is_not_a_read_of_the_history_is_refused(api, sql, message):
    """Every escape attempt is a 400 naming why; the history is unchanged."""
    r, _ = api
    status, payload, _ = call(r, "POST", "/api/sql", {"sql": sql})
    assert status == 400 and message in payload["error"], payload
    assert not os.path.exists("/tmp/stolen.csv")


def test_sql_has_a_time_limit_and_a_row_limit(api):
    """A runaway query is stopped; a large answer is cut and says so."""
    r, _ = api
    status, payload, _ = call(r, "POST", "/api/sql", {"sql": "SELECT count(*) FROM range(1000000000000) a"})
    assert status == 400 and "too long" in payload["error"]
    status, payload, _ = call(r, "POST", "/api/sql", {"sql": "SELECT * FROM range(50)", "max_rows": 10})
    assert (status, len(payload["rows"]), payload["truncated"]) == (200, 10, True)


def test_cors_only_for_the_configured_origin(api):
    """The exact configured origin is allowed; any other gets no CORS header."""
    r, _ = api
    _, _, resp = call(r, "GET", "/api/monitoring/health", headers={"Origin": "https://ops.example.com"})
    assert resp.getheader("Access-Control-Allow-Origin") == "https://ops.example.com"
    _, _, resp = call(r, "GET", "/api/monitoring/health", headers={"Origin": "https://evil.example.com"})
    assert resp.getheader("Access-Control-Allow-Origin") is None


@pytest.mark.parametrize("method, path, headers", [
    ("GET", "/", {}),
    ("GET", "/api/monitoring/health", {}),
    ("GET", "/metrics", {}),
    ("GET", "/openapi.json", {}),
    ("GET", "/api/fixes", {}),
    ("GET", "/api/dashboard/events", {"Accept": "text/event-stream"}),
    ("POST", "/api/sql", {}),
    ("OPTIONS", "/api/sql", {"Origin": "https://ops.example.com"}),
])
def test_a_foreign_host_is_refused_on_every_route(api, method, path, headers):
    """A DNS-rebinding page sends its own name as Host: 421 everywhere, naming api.allowed_hosts, and no data."""
    r, _ = api
    status, payload, _ = call(r, method, path, {"sql": "SELECT 1"} if method == "POST" else None,
                              headers={"Host": "attacker.example", **headers})
    assert status == 421, payload
    assert "api.allowed_hosts" in payload["error"] and "suture.yaml" in payload["error"]


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.1:{port}", "localhost", "LocalHost:9", "localhost.", "app.localhost:1", "[::1]",
    "[::1]:8765", "10.0.0.7:9100", "[2001:db8::5]", "suture.example", "Suture.Example:1234", "ops.example:8443",
])
def test_the_listen_address_localhost_ip_literals_and_allowed_hosts_are_answered(api, host):
    """Localhost names and IP literals at any port, and api.allowed_hosts (host, or host:port exactly)."""
    r, _ = api
    port = r.sidecar.api_url.rsplit(":", 1)[1]
    assert call(r, "GET", "/api/monitoring/health", headers={"Host": host.format(port=port)})[0] == 200


@pytest.mark.parametrize("host", [
    "attacker.example", "attacker.example:{port}", "localhost.attacker.example", "127.0.0.1.nip.io",
    "suture.example.attacker.example", "ops.example", "ops.example:8444", "127.1", "", "user@127.0.0.1",
    "[::1", "127.0.0.1, attacker.example",
])
def test_any_other_host_is_refused(api, host):
    """A name not allowed, an allowed name at another port, malformed values: 421."""
    r, _ = api
    port = r.sidecar.api_url.rsplit(":", 1)[1]
    assert call(r, "GET", "/api/monitoring/health", headers={"Host": host.format(port=port)})[0] == 421


def raw(r, data: bytes) -> bytes:
    host, port = r.sidecar.api_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_http11_without_host_is_refused(api):
    """HTTP/1.1 requires a Host; a request without one gets 421."""
    r, _ = api
    assert raw(r, b"GET /api/monitoring/health HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 421 ")


def test_http10_without_host_is_answered(api):
    """HTTP/1.0 predates Host (and no browser sends it without one): answered."""
    r, _ = api
    assert raw(r, b"GET /api/monitoring/health HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")


def test_two_host_headers_are_refused(api):
    """Two Host values are ambiguous (one may be the attacker's): 400."""
    r, _ = api
    answer = raw(r, b"GET /api/monitoring/health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: attacker.example\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("target, host, status", [
    ("http://attacker.example/api/monitoring/health", "127.0.0.1", 421),
    ("http://localhost/api/monitoring/health", "attacker.example", 200),
])
def test_an_absolute_url_is_judged_by_its_own_host(api, target, host, status):
    """For an absolute-form target the URL's host is the one that counts (RFC 9112 3.2.2), not Host."""
    r, _ = api
    answer = raw(r, f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())


def test_refused_hosts_are_counted_in_metrics(api):
    """Each 421 is counted, so a rebinding attempt shows on a dashboard."""
    r, _ = api

    def misdirected() -> float:
        _, body, _ = call(r, "GET", "/metrics")
        return float(next(line.split()[1] for line in body.decode().splitlines()
                          if line.startswith("suture_api_misdirected_requests_total")))

    before = misdirected()
    call(r, "GET", "/api/monitoring/health", headers={"Host": "attacker.example"})
    assert misdirected() == before + 1


def test_a_proposal_is_approved_and_counts_with_who_approved(fresh_api):
    """Below the threshold it proposes; approving runs backup/validate as usual and records the approver."""
    r, log = fresh_api
    with open(log, "a") as fh:
        fh.write("ERROR 429 Too Many Requests\n" * 3)
    r.wait_for(lambda e: e.kind == "proposed")
    status, listed, _ = call(r, "GET", "/api/proposals", token=None)
    (proposal,) = listed["proposals"]
    assert call(r, "POST", f"/api/proposals/{proposal['id']}/approve", {"by": "alice"}, token=None)[0] == 401
    status, answer, _ = call(r, "POST", f"/api/proposals/{proposal['id']}/approve", {"by": "alice"})
    assert (status, answer["status"]) == (200, "validating"), answer
    for _ in range(30):
        with open(log, "a") as fh:
            fh.write("INFO ok\n")
        time.sleep(0.4)
        fix = call(r, "GET", f"/api/fixes/{answer['fix_id']}", token=None)[1]
        if fix["status"] == "succeeded":
            break
    assert (fix["status"], fix["approved_by"], fix["proposal_id"]) == ("succeeded", "alice", proposal["id"])
    status, again, _ = call(r, "POST", f"/api/proposals/{proposal['id']}/approve", {"by": "bob"})
    assert status == 409 and "approved already" in again["error"]
    explained = call(r, "GET", "/api/playbooks/rate-limit-backoff/explain", token=None)[1]
    assert explained["outcomes"]["local"] == {"successes": 1, "failures": 0}


def test_history_sql_works_while_suture_run_holds_the_file(tmp_path, target):
    """`suture history --sql` asks the running sidecar (DuckDB lets one process open the file)."""
    from suture.sidecar.demo import free_port

    write_config(tmp_path, target, api=f'{{listen: "127.0.0.1:{free_port()}"}}')
    cfg = str(tmp_path / "suture.yaml")
    env = {**os.environ, "SUTURE_TOKEN": TOKEN}
    run = subprocess.Popen([sys.executable, "-m", "suture.sidecar.cli", "run", "--config", cfg], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in run.stderr:
            if "listening on" in line:
                break
        cli = [sys.executable, "-m", "suture.sidecar.cli", "history", "--config", cfg, "--sql",
               "SELECT count(*) AS fixes FROM fixes"]
        ok = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0 and "fixes" in ok.stdout and "(1 row)" in ok.stdout, ok.stderr
        no_token = subprocess.run(cli, env={k: v for k, v in env.items() if k != "SUTURE_TOKEN"},
                                  capture_output=True, text=True, timeout=30)
        assert no_token.returncode == 1 and "SUTURE_TOKEN" in no_token.stderr
    finally:
        run.terminate()
        run.wait(10)
        run.stderr.close()
