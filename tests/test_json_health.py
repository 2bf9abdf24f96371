"""JSON health documents from a real HTTP server: numbers and booleans by dotted path; hostile bodies fail, never raise."""

from __future__ import annotations

import json
import time

import pytest
from suture.engine.config_scrape import MiB, ScrapeConfig
from suture.sidecar.sources.json_health import MAX_DEPTH, MAX_NAME, JsonHealthScraper
from suture.sidecar.sources.scrape import Scraped

from .scrape_servers import answer, hostile, stream, wait_for
from .servers import free_port, silent_server  # noqa: F401

NOW = 1000.0


def scraper(url: str, **fields) -> JsonHealthScraper:
    return JsonHealthScraper(ScrapeConfig(name="app_health", kind="json", url=url, max_bytes=fields.pop("max_bytes", MiB),
                                          **fields))


def served(body: bytes | str, **fields) -> tuple[JsonHealthScraper, Scraped]:
    """Scrape ``body`` served once as application/json."""
    data = body.encode() if isinstance(body, str) else body
    with hostile({"/health": answer(200, data, "application/json")}) as base:
        s = scraper(f"{base}/health", **fields)
        return s, s.scrape(NOW)


def pairs(scraped: Scraped) -> list[tuple[str, float]]:
    assert all(s.labels == () and s.at == NOW for s in scraped.samples)
    return [(s.name, s.value) for s in scraped.samples]


def failed(scraped: Scraped) -> str:
    assert (scraped.samples, scraped.result.name, scraped.result.healthy) == ((), "scrape.app_health", False)
    return scraped.result.detail


def test_numbers_and_booleans_become_metrics_by_dotted_path() -> None:
    """Objects by key, lists by index, true 1 and false 0, in document order; strings and null are not metrics."""
    doc = {"db": {"ok": True, "latency_ms": 3.5}, "queue": 12, "checks": [{"ok": False}, {"ok": True, "n": 2}],
           "status": "green", "none": None}
    _, scraped = served(json.dumps(doc))
    assert pairs(scraped) == [("app_health.db.ok", 1.0), ("app_health.db.latency_ms", 3.5), ("app_health.queue", 12.0),
                              ("app_health.checks.0.ok", 0.0), ("app_health.checks.1.ok", 1.0),
                              ("app_health.checks.1.n", 2.0)]
    assert (scraped.result.healthy, scraped.result.detail) == (True, "6 samples")


@pytest.mark.parametrize(("body", "expected"), [
    ("42", [("app_health", 42.0)]),
    ("true", [("app_health", 1.0)]),
    ("[1, [2, false]]", [("app_health.0", 1.0), ("app_health.1.0", 2.0), ("app_health.1.1", 0.0)]),
    ('"fine"', []),
    ("null", []),
    ("{}", []),
], ids=["bare-number", "bare-bool", "list", "bare-string", "null", "empty-object"])
def test_any_json_document_is_a_healthy_scrape(body: str, expected: list[tuple[str, float]]) -> None:
    """A bare number is the metric named after the source; a bare string or null has none, and is still up."""
    _, scraped = served(body)
    assert (pairs(scraped), scraped.result.healthy) == (expected, True)


def test_keys_with_dots_and_odd_characters_are_kept_as_written() -> None:
    """No escaping: a dotted key reads like a path, and the second of two equal names is a counted duplicate."""
    s, scraped = served('{"a.b": 1, "a": {"b": 2}, "ünï cødé/x": 3, "": 4, "sp ace": {"\\n": 5}}')
    assert pairs(scraped) == [("app_health.a.b", 1.0), ("app_health.ünï cødé/x", 3.0), ("app_health.", 4.0),
                              ("app_health.sp ace.\n", 5.0)]
    assert s.stats.dropped == {"duplicate": 1}


def test_names_longer_than_the_bound_are_skipped_and_counted() -> None:
    """A name over MAX_NAME characters is left out (counted as long_name); one at the bound is kept."""
    fits = "k" * (MAX_NAME - len("app_health."))
    s, scraped = served(json.dumps({fits: 1, fits + "x": 2}))
    assert (pairs(scraped), s.stats.dropped) == ([(f"app_health.{fits}", 1.0)], {"long_name": 1})


def test_nan_infinity_and_huge_numbers_are_dropped_and_counted() -> None:
    """Python's json takes NaN, Infinity and 1e400; none is a metric, each is counted as nonfinite."""
    s, scraped = served('{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e400, "e": ' + "9" * 400 + ', "f": 1}')
    assert (pairs(scraped), s.stats.dropped) == ([("app_health.f", 1.0)], {"nonfinite": 5})


def test_values_over_max_series_are_dropped_and_counted() -> None:
    """The first max_series values in document order are kept."""
    s, scraped = served(json.dumps({"v": list(range(5000))}), max_series=1000)
    assert pairs(scraped) == [(f"app_health.v.{i}", float(i)) for i in range(1000)]
    assert (s.stats.dropped, scraped.result.detail) == ({"cap": 4000}, "1000 samples, 4000 dropped (cap)")


def test_depth_up_to_the_bound_is_read() -> None:
    """MAX_DEPTH containers inside one another are read; one more fails the scrape."""
    deep = "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH
    _, scraped = served(deep)
    assert pairs(scraped) == [("app_health" + ".0" * MAX_DEPTH, 1.0)]
    _, scraped = served("[" + deep + "]")
    assert failed(scraped) == f"nested deeper than {MAX_DEPTH} levels"


@pytest.mark.parametrize(("body", "reason"), [
    ("[" * 10_000 + "]" * 10_000, f"nested deeper than {MAX_DEPTH} levels"),
    ('{"a": ' * 10_000 + "1" + "}" * 10_000, f"nested deeper than {MAX_DEPTH} levels"),
    ("<html>502 Bad Gateway</html>", "not JSON (Expecting value at line 1 column 1)"),
    ('{"a": 1,}', "not JSON (Expecting property name enclosed in double quotes at line 1 column 9)"),
    ('{"a": 1} {"b": 2}', "not JSON (Extra data at line 1 column 10)"),
    ("", "not JSON (Expecting value at line 1 column 1)"),
    ("1" * 5000, "not JSON (Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; "
                 "use sys.set_int_max_str_digits() to increase the limit)"),
    (b'{"a": "\xff"}', "not UTF-8 (byte 0xff at offset 7)"),
    (bytes(range(256)), "not UTF-8 (byte 0x80 at offset 128)"),
], ids=["list-10000-deep", "object-10000-deep", "html", "trailing-comma", "two-documents", "empty", "huge-integer",
        "invalid-utf8", "garbage-bytes"])
def test_a_body_that_is_not_a_json_document_fails_with_the_reason(body: str | bytes, reason: str) -> None:
    """Non-JSON, too deep, not UTF-8: no samples, unhealthy with the reason, and the scrape returned."""
    _, scraped = served(body)
    assert failed(scraped) == reason


def test_a_huge_body_is_read_only_to_the_cap() -> None:
    """100 MB offered with no Content-Length, the default cap of 1 MiB: read to the cap, then given up."""
    sent: list[int] = []
    with hostile({"/health": stream(100 * 1000 * 1000, sent=sent)}) as base:
        began = time.monotonic()
        scraped = scraper(f"{base}/health", timeout=10.0).scrape(NOW)
        took = time.monotonic() - began
    assert failed(scraped) == "body larger than 1048576 bytes"
    assert took < 5.0  # gave up at the cap, well inside the 10 s timeout
    assert wait_for(lambda: bool(sent)) and sent[0] < 20 * 1000 * 1000  # the handler notes it after the hang-up


def test_http_errors_refusals_and_silence_are_failed_scrapes(silent_server) -> None:
    """HTTP 500 (with its latency), a refused connection and a server that never answers (its timeout)."""
    with hostile({"/health": answer(500, b'{"ok": false}', "application/json")}) as base:
        scraped = scraper(f"{base}/health").scrape(NOW)
    assert failed(scraped) == "HTTP 500" and scraped.result.latency_ms is not None
    assert failed(scraper(f"http://127.0.0.1:{free_port()}/health").scrape(NOW)) == "connection refused"
    host, port = silent_server
    assert failed(scraper(f"http://{host}:{port}/health", timeout=0.3).scrape(NOW)) == "timed out after 0.3s"


def test_failures_and_successes_are_counted() -> None:
    """ok and failed per scrape, bytes and samples of the ok ones, the last error until the next success."""
    body = {"text": b'{"a": 1}'}

    def route(h) -> None:
        answer(200, body["text"], "application/json")(h)

    with hostile({"/health": route}) as base:
        s = scraper(f"{base}/health")
        s.scrape(NOW)
        body["text"] = b"not json"
        s.scrape(NOW + 5)
        assert (s.stats.ok, s.stats.failed, s.stats.last_error) == (1, 1, "not JSON (Expecting value at line 1 column 1)")
        body["text"] = b'{"a": 2, "b": 3}'
        s.scrape(NOW + 10)
    assert (s.stats.ok, s.stats.failed, s.stats.samples, s.stats.bytes, s.stats.last_error) == (2, 1, 3, 24, "")
