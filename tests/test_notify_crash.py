"""A sidecar killed with SIGKILL before a notification was delivered delivers it after the restart (issue 17
item 3), exactly once, and no receiver ever sees a secret of the sidecar's environment (item 4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from .conftest import dedent, write_config
from .notify_servers import HttpReceiver, eventually, http_receiver  # noqa: F401 (fixture)

SUTURE = [sys.executable, "-m", "suture.sidecar.cli"]
SECRET = "env-secret-4b1e-never-in-a-notification"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SUTURE_TOKEN": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET, "DB_PASSWORD": SECRET}
    with open(log, "ab") as out:
        return subprocess.Popen([*SUTURE, "run", "--config", str(config)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def test_a_notification_queued_before_sigkill_is_delivered_after_restart(
        tmp_path: Path, target: Path, http_receiver: HttpReceiver) -> None:
    http_receiver.then = 500  # down: the row stays queued, retried
    cfg = write_config(tmp_path, target, extra=f"""
        notify:
          webhook: "http://127.0.0.1:{http_receiver.port}/hook"
          urls: ["json://127.0.0.1:{http_receiver.port}/apprise"]
          allowed_hosts: [127.0.0.1]
          events: [proposed]
        """)
    (cfg.playbooks / "low.yaml").write_text(dedent("""
        id: low-confidence
        when: {log: {source: app, pattern: 'BOOM'}}
        confidence: 40
        fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]
        validate: {window: 5s, expect: [{log: {source: app, pattern: BOOM, at_most: 0}}]}
        """))
    app_log = target / "logs" / "app.log"
    app_log.write_text("")
    log = tmp_path / "suture.log"
    proc = _start(cfg.file, log)
    try:
        assert eventually(lambda: b"ready" in log.read_bytes() or b"watching" in log.read_bytes() or
                          (cfg.state_dir / "suture.duckdb").exists(), 30)
        time.sleep(1.0)
        with open(app_log, "a") as fh:
            fh.write("BOOM upstream timed out\n")
        # two failed attempts: the first one's retry is committed (a kill right after a send may lose its mark)
        assert len(http_receiver.wait_for(2, 30)) >= 2, log.read_text()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed_at = time.monotonic()
        http_receiver.then = 200
        before = len(http_receiver.requests)
        proc = _start(cfg.file, log)
        requests = http_receiver.wait_for(before + 1, 30)
        latency = time.monotonic() - killed_at
        time.sleep(1.5)  # nothing more arrives once it is sent
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    requests = http_receiver.requests
    delivered = [r for r in requests[before:] if r.path == "/hook"]
    assert len(delivered) == 1, [r.body for r in delivered]
    (apprised,) = [r for r in requests[before:] if r.path == "/apprise"]  # Apprise's json:// form, the report's text
    message = json.loads(apprised.body)
    assert message["title"].startswith("suture: low-confidence proposed (f-"), message
    assert "suture report f-" in message["message"] and message["attachments"][0]["filename"].endswith(".md")
    body = json.loads(delivered[0].body)
    assert (body["kind"], body["playbook_id"], body["source"]) == ("proposed", "low-confidence", "suture")
    assert all(SECRET.encode() not in r.body and SECRET not in r.path for r in requests)
    con = duckdb.connect(str(cfg.state_dir / "suture.duckdb"), read_only=True)
    try:
        (row,) = con.execute("SELECT event, state, attempts, last_error, sent_at IS NOT NULL FROM notifications "
                             "WHERE channel = 'webhook'").fetchall()
        assert con.execute("SELECT state FROM notifications WHERE channel <> 'webhook'").fetchall() == [("sent",)]
    finally:
        con.close()
    assert row[0:2] == ("proposed", "sent") and row[2] >= 2 and row[3] == "HTTP 500" and row[4]
    print(f"delivered {latency:.2f} s after the SIGKILL (restart included), attempts {row[2]}")
