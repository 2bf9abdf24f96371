"""Issue 16's "done when", end to end: `suture run` as its own process, fed by real signal sources.

- An app process exposing real Prometheus metrics (prometheus_client's own server) errors while its
  config is bad; a ``rate`` condition on its counter fires a config edit, and the same counter's rate
  validates it (succeeded), or, when the edit does not cure it, rolls it back byte for byte.
- A real Alertmanager (Debian's prometheus-alertmanager) posts a firing alert to the sidecar's
  receiver, which fixes; the alert's ``resolved`` notification validates the fix (succeeded), and
  without one the fix is rolled back.
- A JSON health endpoint serves a disk filling at 1 % per second and a flat one at 90 %: ``predict``
  fires on the filling one while it is still far below 95, and never on the flat one.

The apps are tests/fixtures/observability/app.py. Everything lives in tmp_path, every port is the
kernel's pick (the apps and the sidecar bind port 0 and say which; Alertmanager gets a free port),
so these run in parallel. The outcome is read from the sidecar's DuckDB file after it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families
from suture.sidecar.alerts_api import PATH as ALERTS_PATH

from .conftest import dedent
from .servers import AlertmanagerServer, _die_with_us, alertmanager_binary, run_alertmanager  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SUTURE = [sys.executable, "-m", "suture.sidecar.cli"]
APP = Path(__file__).parent / "fixtures" / "observability" / "app.py"
FINAL = {"succeeded", "rolled_back", "failed", "inconclusive", "conflict", "proposed", "exhausted", "skipped"}
STARTUP = 20.0  # seconds a process may take to say it is ready (a busy machine running the suite in parallel)


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """The first truthy value of ``check()`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(every)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Proc:
    """A child process with its output in a file; the kernel ends it if the test process dies."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log, self.name = log, " ".join(argv[:4])
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True, preexec_fn=_die_with_us)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        assert self.proc.poll() is None, f"{self.name} exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
        return True

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 10 s; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_app(stack: contextlib.ExitStack, root: Path, mode: str, *args: str) -> int:
    """tests/fixtures/observability/app.py in ``mode`` (stopped with ``stack``); the port it bound."""
    port_file = root / f"{mode}.port"
    app = Proc([sys.executable, str(APP), mode, "--port-file", str(port_file), *args], root / f"{mode}.log")
    stack.callback(app.stop)
    port = wait_until(lambda: app.alive() and port_file.exists() and int(port_file.read_text()), STARTUP,
                      f"the {mode} app's port")
    return int(port)


class Suture:
    """`suture run --config ROOT/suture.yaml` as a process, its API at the port it picked, its DuckDB file."""

    def __init__(self, stack: contextlib.ExitStack, root: Path, *, sources: dict[str, str],
                 playbooks: dict[str, str], extra: str = "", env: dict[str, str] | None = None) -> None:
        self.root = root
        (root / "playbooks").mkdir()
        for name, text in playbooks.items():
            (root / "playbooks" / f"{name}.yaml").write_text(dedent(text))
        (root / "suture.yaml").write_text(dedent(f"""
            target_root: {root / "target"}
            allowed_paths: [config/]
            playbooks: ./playbooks
            state_dir: ./state
            threshold: 85
            api: {{listen: "127.0.0.1:0", token_env: SUTURE_TOKEN}}
            """) + "sources:" + "".join(f"\n  {name}: {spec}" for name, spec in sources.items()) + (
            "" if sources else " {}") + "\n" + dedent(extra))
        full_env = {**os.environ, "SUTURE_TOKEN": secrets.token_hex(16), **(env or {})}
        self.proc = Proc([*SUTURE, "run", "--config", str(root / "suture.yaml")], root / "suture.log", full_env)
        stack.callback(self.proc.stop)
        found = wait_until(lambda: self.proc.alive() and re.search(r"api\s+listening on (http://\S+)",
                                                                   self.proc.output()), STARTUP, "the sidecar's API")
        self.url = found.group(1)
        wait_until(lambda: self.proc.alive() and " loaded " in self.proc.output(), STARTUP, "the playbooks loaded")

    def fixes(self) -> list[dict[str, Any]]:
        return list(get_json(self.url + "/api/fixes")["fixes"])

    def wait_fix(self, playbook: str, statuses: set[str], timeout: float) -> dict[str, Any]:
        """The playbook's newest fix, once its status is one of ``statuses``."""

        def found() -> dict[str, Any] | None:
            self.proc.alive()
            mine = [f for f in self.fixes() if f["playbook_id"] == playbook]
            return mine[0] if mine and mine[0]["status"] in statuses else None

        try:
            return dict(wait_until(found, timeout, f"a fix of {playbook} in {sorted(statuses)}"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; fixes: {self.fixes()}\n{self.proc.output()[-3000:]}") from None

    def explain(self, playbook: str) -> dict[str, Any]:
        return dict(get_json(f"{self.url}/api/playbooks/{playbook}/explain"))

    def stop(self) -> None:
        code = self.proc.stop()
        assert code == 0, f"suture run exited with {code}:\n{self.proc.output()[-3000:]}"

    def journal(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of a query on the sidecar's DuckDB file (after :meth:`stop`: one process opens it at a time)."""
        con = duckdb.connect(str(self.root / "state" / "suture.duckdb"), read_only=True)
        try:
            cur = con.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            con.close()

    def steps(self, fix_id: str) -> list[str]:
        return [r["step"] for r in self.journal("SELECT step FROM fix_steps WHERE fix_id = ? ORDER BY seq", fix_id)]

    def outcome(self, playbook: str, status: str) -> tuple[dict[str, Any], float, dict[str, Any]]:
        """The one fix in the journal, checked to be ``playbook``'s, applied and ended ``status`` through every step;
        its row, how long it took (seconds) and its validation row."""
        (row,) = self.journal("SELECT * FROM fixes")
        assert (row["playbook_id"], row["decision"], row["status"]) == (playbook, "apply", status), row
        assert row["backup_id"], row
        steps = self.steps(row["id"])
        assert steps[0] == "matched" and steps[-1] == status, steps
        assert {"backed_up", "applied", "validating"} <= set(steps), steps
        (judged,) = self.journal("SELECT verdict, reason, measured FROM validations WHERE fix_id = ?", row["id"])
        return row, (row["finished_at"] - row["started_at"]).total_seconds(), judged

    def matched(self, fix_id: str) -> dict[str, Any]:
        """The series the fix's ``when`` condition saw when it matched (the journal's first step), by label set."""
        (row,) = self.journal("SELECT detail FROM fix_steps WHERE fix_id = ? AND step = 'matched'", fix_id)
        (seen,) = json.loads(row["detail"])["seen"]
        return {",".join(f"{k}={v}" for k, v in series["labels"].items()): series for series in seen["series"]}


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    """What a test starts, stopped at its end (last first) whatever happened."""
    with contextlib.ExitStack() as s:
        yield s


def make_target(root: Path, files: dict[str, str]) -> Path:
    config = root / "target" / "config"
    config.mkdir(parents=True)
    for name, text in files.items():
        (config / name).write_text(text)
    return config


# -- 1. a rate condition on real Prometheus metrics fixes, and the same metric validates --

APP_JSON = '{\n  "service": "orders",\n  "db": {"host": "127.0.0.1", "pool_size": 2, "timeout_s": 5}\n}\n'

POOL_PLAYBOOK = """
    id: pool-exhausted
    description: The app answers 500 while its database pool is too small; widen the pool.
    when:
      metric: {{name: http_requests_total, labels: {{code: "500"}}, rate: {{above: 5, over: 10s}}}}
    confidence: 90
    fix:
      - adjust: {{file: config/app.json, key: db.pool_size, add: {add}, max: 100}}
    validate:
      window: 6s
      settle: 1500ms
      expect:
        - metric: {{name: http_requests_total, labels: {{code: "500"}}, rate: {{below: 1, over: 3s}}}}
    cooldown: 1h
"""


def start_pool_world(stack: contextlib.ExitStack, root: Path, add: int) -> tuple[Suture, Path, str]:
    """The erroring app, then a sidecar scraping it every second; the sidecar, the app's config, its /metrics."""
    app_json = make_target(root, {"app.json": APP_JSON}) / "app.json"
    metrics = f"http://127.0.0.1:{start_app(stack, root, 'errors', '--config', str(app_json))}/metrics"
    suture = Suture(stack, root, playbooks={"pool-exhausted": POOL_PLAYBOOK.format(add=add)},
                    sources={"app_metrics": f'{{prometheus: "{metrics}", interval: 1s}}'})
    return suture, app_json, metrics


def errors_served(metrics: str) -> float:
    """The app's own count of code="500" answers, read from its exposition."""
    with urllib.request.urlopen(metrics, timeout=5) as resp:
        text = resp.read().decode()
    return next(s.value for family in text_string_to_metric_families(text) for s in family.samples
                if s.name == "http_requests_total" and s.labels == {"code": "500"})


def check_matched_on_the_rate(suture: Suture, fix_id: str) -> None:
    """The journal's match: the code="500" series at about the app's 200 errors per second."""
    series = suture.matched(fix_id)
    assert set(series) == {"code=500"}, series
    assert series["code=500"]["holds"] and series["code=500"]["value"] > 100, series


def test_a_rate_of_real_prometheus_errors_drives_a_fix_the_same_metric_validates(
        tmp_path: Path, stack: contextlib.ExitStack) -> None:
    """code="500" grows 200/s while db.pool_size is 2: the rate fires, the pool goes to 22, the 500s stop,
    and the rate of the same counter over the window holds the fix: succeeded, the file changed."""
    suture, app_json, metrics = start_pool_world(stack, tmp_path, add=20)
    fix = suture.wait_fix("pool-exhausted", FINAL, timeout=25)
    errors_then = errors_served(metrics)
    time.sleep(0.5)
    assert errors_served(metrics) == errors_then, "the app read the fixed config: no 500s any more"
    suture.stop()
    assert fix["status"] == "succeeded", fix
    assert app_json.read_text() == APP_JSON.replace('"pool_size": 2', '"pool_size": 22')
    row, took, judged = suture.outcome("pool-exhausted", "succeeded")
    assert took >= 6 - 0.5, "a success needs the whole validation window"
    check_matched_on_the_rate(suture, row["id"])
    assert judged["verdict"] == "passed"
    (measured,) = json.loads(judged["measured"]).values()
    assert measured["observations"] >= 2 and measured["breach"] is None, measured  # judged on samples, not silence


def test_a_fix_the_errors_outlast_is_rolled_back_byte_for_byte(tmp_path: Path, stack: contextlib.ExitStack) -> None:
    """The same app and rate, but the fix only takes the pool to 3: the 500s go on, the rate breaches the
    expectation after settle, the edit is undone before the window ends and the file is as it was."""
    suture, app_json, _metrics = start_pool_world(stack, tmp_path, add=1)
    before = sha256(app_json)
    fix = suture.wait_fix("pool-exhausted", FINAL, timeout=25)
    suture.stop()
    assert fix["status"] == "rolled_back", fix
    assert sha256(app_json) == before and app_json.read_text() == APP_JSON
    row, took, judged = suture.outcome("pool-exhausted", "rolled_back")
    assert took < 6, "a breach after settle rolls back at once, before the 6 s window ends"
    check_matched_on_the_rate(suture, row["id"])
    assert judged["verdict"] == "breached", judged
    assert re.fullmatch(r'rate\(http_requests_total\{code="500"\}\[3s\]\) = [0-9.]+ \(expected below 1\)',
                        judged["reason"]), judged


# -- 2. a real Alertmanager's firing alert fixes, its resolved notification validates --

ALERT_PLAYBOOK = """
    id: orders-error-rate
    description: Alertmanager says the orders service errors; widen its pool.
    when:
      alert: {name: HighErrorRate, labels: {service: orders}, state: firing}
    confidence: 90
    fix:
      - set: {file: config/app.json, key: db.pool_size, value: 20}
    validate:
      window: 6s
      expect:
        - alert: {name: HighErrorRate, labels: {service: orders}, state: resolved}
    cooldown: 1h
"""

ALERT_LABELS = {"alertname": "HighErrorRate", "service": "orders", "severity": "page"}


def posted(*, resolved: bool) -> dict[str, Any]:
    """The alert as Prometheus posts it to Alertmanager's v2 API: ending in 5 minutes, or (resolved) a second ago."""
    now = datetime.now(UTC)
    ends = now - timedelta(seconds=1) if resolved else now + timedelta(minutes=5)
    return {"labels": ALERT_LABELS, "annotations": {"summary": "5xx above 5 %"},
            "startsAt": (now - timedelta(minutes=1)).isoformat(), "endsAt": ends.isoformat(),
            "generatorURL": "http://prometheus:9090/graph?g0.expr=errors"}


def start_alert_world(stack: contextlib.ExitStack, root: Path) -> tuple[Suture, AlertmanagerServer, Path]:
    """A sidecar receiving alerts, then a real Alertmanager whose webhook posts to it with the alert token."""
    app_json = make_target(root, {"app.json": APP_JSON}) / "app.json"
    token = secrets.token_hex(16)
    suture = Suture(stack, root, playbooks={"orders-error-rate": ALERT_PLAYBOOK}, sources={},
                    extra="alerts:\n  alertmanager: {token_env: SUTURE_ALERT_TOKEN}\n",
                    env={"SUTURE_ALERT_TOKEN": token})
    (root / "am").mkdir()
    am = stack.enter_context(run_alertmanager(root / "am", webhook_url=suture.url + ALERTS_PATH, token=token))
    return suture, am, app_json


def test_a_real_alertmanager_drives_a_fix_and_its_resolved_notification_validates_it(
        tmp_path: Path, stack: contextlib.ExitStack, alertmanager_binary: str) -> None:
    """Firing through Alertmanager: the fix sets the pool to 20 and validates; the alert, posted again with
    endsAt past, is notified resolved by Alertmanager within the window: succeeded, after the full window."""
    suture, am, app_json = start_alert_world(stack, tmp_path)
    am.post_alerts([posted(resolved=False)])
    validating = suture.wait_fix("orders-error-rate", {"validating", *FINAL}, timeout=15)
    assert validating["status"] == "validating", validating
    assert '"pool_size": 20' in app_json.read_text()
    am.post_alerts([posted(resolved=True)])
    wait_until(lambda: not am.alerts(), 5, "Alertmanager to hold the alert resolved (its API lists active ones)")
    fix = suture.wait_fix("orders-error-rate", FINAL, timeout=15)
    notified = am.metric("alertmanager_notifications_total", integration="webhook")
    failed = am.metric("alertmanager_notifications_failed_total", integration="webhook")
    suture.stop()
    assert fix["status"] == "succeeded", fix
    assert notified >= 2 and failed == 0, (notified, failed, am.log()[-2000:])
    assert app_json.read_text() == APP_JSON.replace('"pool_size": 2', '"pool_size": 20')
    _row, took, judged = suture.outcome("orders-error-rate", "succeeded")
    assert took >= 6 - 0.5, "a success needs the whole validation window"
    assert judged["verdict"] == "passed"
    (measured,) = json.loads(judged["measured"]).values()  # the resolved notification, maybe after a repeat
    assert measured["observations"] >= 1 and measured["breach"] is None, measured


def test_an_alert_alertmanager_never_resolves_rolls_the_fix_back(
        tmp_path: Path, stack: contextlib.ExitStack, alertmanager_binary: str) -> None:
    """The same fix, but the alert stays firing through the window: no resolved notification, no success;
    the fix is rolled back and the file holds its old bytes."""
    suture, am, app_json = start_alert_world(stack, tmp_path)
    before = sha256(app_json)
    am.post_alerts([posted(resolved=False)])
    fix = suture.wait_fix("orders-error-rate", FINAL, timeout=20)
    suture.stop()
    assert fix["status"] == "rolled_back", fix
    assert sha256(app_json) == before
    _row, took, judged = suture.outcome("orders-error-rate", "rolled_back")
    assert took >= 6 - 0.5, "a firing alert is no breach: it is judged when the window ends"
    assert (judged["verdict"], judged["reason"]) == (
        "failed", 'expectation not met: alert HighErrorRate{service="orders"} resolved'), judged


# -- 3. predict: a filling disk fires well before the bound, a flat one never --

DISK_PLAYBOOK = """
    id: disk-{name}
    description: The disk will be full within a minute at this pace; keep fewer days of logs.
    when:
      metric: {{name: {name}.disk_percent, predict: {{above: 95, within: 1m}}, over: 10s}}
    confidence: 90
    fix:
      - adjust: {{file: config/{name}.json, key: logs.retention_days, add: -5, min: 1}}
    validate:
      window: 2s
      expect:
        - metric: {{name: {name}.disk_percent, below: 95}}
    cooldown: 1h
"""
RETENTION = '{"logs": {"retention_days": 14}}\n'


def test_a_linearly_filling_disk_fires_predict_before_the_bound_and_a_flat_one_never_does(
        tmp_path: Path, stack: contextlib.ExitStack) -> None:
    """One sidecar scrapes both every second: the disk filling 1 %/s from 50 % is predicted to cross 95 % within a
    minute once the fit has half its 10 s window, so the fix starts while the disk is near 55 %; the disk flat at
    90 %, closer to the bound all along, is judged over as many samples and never fires."""
    config = make_target(tmp_path, {"filling.json": RETENTION, "flat.json": RETENTION})
    port = start_app(stack, tmp_path, "disk")
    base = f"http://127.0.0.1:{port}"
    suture = Suture(stack, tmp_path,
                    playbooks={f"disk-{n}": DISK_PLAYBOOK.format(name=n) for n in ("filling", "flat")},
                    sources={n: f'{{json: "{base}/{n}", interval: 1s}}' for n in ("filling", "flat")})
    fix = suture.wait_fix("disk-filling", FINAL, timeout=30)
    assert fix["status"] == "succeeded", fix

    # the flat series was judged on a full fit too, slope 0: not a crossing, not "no data"
    def judged_flat() -> dict[str, Any] | None:
        (signal_,) = suture.explain("disk-flat")["signals"]
        (series,) = signal_["series"] or [None]
        return series if series and series["known"] and series["numbers"]["points"] >= 8 else None

    flat = wait_until(judged_flat, 15, "the flat series judged over 8 samples", every=0.25)
    assert not flat["holds"] and flat["numbers"]["slope_per_s"] == pytest.approx(0, abs=1e-9), flat
    assert flat["numbers"]["predicted"] == pytest.approx(90), flat
    filling_now = get_json(base + "/filling")["disk_percent"]
    suture.stop()
    assert filling_now < 90, "the filling disk was below the flat one all along: the trend fired, not the level"
    row, _took, judged = suture.outcome("disk-filling", "succeeded")  # the one fix: none of disk-flat
    assert judged["verdict"] == "passed"
    (when,) = suture.matched(row["id"]).values()  # what the filling series said when the fix started
    assert when["holds"] and when["known"], when
    assert 54 < when["value"] < 70, f"predict fired at {when['value']} %, the bound is 95 %"
    assert when["numbers"]["slope_per_s"] == pytest.approx(1, rel=0.05), when
    assert when["numbers"]["predicted"] > 95 and when["numbers"]["points"] >= 5, when
    assert (config / "filling.json").read_text() == RETENTION.replace("14", "9")
    assert (config / "flat.json").read_text() == RETENTION
