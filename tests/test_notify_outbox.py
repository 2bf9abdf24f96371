"""The notification outbox (issue 17 items 2-5): notify: in suture.yaml, rows queued with the journal step,
delivered by the worker through Apprise or the webhook to real receivers, retried, deduplicated, confined."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from textwrap import dedent

import pytest
from suture.engine.config import Config, load_config
from suture.engine.errors import DocumentError
from suture.engine.notifications import Routes
from suture.engine.store import Store
from suture.sidecar.notify import GiveUp
from suture.sidecar.notify_apprise import send
from suture.sidecar.notify_outbox import Backoff, NotifyOutbox
from suture.sidecar.telemetry import Telemetry

from .notify_servers import HttpReceiver, SmtpReceiver, eventually, http_receiver, smtp_receiver  # noqa: F401

SECRET = "s3cr3t-value-never-sent-7f1d"


def write(tmp_path: Path, notify: str) -> Path:
    (tmp_path / "t").mkdir(exist_ok=True)
    path = tmp_path / "suture.yaml"
    body = "".join(f"  {line}\n" for line in dedent(notify).strip("\n").splitlines())
    path.write_text("target_root: ./t\nnotify:\n" + body)
    return path


def problems(tmp_path: Path, notify: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(DocumentError) as caught:
        load_config(write(tmp_path, notify), env=env or {})
    return [p.render() for p in caught.value.problems]


# -- suture.yaml --

def test_the_notify_keys_load(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        allowed_hosts: [127.0.0.1, hooks.slack.com]
        urls: ["json://127.0.0.1:9/hook", "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops",
               "mailto://bot@example.com?smtp=127.0.0.1&port=2525&to=ops@example.com"]
        events: [proposed, rolled_back, failed, suspended, succeeded]
        dashboard_url: https://suture.example.com
        """), env={})
    assert [c.scheme for c in cfg.notify_urls] == ["json", "slack", "mailto"]
    assert cfg.notify_urls[1].hosts == (("hooks.slack.com", None),)
    assert cfg.notify_urls[2].hosts == (("127.0.0.1", 2525),)
    assert cfg.notify_events == {"proposed", "rolled_back", "failed", "suspended", "succeeded"}
    assert cfg.notify_dashboard_url == "https://suture.example.com"
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in repr(cfg) and "TIiajkdnlazkcOXrIdevi7FQ" not in cfg.notify_urls[1].target


@pytest.mark.parametrize(("notify", "expected"), [
    ("events: [proposed, on_fire]\n", "suture.yaml:3:22: 'on_fire' is not one of"),
    ("urls: [42]\n", "suture.yaml:3:10: expected a string, got an integer 42 (at notify.urls[0])"),
    ("urls: ['nosuchservice://x/y']\n", "Apprise cannot read this nosuchservice:// URL"),
    ("urls: ['json://evil.example.com/x']\n",
     "json:// sends to evil.example.com, which is not in notify.allowed_hosts (allowed: none)"),
    ("urls: ['slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ']\n", "slack:// sends to hooks.slack.com"),
    ("urls: ['pagerduty://routekey@apikey?region=eu']\n", "pagerduty:// sends to events.eu.pagerduty.com"),
    ("urls: ['ntfy://mytopic']\n", "ntfy:// sends to ntfy.sh"),
    ("allowed_hosts: [127.0.0.1]\nurls: ['json://127.0.0.1/x?t={env:HOOK_TOKEN}']\n",
     "{env:HOOK_TOKEN}: the variable HOOK_TOKEN is not set"),
    ("urls: ['mailto://bot:pw@example.com']\n", "mailto:// sends to example.com:25, which is not in"),
    ("allowed_hosts: [127.0.0.1]\nurls: ['json://127.0.0.1/x', 'json://127.0.0.1/x']\n", "is listed twice"),
])
def test_malformed_notify_is_refused_at_its_line(tmp_path: Path, notify: str, expected: str) -> None:
    found = problems(tmp_path, notify)
    assert any(expected in p for p in found), found
    assert all("suture.yaml:" in p and "(at notify." in p for p in found), found


def test_no_problem_repeats_a_secret(tmp_path: Path) -> None:
    found = problems(tmp_path, f"urls: ['json://user:{SECRET}@evil.example.com/x']\n")
    assert found and SECRET not in " ".join(found)


def test_a_secret_may_come_from_the_environment(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
        allowed_hosts: [127.0.0.1]
        urls: ["json://127.0.0.1:9/hook?token={env:HOOK_TOKEN}"]
        """), env={"HOOK_TOKEN": SECRET})
    (channel,) = cfg.notify_urls
    assert SECRET in channel.url and SECRET not in channel.target and SECRET not in repr(cfg)


# -- the store queues in the step's transaction --

def _fix(store: Store, fix_id: str = "f-1", playbook: str = "pb", at: float = 1000.0) -> None:
    store.con.execute("INSERT INTO fixes (id, playbook_id, status, decision, started_at) VALUES (?, ?, 'matched', "
                      "'propose', to_timestamp(?)::TIMESTAMP)", [fix_id, playbook, at])


def _config(tmp_path: Path, receiver_port: int, extra: str = "") -> Config:
    return load_config(write(tmp_path, f"""
        webhook: "http://127.0.0.1:{receiver_port}/hook"
        allowed_hosts: [127.0.0.1]
        {extra}
        """), env={})


def test_a_final_status_queues_one_row_per_channel_with_its_step(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 9, 'urls: ["json://127.0.0.1:9/j"]')
    store = Store.open(tmp_path / "h.duckdb")
    store.notify_through(Routes.of(cfg))
    _fix(store)
    store.finish("f-1", "proposed", 1001.0, detail="below the threshold")
    store.finish("f-1", "proposed", 1002.0, detail="again")  # a finished fix is never notified twice
    rows = store.query("SELECT fix_id, event, channel, target, state, attempts, body FROM notifications "
                       "ORDER BY channel").dicts()
    assert [(r["event"], r["channel"], r["state"]) for r in rows] == [
        ("proposed", cfg.notify_urls[0].channel, "queued"), ("proposed", "webhook", "queued")]
    assert rows[1]["target"] == "http://127.0.0.1:9/..."
    assert json.loads(rows[0]["body"]) == {"status": "proposed", "detail": "below the threshold"}
    store.suspend("pb", 1003.0, "3 failed attempts", fix_id="f-1")
    assert store.query("SELECT count(*) FROM notifications WHERE event = 'suspended'").rows == ((2,),)
    # the history's own SQL sees the table, like the others
    result, _ = store.user_query("SELECT state, count(*) FROM notifications GROUP BY state", max_rows=10)
    assert result.rows == (("queued", 4),)


def test_a_step_that_fails_queues_nothing(tmp_path: Path) -> None:
    """One transaction: when the journal step cannot be written, neither the status nor the row is."""
    cfg = _config(tmp_path, 9)
    store = Store.open(tmp_path / "h.duckdb")
    store.notify_through(Routes.of(cfg))
    _fix(store)
    store.con.execute("DROP TABLE fix_steps")
    with pytest.raises(Exception, match="fix_steps"):
        store.finish("f-1", "rolled_back", 1001.0)
    assert store.query("SELECT count(*) FROM notifications").rows == ((0,),)
    assert store.query("SELECT status FROM fixes").rows == (("matched",),)


def test_events_not_listed_are_not_queued(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 9, "events: [failed]")
    store = Store.open(tmp_path / "h.duckdb")
    store.notify_through(Routes.of(cfg))
    _fix(store)
    store.finish("f-1", "succeeded", 1001.0)
    assert store.query("SELECT count(*) FROM notifications").rows == ((0,),)


# -- delivery --

def _worker(cfg: Config, store: Store, **kw: object) -> tuple[NotifyOutbox, threading.Event, threading.Thread]:
    outbox = NotifyOutbox(cfg, store, dashboard_url=lambda: "http://dash.example/", **kw)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=outbox.run, args=(stop,), daemon=True)
    thread.start()
    return outbox, stop, thread


def _rows(store: Store) -> list[dict[str, object]]:
    cur = store.con.cursor()
    try:
        return Store(cur, None).query("SELECT * FROM notifications ORDER BY id").dicts()
    finally:
        cur.close()


def test_the_webhook_gets_its_json_body_from_the_outbox(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    cfg = _config(tmp_path, http_receiver.port)
    store = Store.open(tmp_path / "h.duckdb")
    store.notify_through(Routes.of(cfg))
    _fix(store)
    began = time.monotonic()
    store.finish("f-1", "rolled_back", time.time(), detail="errors went on; rolled back")
    outbox, stop, thread = _worker(cfg, store)
    outbox.poke()
    (request,) = http_receiver.wait_for(1)
    latency = time.monotonic() - began
    body = json.loads(request.body)
    assert {k: body[k] for k in ("source", "kind", "fix_id", "playbook_id", "status", "detail")} == {
        "source": "suture", "kind": "rolled_back", "fix_id": "f-1", "playbook_id": "pb", "status": "rolled_back",
        "detail": "errors went on; rolled back"}
    assert body["dashboard_url"] == "http://dash.example/"
    assert eventually(lambda: _rows(store)[0]["state"] == "sent")
    stop.set(), outbox.poke(), thread.join(5)
    print(f"webhook delivery latency {latency * 1000:.0f} ms")
    assert latency < 2.0


def test_a_failing_receiver_is_retried_until_it_recovers(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """500, 500, a dropped connection, then 200: queued -> retried three times -> sent, attempts 4."""
    http_receiver.script = [500, 500, 0]
    cfg = _config(tmp_path, http_receiver.port)
    store = Store.open(tmp_path / "h.duckdb")
    store.notify_through(Routes.of(cfg))
    _fix(store)
    store.finish("f-1", "failed", time.time())
    outbox, stop, thread = _worker(cfg, store, backoff=Backoff(base=0.05, cap=0.2), draw=lambda: 0.5)
    assert eventually(lambda: _rows(store)[0]["state"] == "sent")
    (row,) = _rows(store)
    assert row["attempts"] == 4 and "RemoteDisconnected" in str(row["last_error"])
    assert len(http_receiver.requests) == 4
    stats = outbox.stats()
    assert stats.counts == {("retried", "webhook"): 3, ("sent", "webhook"): 1} and stats.queued == 0
    text = _metrics(outbox)
    assert 'suture_notifications_total{channel="webhook",state="retried"} 3.0' in text
    assert "suture_notifications_queued 0.0" in text
    stop.set(), outbox.poke(), thread.join(5)


def test_after_the_last_attempt_a_row_is_failed_for_good(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    http_receiver.then = 503
    cfg = _config(tmp_path, http_receiver.port)
    store = Store.open(tmp_path / "h.duckdb")
    store.notify_through(Routes.of(cfg))
    _fix(store)
    store.finish("f-1", "failed", time.time())
    outbox, stop, thread = _worker(cfg, store, backoff=Backoff(base=0.02, cap=0.05, max_attempts=3))
    assert eventually(lambda: _rows(store)[0]["state"] == "failed")
    (row,) = _rows(store)
    assert row["attempts"] == 3 and row["last_error"] == "HTTP 503 (gave up after 3 attempts)"
    time.sleep(0.3)
    assert len(http_receiver.requests) == 3  # nothing more once failed
    stop.set(), outbox.poke(), thread.join(5)


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    b = Backoff(base=2, cap=60, jitter=0.25)
    assert [b.delay(n, 0.5) for n in (1, 2, 3, 4, 10)] == [2, 4, 8, 16, 60]
    assert b.delay(1, 0.0) == 1.5 and b.delay(1, 0.999999) == pytest.approx(2.5)


def test_a_row_sent_is_never_sent_again_across_a_restart(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    cfg = _config(tmp_path, http_receiver.port)
    path = tmp_path / "h.duckdb"
    store = Store.open(path)
    store.notify_through(Routes.of(cfg))
    _fix(store)
    store.finish("f-1", "proposed", time.time())
    outbox, stop, thread = _worker(cfg, store)
    assert eventually(lambda: _rows(store)[0]["state"] == "sent")
    stop.set(), outbox.poke(), thread.join(5)
    store.close()
    again = Store.open(path)
    again.notify_through(Routes.of(cfg))
    again.finish("f-1", "proposed", time.time())  # the same end told again: no new row
    outbox, stop, thread = _worker(cfg, again)
    time.sleep(0.5)
    stop.set(), outbox.poke(), thread.join(5)
    assert len(http_receiver.requests) == 1 and len(_rows(again)) == 1


# -- Apprise, against real receivers --

def _apprise_config(tmp_path: Path, urls: list[str], allowed: str = "[127.0.0.1]") -> Config:
    return load_config(write(tmp_path, f"allowed_hosts: {allowed}\nurls: {json.dumps(urls)}\n"), env={})


HOSTILE = "<script>alert(1)</script> **bold** [x](http://evil) <!channel> &amp;"


def test_mail_reaches_a_real_smtp_server_escaped_with_the_report_attached(
        tmp_path: Path, smtp_receiver: SmtpReceiver) -> None:
    cfg = _apprise_config(tmp_path, [f"mailto://bot@example.com?smtp=127.0.0.1&port={smtp_receiver.port}"
                                     "&to=ops@example.com&mode=insecure&format=html"])
    report = tmp_path / "suture-report-f-1.md"
    report.write_text("# the report\n")
    send(cfg, cfg.notify_urls[0], title="suture: pb rolled back (f-1)", body=f"line: {HOSTILE}", attachment=report)
    (mail,) = smtp_receiver.wait_for(1)
    assert mail["Subject"] == "suture: pb rolled back (f-1)" and mail["To"] == "ops@example.com"
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html").get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    (attached,) = [p for p in mail.walk() if p.get_filename()]
    assert attached.get_filename() == "suture-report-f-1.md" and attached.get_content().strip() in (
        "# the report", b"# the report")


@pytest.mark.parametrize("form", ["json://127.0.0.1:{port}/hook", "ntfy://127.0.0.1:{port}/ops"])
def test_http_services_reach_a_real_receiver(tmp_path: Path, http_receiver: HttpReceiver, form: str) -> None:
    cfg = _apprise_config(tmp_path, [form.format(port=http_receiver.port)])
    send(cfg, cfg.notify_urls[0], title="suture: pb failed (f-1)", body="pb: failed")
    (request,) = http_receiver.wait_for(1)
    assert b"pb: failed" in request.body or "pb%3A+failed" in request.path


def test_a_host_refused_at_send_time_is_never_contacted(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """Checked again after DNS: a config whose allowlist no longer names the host sends nothing."""
    cfg = _apprise_config(tmp_path, [f"json://127.0.0.1:{http_receiver.port}/hook"])
    narrowed = dataclasses.replace(cfg, notify_allowed_hosts=("127.0.0.2",))
    with pytest.raises(GiveUp, match=r"refused: 127.0.0.1:\d+ is not in notify.allowed_hosts"):
        send(narrowed, cfg.notify_urls[0], title="t", body="b")
    assert http_receiver.requests == []


def test_a_metadata_address_is_refused_after_dns(tmp_path: Path) -> None:
    cfg = _apprise_config(tmp_path, ["json://metadata.local.test/x"], allowed="[metadata.local.test]")
    import socket

    real = socket.getaddrinfo
    from suture.sidecar import notify_apprise

    def fake(host, port, *a, **k):  # the allowed name resolves to the cloud metadata service
        if host == "metadata.local.test":
            return real("169.254.169.254", port, *a, **k)
        return real(host, port, *a, **k)

    notify_apprise._real_getaddrinfo, saved = fake, notify_apprise._real_getaddrinfo
    try:
        with pytest.raises(GiveUp, match=r"169\.254\.169\.254"):
            send(cfg, cfg.notify_urls[0], title="t", body="b", timeout=1)
    finally:
        notify_apprise._real_getaddrinfo = saved


def _metrics(outbox: NotifyOutbox) -> str:
    from suture.sidecar.snapshot import Snapshot

    telemetry = Telemetry(lambda: Snapshot.empty(0.0))
    telemetry.watch_notifications(outbox.stats)
    return telemetry.render().decode()


def test_the_notification_metrics_are_promtool_clean(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from suture.sidecar.notify_outbox import OutboxStats

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (.ci/packages: prometheus)")
    outbox = NotifyOutbox(_config(tmp_path, 9), Store.open(tmp_path / "h.duckdb"))
    outbox.stats = lambda: OutboxStats(counts={("sent", "webhook"): 2, ("retried", "mailto"): 1},  # type: ignore[method-assign]
                                       queued=3, oldest_queued_seconds=4.5)
    text = _metrics(outbox)
    assert 'suture_notifications_total{channel="mailto",state="retried"} 1.0' in text
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
