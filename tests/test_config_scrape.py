"""Scraped sources and the alert receiver in suture.yaml: what loads, and each mistake said at its line and key.

Every case is a whole suture.yaml; the expected text is the problem as `suture check` prints it
(file:line:column: message (at the.yaml.path)).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from suture.engine.config import load_config
from suture.engine.config_scrape import MiB
from suture.engine.errors import DocumentError

BROKEN = {
    "a URL without a scheme": (
        "sources:\n  m: {prometheus: 'localhost:8000/metrics'}\n",
        "3:19: prometheus must be an http:// or https:// URL; got 'localhost:8000/metrics' (at sources.m.prometheus)"),
    "two kinds in one source": (
        "sources:\n  m: {prometheus: 'http://a/metrics', json: 'http://a/health'}\n",
        "3:3: a source needs exactly one of file, container, prometheus, json (at sources.m)"),
    "a scrape beside a file": (
        "sources:\n  m: {prometheus: 'http://a/metrics', file: app.log}\n",
        "3:3: a source needs exactly one of file, container, prometheus, json (at sources.m)"),
    "an interval that is no duration": (
        "sources:\n  m: {prometheus: 'http://a/metrics', interval: soon}\n",
        "3:49: 'soon' is not a duration (write 500ms, 30s, 2m, 1h or 1d) (at sources.m.interval)"),
    "no interval at all": (
        "sources:\n  m: {prometheus: 'http://a/metrics', interval: 0s}\n",
        "3:49: a scrape interval is at least 100ms, got 0s (at sources.m.interval)"),
    "a timeout longer than the interval": (
        "sources:\n  m: {prometheus: 'http://a/metrics', interval: 1s, timeout: 5s}\n",
        "3:62: a scrape's timeout must be more than 0 and at most its interval (1s), got 5s (at sources.m.timeout)"),
    "series forgotten between scrapes": (
        "sources:\n  m: {prometheus: 'http://a/metrics', stale: 0s}\n",
        "3:46: stale (0s) is shorter than the interval (5s): every series would be forgotten between two scrapes"
        " (at sources.m.stale)"),
    "no series kept": (
        "sources:\n  m: {json: 'http://a/h', max_series: 0}\n",
        "3:39: must be >= 1, got 0 (at sources.m.max_series)"),
    "a size in words": (
        "sources:\n  m: {json: 'http://a/h', max_bytes: lots}\n",
        "3:38: expected an integer, got a string 'lots' (at sources.m.max_bytes)"),
    "a scrape key on a log file": (
        "sources:\n  app: {file: app.log, interval: 5s}\n",
        "3:34: interval applies to prometheus: and json: sources only (at sources.app.interval)"),
    "the token itself in the config": (
        "alerts:\n  alertmanager: {token: s3cret}\n",
        "3:18: unknown key 'token' (did you mean 'token_env'?) (at alerts.alertmanager.token)"),
    "a token_env that is no variable name": (
        "alerts:\n  alertmanager: {token_env: 'not a name'}\n",
        "3:29: token_env may contain only letters, digits and '_', and must not start with a digit; got 'not a name'"
        " (at alerts.alertmanager.token_env)"),
    "a receiver suture does not have": (
        "alerts:\n  pagerduty: {}\n",
        "3:3: unknown key 'pagerduty'; expected one of: alertmanager (at alerts.pagerduty)"),
    "a body limit below one alert": (
        "alerts:\n  alertmanager: {max_bytes: 10}\n",
        "3:29: must be >= 1024, got 10 (at alerts.alertmanager.max_bytes)"),
}


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suture.yaml"
    path.write_text("target_root: .\n" + body)
    return path


@pytest.mark.parametrize(("body", "expected"), list(BROKEN.values()), ids=list(BROKEN))
def test_a_mistake_is_named_at_its_line_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(DocumentError) as caught:
        load_config(path, env={})
    assert [p.render() for p in caught.value.problems] == [f"{path}:{expected}"]


def test_suture_check_prints_every_scrape_mistake_and_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  m: {prometheus: 'http://a/metrics', max_series: -1}\n"
                           "  h: {json: 'ftp://a/h'}\nalerts:\n  alertmanager: {max_bytes: 10}\n")
    result = subprocess.run([sys.executable, "-m", "suture.sidecar.cli", "check", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{path}:3:51: must be >= 1, got -1 (at sources.m.max_series)" in result.stderr
    assert f"{path}:4:13: json must be an http:// or https:// URL" in result.stderr
    assert f"{path}:6:29: must be >= 1024, got 10 (at alerts.alertmanager.max_bytes)" in result.stderr


def test_what_loads_and_its_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  app: {file: app.log}\n"
                           "  m: {prometheus: 'http://a/metrics', interval: 1s}\n  h: {json: 'https://a/h'}\n"
                           "alerts:\n  alertmanager: {token_env: AM_TOKEN, max_bytes: 4194304}\n")
    cfg = load_config(path, env={"AM_TOKEN": "t0ken"})
    m, h = cfg.scrapes["m"], cfg.scrapes["h"]
    assert (m.kind, m.interval, m.timeout, m.max_series, m.max_bytes, m.stale) == ("prometheus", 1.0, 1.0, 10_000,
                                                                                   16 * MiB, 300.0)
    assert (h.kind, h.interval, h.timeout, h.max_bytes) == ("json", 5.0, 2.0, 1 * MiB)
    assert set(cfg.sources) == {"app"}  # log sources only: the scraped ones are in cfg.scrapes
    am = cfg.alertmanager
    assert am is not None and (am.token_env, am.token, am.max_bytes) == ("AM_TOKEN", "t0ken", 4 * MiB)
    assert "t0ken" not in repr(cfg)
