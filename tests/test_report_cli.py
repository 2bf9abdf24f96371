"""``suture report FIX_ID`` on the history file and through a running sidecar, and ``GET /api/fixes/{id}/report``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from suture.engine.backup import BackupStore
from suture.engine.report import build_report, render_markdown
from suture.engine.store import Store
from suture.sidecar.cli import main
from suture.sidecar.demo import free_port
from suture.sidecar.report_api import report_json
from suture.sidecar.transport import serve

from .conftest import dedent, write_config
from .test_report import make, pb_of, start, window

PROPOSING = """
id: timeouts
when: {log: {source: app, pattern: 'TIMEOUT calling (?P<ep>/\\S+)', at_least: 2, within: 1m, group_by: [ep]}}
confidence: 40
fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]
validate: {window: 5s, expect: [{log: {source: app, pattern: TIMEOUT, at_most: 0}}]}
"""


def test_report_reads_the_history_file_when_no_sidecar_runs(config, target, clock, capsys):
    ex, store, _backups = make(config)
    run = start(ex, store, clock, pb_of())
    outcome = window(ex, run, clock)
    store.close()
    assert main(["report", outcome.fix_id, "--config", str(config.file)]) == 0
    printed = capsys.readouterr().out
    again = Store.open(config.db_path, read_only=True)
    try:
        report = build_report(again, outcome.fix_id, BackupStore(config.state_dir / "backups"))
        expected = report_json(again, outcome.fix_id, BackupStore(config.state_dir / "backups"))
    finally:
        again.close()
    assert printed == render_markdown(report) and "```diff" in printed
    assert main(["report", outcome.fix_id, "--format", "json", "--config", str(config.file)]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert expected["markdown"] == printed and expected["title"] == report.title()


def test_report_of_an_unknown_fix_exits_1(config, target, clock, capsys):
    ex, store, _ = make(config)
    start(ex, store, clock, pb_of(), threshold=95)
    store.close()
    assert main(["report", "f-nope", "--config", str(config.file)]) == 1
    assert "no fix f-nope in the history" in capsys.readouterr().err


@pytest.mark.slow
def test_the_api_serves_the_report_and_the_cli_asks_it(tmp_path, target, running, capsys):
    config = write_config(tmp_path, target, api=f'{{listen: "127.0.0.1:{free_port()}"}}')
    (config.playbooks / "timeouts.yaml").write_text(dedent(PROPOSING))
    log = target / "logs" / "app.log"
    log.write_text("")
    r = running(config)
    server = serve(r.sidecar)
    try:
        with log.open("a") as fh:
            fh.write("INFO fine\nTIMEOUT calling /orders <b>x</b>\nTIMEOUT calling /orders\n")
        fix_id = r.wait_for(lambda e: e.kind == "proposed").data["fix_id"]
        with urllib.request.urlopen(f"{r.sidecar.api_url}/api/fixes/{fix_id}/report", timeout=5) as resp:
            answer = json.loads(resp.read())
        assert (answer["fix_id"], answer["status"], answer["playbook_id"]) == (fix_id, "proposed", "timeouts")
        assert f"`suture approve {fix_id}`" in answer["markdown"]
        (excerpt,) = answer["seen"]["excerpts"]
        assert [line["matched"] for line in excerpt["lines"]] == [False, True, True]
        assert "TIMEOUT calling /orders <b>x</b>" in answer["markdown"]  # in the log's fence, as it was
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{r.sidecar.api_url}/api/fixes/f-nope/report", timeout=5)
        assert missing.value.code == 404
        assert main(["report", fix_id, "--config", str(config.file)]) == 0  # the file is held: it asks the API
        assert capsys.readouterr().out == answer["markdown"]
    finally:
        server.shutdown()
        server.server_close()
