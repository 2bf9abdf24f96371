"""The Prometheus scraper against real exporters (prometheus_client's own server and WSGI app) and hostile servers.

Every scrape returns (none raises): the hostile cases assert the exact reason of the unhealthy
``scrape.app`` result and that no sample came with it.
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
import urllib.parse
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from suture.engine.config import load_config
from suture.engine.config_scrape import MiB, ScrapeConfig
from suture.sidecar.snapshot import Snapshot
from suture.sidecar.sources.scrape import ACCEPT, MAX_LINE, PrometheusScraper, Scraped, ScrapeStats, fetch
from suture.sidecar.telemetry import Telemetry

from .conftest import dedent, write_config
from .scrape_servers import answer, drip, exporter, hostile, stream, wait_for
from .servers import free_port, silent_server  # noqa: F401

NOW = 1000.0
Triple = tuple[str, tuple[tuple[str, str], ...], float]


def scraper(url: str, **fields) -> PrometheusScraper:
    return PrometheusScraper(ScrapeConfig(name="app", kind="prometheus", url=url, **fields))


def scrape(url: str, **fields) -> Scraped:
    return scraper(url, **fields).scrape(NOW)


def triples(scraped: Scraped) -> list[Triple]:
    return [(s.name, s.labels, s.value) for s in scraped.samples]


def held(registry: Collector) -> list[Triple]:
    """Every sample the registry holds, as prometheus_client itself lists them, NaN and ±Inf left out."""
    return [(s.name, tuple(sorted(s.labels.items())), float(s.value))
            for family in registry.collect() for s in family.samples if math.isfinite(s.value)]


def failed(scraped: Scraped) -> str:
    """The reason of a failed scrape (which must carry no sample)."""
    assert (scraped.samples, scraped.result.name, scraped.result.healthy) == ((), "scrape.app", False)
    return scraped.result.detail


def app_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("http_requests", "Requests.", ["method", "code"], registry=registry)
    requests.labels("get", "200").inc(7)
    requests.labels("get", "500").inc(3)
    Gauge("app_queue_size", "Queue length.", registry=registry).set(1234)
    latency = Histogram("http_request_duration_seconds", "Latency.", ["route"], buckets=(0.1, 1.0), registry=registry)
    latency.labels("/orders").observe(0.05)
    latency.labels("/orders").observe(0.5)
    return registry


APP_SAMPLES = [
    ("http_requests_total", (("code", "200"), ("method", "get")), 7.0),
    ("http_requests_total", (("code", "500"), ("method", "get")), 3.0),
    ("app_queue_size", (), 1234.0),
    ("http_request_duration_seconds_bucket", (("le", "0.1"), ("route", "/orders")), 1.0),
    ("http_request_duration_seconds_bucket", (("le", "1.0"), ("route", "/orders")), 2.0),
    ("http_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "/orders")), 2.0),
    ("http_request_duration_seconds_count", (("route", "/orders"),), 2.0),
    ("http_request_duration_seconds_sum", (("route", "/orders"),), 0.05 + 0.5),
]


# -- real exporters --


@pytest.mark.parametrize("text", [False, True], ids=["openmetrics", "text"])
def test_a_prometheus_client_exporter_is_scraped_sample_by_sample(text: bool) -> None:
    """Counters as name_total, histogram buckets with their le label, _count and _sum, each at the scrape's time."""
    with exporter(app_registry(), text=text) as url:
        scraped = scrape(url)
    assert [t for t in triples(scraped) if not t[0].endswith("_created")] == APP_SAMPLES
    assert {s.at for s in scraped.samples} == {NOW}
    assert (scraped.result.name, scraped.result.healthy, scraped.result.detail) == ("scrape.app", True, "11 samples")


@pytest.mark.parametrize("text", [False, True], ids=["openmetrics", "text"])
def test_every_sample_the_registry_holds_is_scraped(text: bool) -> None:
    """The _created samples too, with the registry's own values (the text format lists them after the counter)."""
    registry = app_registry()
    Summary("job_seconds", "Jobs.", ["queue"], registry=registry).labels("mail").observe(2.5)
    with exporter(registry, text=text) as url:
        scraped = scrape(url)
    expected = held(registry)
    assert (sorted(expected) if text else expected) == (sorted(triples(scraped)) if text else triples(scraped))


def test_the_exporter_answers_openmetrics_to_our_accept_header() -> None:
    """prometheus_client picks OpenMetrics 1.0.0 for suture's Accept header (so the OpenMetrics parser reads it)."""
    with exporter(app_registry()) as url:
        body = fetch(urllib.parse.urlsplit(url), timeout=2.0, max_bytes=MiB, accept=ACCEPT)
    assert body.content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.data.endswith(b"# EOF\n")


def test_nan_and_infinite_values_are_dropped_and_counted() -> None:
    """NaN, +Inf and -Inf values are left out and counted; a +Inf bucket (a label) is kept."""
    registry = CollectorRegistry()
    for name, value in (("a", math.nan), ("b", math.inf), ("c", -math.inf), ("d", 1.5)):
        Gauge(name, name, registry=registry).set(value)
    Histogram("h", "h", buckets=(1.0,), registry=registry).observe(0.5)
    with exporter(registry) as url:
        s = scraper(url)
        scraped = s.scrape(NOW)
    names = [t for t in triples(scraped) if not t[0].endswith("_created")]
    assert names == [("d", (), 1.5), ("h_bucket", (("le", "1.0"),), 1.0), ("h_bucket", (("le", "+Inf"),), 1.0),
                     ("h_count", (), 1.0), ("h_sum", (), 0.5)]
    assert (s.stats.dropped, scraped.result.detail) == ({"nonfinite": 3}, "6 samples, 3 dropped (nonfinite)")


@pytest.mark.slow
def test_series_over_the_cap_are_dropped_and_counted() -> None:
    """1e5 series over a cap of 1,000: the first 1,000 in the exposition's order are kept, 99,000 counted (~4 s:
    the rest are parsed to be counted)."""
    family = GaugeMetricFamily("g", "g", labels=["i"])
    for i in range(100_000):
        family.add_metric([str(i)], i)
    body = generate_latest(Families([family]))
    with hostile({"/metrics": answer(200, body)}) as base:
        s = scraper(f"{base}/metrics", max_series=1000, timeout=30.0)
        scraped = s.scrape(NOW)
    assert triples(scraped) == [("g", (("i", str(i)),), float(i)) for i in range(1000)]
    assert (s.stats.dropped, s.stats.last_samples, scraped.result.detail) == (
        {"cap": 99_000}, 1000, "1000 samples, 99000 dropped (cap)")


def test_a_duplicate_series_keeps_its_first_value() -> None:
    """The same name and labels twice in one scrape: the first kept, the second counted as a duplicate."""
    body = b'# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\nx{a="2"} 3\n'
    with hostile({"/metrics": answer(200, body)}) as base:
        s = scraper(f"{base}/metrics")
        scraped = s.scrape(NOW)
    assert triples(scraped) == [("x", (("a", "1"),), 1.0), ("x", (("a", "2"),), 3.0)]
    assert s.stats.dropped == {"duplicate": 1}


def test_labels_are_sorted_pairs_with_escapes_undone() -> None:
    """Label values come back as the exporter was given them: quotes, backslashes, newlines, any script."""
    registry = CollectorRegistry()
    Gauge("g", "g", ["z", "a"], registry=registry).labels('say "hi"\\\n', "日本").set(1)
    with exporter(registry) as url:
        scraped = scrape(url)
    assert triples(scraped) == [("g", (("a", "日本"), ("z", 'say "hi"\\\n')), 1.0)]


# -- hostile servers: each scrape returns, unhealthy, with its reason --


def test_http_500_is_a_failed_scrape_with_its_latency() -> None:
    """A status other than 200 is the reason; the server answered, so the latency is known."""
    with hostile({"/metrics": answer(500, b"boom")}) as base:
        scraped = scrape(f"{base}/metrics")
    assert failed(scraped) == "HTTP 500"
    assert scraped.result.latency_ms is not None


def test_a_redirect_is_not_followed() -> None:
    """3xx is a failure: a scrape reads the URL it was given."""
    with hostile({"/metrics": answer(301, b"", headers={"Location": "/elsewhere"})}) as base:
        assert failed(scrape(f"{base}/metrics")) == "HTTP 301"


def test_connection_refused() -> None:
    """Nobody listening: refused, no latency."""
    scraped = scrape(f"http://127.0.0.1:{free_port()}/metrics")
    assert (failed(scraped), scraped.result.latency_ms) == ("connection refused", None)


def test_a_server_that_never_answers_costs_the_timeout(silent_server) -> None:
    """Accepted, then silence: timed out after the configured timeout, and no later."""
    host, port = silent_server
    began = time.monotonic()
    scraped = scrape(f"http://{host}:{port}/metrics", timeout=0.5)
    took = time.monotonic() - began
    assert (failed(scraped), scraped.result.latency_ms) == ("timed out after 0.5s", None)
    assert 0.45 < took < 1.0


def test_a_server_dripping_its_body_cannot_stretch_the_timeout() -> None:
    """A byte every 0.1 s never lets one read time out; the whole exchange still ends at the timeout."""
    stop = threading.Event()
    with hostile({"/metrics": drip(0.1, stop=stop)}) as base:
        began = time.monotonic()
        scraped = scrape(f"{base}/metrics", timeout=0.5)
        took = time.monotonic() - began
        stop.set()
    assert failed(scraped) == "timed out after 0.5s"
    assert took < 1.0


def test_a_100_mb_streamed_body_is_read_only_to_the_cap() -> None:
    """No Content-Length, 100 MB offered: the scraper stops after max_bytes; the server could not send it all."""
    sent: list[int] = []
    with hostile({"/metrics": stream(100 * 1000 * 1000, sent=sent)}) as base:
        began = time.monotonic()
        scraped = scrape(f"{base}/metrics", max_bytes=MiB, timeout=10.0)
        took = time.monotonic() - began
    assert failed(scraped) == "body larger than 1048576 bytes"
    assert took < 2.0
    assert wait_for(lambda: bool(sent)) and sent[0] < 20 * 1000 * 1000  # what the kernel's buffers took


def test_a_content_length_over_the_cap_is_refused_unread() -> None:
    """Content-Length says 100 MB: refused before a byte of the body is read."""
    with hostile({"/metrics": stream(100 * 1000 * 1000, length=True)}) as base:
        assert failed(scrape(f"{base}/metrics", max_bytes=MiB)) == "body larger than 1048576 bytes"


def test_a_body_exactly_at_the_cap_is_read() -> None:
    """max_bytes is the largest body accepted, not one less."""
    body = b"a 1\n" * 256
    with hostile({"/metrics": answer(200, body)}) as base:
        scraped = scrape(f"{base}/metrics", max_bytes=len(body))
    assert triples(scraped) == [("a", (), 1.0)] and scraped.result.healthy


def test_a_10_mb_line_fails_the_scrape_before_the_parser_walks_it() -> None:
    """One label value of 10 MB: the line is over MAX_LINE characters, named by its number."""
    body = b"ok 1\n" + b'x{a="' + b"y" * 10 * 1000 * 1000 + b'"} 1\n'
    with hostile({"/metrics": answer(200, body)}) as base:
        began = time.monotonic()
        scraped = scrape(f"{base}/metrics", timeout=10.0)
        took = time.monotonic() - began
    assert failed(scraped) == f"line 2 longer than {MAX_LINE} characters"
    assert took < 2.0


@pytest.mark.parametrize(("body", "content_type", "reason"), [
    (b"\x00\x9f\x92\x96garbage\xff", "text/plain", "not UTF-8 (byte 0x9f at offset 1)"),
    (b'x{a="\xc3\x28"} 1\n', "text/plain", "not UTF-8 (byte 0xc3 at offset 5)"),
    (b"this is not metrics\n", "text/plain", "parse error: could not convert string to float: 'is'"),
    (b'x{a="unterminated} 1\n', "text/plain", "parse error: could not convert string to float: '{a=\"unterminated}'"),
    (b"# TYPE x\n", "text/plain", "parse error: ValueError"),
    (b"# TYPE x gauge\nx 1\n", "application/openmetrics-text; version=1.0.0", "parse error: Missing # EOF at end"),
    (b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\n# EOF\n", "application/openmetrics-text",
     "parse error: +Inf bucket missing: h"),
], ids=["garbage-bytes", "invalid-utf8", "words", "unterminated-quote", "type-without-kind", "openmetrics-without-eof",
        "bad-histogram"])
def test_a_body_that_does_not_parse_fails_with_the_reason(body: bytes, content_type: str, reason: str) -> None:
    """Bytes that are not UTF-8 name the first bad byte; text the parser refuses carries its message."""
    with hostile({"/metrics": answer(200, body, content_type)}) as base:
        assert failed(scrape(f"{base}/metrics")) == reason


def test_an_invalid_url_fails_every_scrape() -> None:
    """A URL that is not http(s) fails each scrape, naming why, instead of raising at start-up."""
    assert failed(scrape("ftp://example.com/metrics")) == "invalid url: expected http:// or https:// and a host"
    assert failed(scrape("http://127.0.0.1:notaport/metrics")).startswith("invalid url: Port could not be cast")


def test_a_user_and_password_in_the_url_are_sent_as_basic_auth() -> None:
    """http://user:pass@host/: an Authorization header, and the password in no detail."""
    seen: list[str] = []

    def route(h) -> None:
        seen.append(h.headers.get("Authorization", ""))
        answer(401, b"")(h)

    with hostile({"/metrics": route}) as base:
        scraped = scrape(base.replace("http://", "http://me:s%40cret@") + "/metrics")
    assert seen == ["Basic bWU6c0BjcmV0"]  # me:s@cret
    assert failed(scraped) == "HTTP 401"


# -- counters --


def test_counters_follow_the_scrapes() -> None:
    """ok and failed scrapes, samples kept, bytes read and the last duration and error, per source."""
    up = {"on": True}
    body = b"a 1\nb 2\n"

    def route(h) -> None:
        answer(200 if up["on"] else 503, body)(h)

    with hostile({"/metrics": route}) as base:
        s = scraper(f"{base}/metrics")
        s.scrape(NOW)
        s.scrape(NOW + 5)
        up["on"] = False
        s.scrape(NOW + 10)
    stats = s.stats
    assert (stats.ok, stats.failed, stats.samples, stats.bytes, stats.last_samples, stats.last_error) == (
        2, 1, 4, 2 * len(body), 0, "HTTP 503")
    assert 0 < stats.last_duration < 1


def test_scrape_counters_in_metrics_pass_promtool(promtool: str) -> None:
    """suture_scrape_* per source in /metrics, by result and by drop reason; promtool check metrics passes."""
    stats = ScrapeStats(kind="prometheus", ok=3, failed=1, samples=30, bytes=900, dropped={"cap": 7},
                        last_samples=10, last_duration=0.25)
    view = replace(Snapshot.empty(NOW), scrapes={"app_metrics": stats})
    body = Telemetry(lambda: view).render()
    text = body.decode()
    for line in ('suture_scrape_total{result="ok",source="app_metrics"} 3.0',
                 'suture_scrape_total{result="failed",source="app_metrics"} 1.0',
                 'suture_scrape_samples_total{source="app_metrics"} 30.0',
                 'suture_scrape_series_dropped_total{reason="cap",source="app_metrics"} 7.0',
                 'suture_scrape_series_dropped_total{reason="nonfinite",source="app_metrics"} 0.0',
                 'suture_scrape_bytes_total{source="app_metrics"} 900.0',
                 'suture_scrape_duration_seconds{source="app_metrics"} 0.25',
                 'suture_scrape_series{source="app_metrics"} 10.0'):
        assert line in text.splitlines()
    checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, b"")


# -- the property: whatever prometheus_client exposes comes back exactly --


class Families(Collector):
    """A collector whose families the test sets before each scrape."""

    def __init__(self, families: list[Metric] | None = None) -> None:
        self.families: list[Metric] = families or []

    def collect(self) -> list[Metric]:
        return list(self.families)


LABEL_NAMES = ("code", "method", "path_x", "a1")
BOUNDS = (0.005, 0.1, 1.0, 2.5, 10.0)
label_value = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
number = st.floats(allow_nan=False, allow_infinity=False)
any_number = st.floats() | st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def family(draw, index: int) -> Metric:
    kind = draw(st.sampled_from(["counter", "gauge", "histogram"]))
    name = f"m{index}_" + draw(st.text("abcdefghij", min_size=1, max_size=6))
    names = draw(st.lists(st.sampled_from(LABEL_NAMES), unique=True, max_size=2))
    keys = draw(st.lists(st.tuples(*[label_value] * len(names)), unique=True, min_size=1, max_size=4))
    if kind == "counter":
        out: Metric = CounterMetricFamily(name, "c", labels=names)
        for key in keys:
            out.add_metric(list(key), draw(number.filter(lambda v: v >= 0)))
    elif kind == "gauge":
        out = GaugeMetricFamily(name, "g", labels=names)
        for key in keys:
            out.add_metric(list(key), draw(any_number))
    else:
        out = HistogramMetricFamily(name, "h", labels=names)
        for key in keys:
            bounds = sorted(draw(st.sets(st.sampled_from(BOUNDS))))
            counts = sorted(draw(st.lists(st.integers(0, 10**6), min_size=len(bounds) + 1, max_size=len(bounds) + 1)))
            buckets = [(floatToGoString(b), c) for b, c in zip(bounds, counts, strict=False)]
            out.add_metric(list(key), [*buckets, ("+Inf", counts[-1])], draw(number.filter(lambda v: v >= 0)))
    return out


@st.composite
def exposition(draw) -> list[Metric]:
    count = draw(st.integers(1, 5))
    return [draw(family(i)) for i in range(count)]


@pytest.fixture(scope="module")
def exporters():
    collector = Families()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    with exporter(registry) as openmetrics, exporter(registry, text=True) as text:
        yield collector, registry, {"openmetrics": openmetrics, "text": text}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(families=exposition())
def test_what_prometheus_client_exposes_is_scraped_exactly(exporters, families: list[Metric]) -> None:
    """For any families prometheus_client renders (text and OpenMetrics), the scrape gives back each sample:
    name, labels and value, in the exposition's order, NaN and ±Inf left out."""
    collector, registry, urls = exporters
    collector.families = families
    expected = held(registry)
    for fmt, url in urls.items():
        scraped = scrape(url, max_series=100_000)
        assert (fmt, expected) == (fmt, triples(scraped)), scraped.result.detail


# -- in a running sidecar --


def test_a_running_sidecar_scrapes_each_source_on_its_own_thread(tmp_path, target, running) -> None:
    """prometheus: and json: sources in suture.yaml: each scraped every interval, its status a probe
    scrape.<name>, its counters in the snapshot and in /metrics; a target that is down is a status, not a crash."""
    registry = app_registry()
    health = answer(200, b'{"ok": true}', "application/json")
    with exporter(registry) as url, hostile({"/health": health}) as base:
        cfg = write_config(tmp_path, target)
        text = (tmp_path / "suture.yaml").read_text().replace("sources:\n", dedent(f"""
            sources:
              app_metrics: {{prometheus: "{url}", interval: 200ms}}
              app_health: {{json: "{base}/health", interval: 200ms}}
              gone: {{prometheus: "http://127.0.0.1:{free_port()}/metrics", interval: 200ms}}
            """), 1)
        (tmp_path / "suture.yaml").write_text(text)
        cfg = load_config(tmp_path / "suture.yaml", env={})
        r = running(cfg)
        assert wait_for(lambda: all(s.ok + s.failed >= 2 for s in r.sidecar.snapshot().scrapes.values()))
        view = r.sidecar.snapshot()
        rendered = r.sidecar.telemetry.render().decode().splitlines()
    assert sorted(t.name for t in r.sidecar.world.threads if "scrape" in t.name) == [
        "suture-scrape-app_health", "suture-scrape-app_metrics", "suture-scrape-gone"]
    assert (view.probes["scrape.app_metrics"].healthy, view.probes["scrape.app_health"].detail) == (True, "1 samples")
    assert (view.probes["scrape.gone"].healthy, view.probes["scrape.gone"].detail) == (False, "connection refused")
    assert view.scrapes["app_metrics"].last_samples == len(held(registry))
    assert view.scrapes["gone"].ok == 0 and view.thread_restarts == 0
    assert 'suture_probe_up{probe="scrape.gone"} 0.0' in rendered
    assert any(line.startswith('suture_scrape_total{result="failed",source="gone"} ') for line in rendered)
