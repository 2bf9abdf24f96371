"""A scrape that fails is shown where people look, not only counted: /api/monitoring/status and the dashboard's sources.

A running sidecar scrapes four real HTTP servers: a healthy JSON health document, one answering
HTML, one whose body is over max_bytes, and a Prometheus exporter reached with a password in its
URL. Each is listed with its level and why, its counters, and its URL without the password.
"""

from __future__ import annotations

import json
import urllib.request

from suture.engine.config import load_config
from suture.sidecar.sources.scrape import redact_url
from suture.sidecar.transport import serve

from .conftest import dedent, write_config
from .scrape_servers import answer, hostile, wait_for


def get_json(api_url: str, path: str) -> dict:
    with urllib.request.urlopen(api_url + path, timeout=5) as resp:
        return json.loads(resp.read())


def test_failed_and_dropping_scrapes_are_shown_with_their_reason(tmp_path, target, running) -> None:
    routes = {
        "/health": answer(200, b'{"queue": {"size": 3}, "ok": true}', "application/json"),
        "/html": answer(200, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        "/huge": answer(200, b'{"pad": "' + b"x" * 8192 + b'"}', "application/json"),
        "/metrics": answer(200, b"# TYPE a gauge\na 1\nb 2\nc 3\n"),
    }
    with hostile(routes) as base:
        write_config(tmp_path, target)
        host = base.removeprefix("http://")
        text = (tmp_path / "suture.yaml").read_text().replace("sources:\n", dedent(f"""
            sources:
              health: {{json: "{base}/health", interval: 200ms}}
              html: {{json: "{base}/html", interval: 200ms}}
              huge: {{json: "{base}/huge", interval: 200ms, max_bytes: 2048}}
              metrics: {{prometheus: "http://scraper:s3cret@{host}/metrics", interval: 200ms, max_series: 2}}
            """), 1)
        (tmp_path / "suture.yaml").write_text(text)
        r = running(load_config(tmp_path / "suture.yaml", env={}))
        server = serve(r.sidecar)
        try:
            assert wait_for(lambda: all(s.ok + s.failed >= 2 for s in r.sidecar.snapshot().scrapes.values()))
            assert r.sidecar.api_url is not None
            status = get_json(r.sidecar.api_url, "/api/monitoring/status")["scrapes"]
            page = {s["name"]: s for s in get_json(r.sidecar.api_url, "/api/dashboard/state")["sources"]}
        finally:
            server.shutdown()
            server.server_close()

    assert status["health"]["status"] == "healthy" and status["health"]["last_samples"] == 2
    assert status["health"]["detail"].startswith("2 sample(s) in ")
    assert (status["html"]["status"], status["html"]["scrapes_ok"]) == ("critical", 0)
    assert status["html"]["detail"].startswith("last scrape failed: ") and status["html"]["scrapes_failed"] >= 2
    assert status["huge"]["status"] == "critical" and "2048" in status["huge"]["detail"]
    metrics = status["metrics"]
    assert (metrics["status"], metrics["last_samples"], metrics["dropped_cap"] >= 2) == ("warning", 2, True), metrics
    assert metrics["detail"] == f"{metrics['dropped_cap']} sample(s) dropped ({metrics['dropped_cap']} cap)"
    assert metrics["url"] == f"http://***@{host}/metrics"
    assert "s3cret" not in json.dumps(status) and "s3cret" not in json.dumps(page)
    assert {name: page[name]["status"] for name in status} == {name: s["status"] for name, s in status.items()}
    assert page["huge"]["pattern"] == f"json {base}/huge" and page["html"]["detail"] == status["html"]["detail"]


def test_a_url_without_credentials_is_shown_as_written() -> None:
    assert redact_url("http://127.0.0.1:8000/metrics?x=1") == "http://127.0.0.1:8000/metrics?x=1"
    assert redact_url("https://u@h.example:9/m") == "https://***@h.example:9/m"
    assert redact_url("http://u:p%40ss@h/m") == "http://***@h/m"
