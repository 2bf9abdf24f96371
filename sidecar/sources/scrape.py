"""Scraped sources: a Prometheus endpoint (text format or OpenMetrics), read every interval.

    scraper = PrometheusScraper(cfg)        # cfg: a ScrapeConfig of Config.scrapes
    scraped = scraper.scrape(now)           # never raises
    scraped.samples                         # MetricSample per exposed sample, all stamped ``now``
    scraped.result                          # ProbeResult "scrape.<source>": healthy when the scrape worked

One scrape is one HTTP GET (``Accept`` prefers OpenMetrics 1.0.0, then 0.0.1, then the text
format 0.0.4) bounded by ``timeout`` for the whole exchange, connect to last byte, and by
``max_bytes`` for the body. The body is parsed by prometheus-client's own parsers: the OpenMetrics
one when the answer's Content-Type says ``application/openmetrics-text``, the text-format one
otherwise. Each sample becomes ``MetricSample(name, value, at=now, labels)``: the sample's own name
(``http_requests_total``, ``x_bucket`` with its ``le`` label, ``x_sum``, ``x_count``, ``x_created``)
and its labels as sorted pairs. prometheus-client's text parser names the samples of a counter
whose name lacks ``_total`` with ``_total`` added (it models every counter the OpenMetrics way).

What is dropped, and counted in :class:`ScrapeStats` (``/metrics``: ``suture_scrape_series_dropped_total``):

- ``nonfinite``: NaN and ±Inf values (``le="+Inf"`` is a label, kept);
- ``duplicate``: a series (name and labels) already seen in the same scrape: the first is kept;
- ``cap``: every sample after the first ``max_series`` kept;
- ``unsupported``: samples without a plain number (native histograms).

A scrape fails as a whole (no samples, an unhealthy result whose detail is the reason) when the
target refuses, times out, answers anything but 200, sends more than ``max_bytes``, a body that is
not UTF-8, a line longer than :data:`MAX_LINE` characters, or something the parser refuses.
Timestamps in the exposition are ignored: a sample is stamped when it was scraped.
"""

from __future__ import annotations

import abc
import base64
import http.client
import math
import socket
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as text_families
from suture.engine.config_scrape import ScrapeConfig

from .base import MetricSample, ProbeResult

ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
CHUNK = 64 * 1024  # bytes per read: one recv at most, so the deadline is checked between reads
MAX_LINE = 64 * 1024  # characters; a longer line fails the scrape (the parser is pure Python: keep it bounded)
REASON_LIMIT = 200  # characters of a parser's message kept in a reason
DROP_REASONS = ("cap", "duplicate", "long_name", "nonfinite", "unsupported")
FAILURES: tuple[tuple[type[BaseException], str], ...] = (  # errors of the exchange -> the reason shown
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "unknown host"),
    (http.client.RemoteDisconnected, "connection closed without an answer"),
)


class ScrapeFailed(Exception):
    """Why a scrape produced nothing; ``answered``: the server sent a status line (its latency is known)."""

    def __init__(self, reason: str, *, answered: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answered = answered


@dataclass(frozen=True, slots=True, kw_only=True)
class Body:
    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeStats:
    """A source's counters since start-up; replaced whole after every scrape, so readers never see half of one."""

    kind: str
    ok: int = 0
    failed: int = 0
    samples: int = 0  # kept, all scrapes together
    bytes: int = 0  # bodies read, all scrapes together
    dropped: Mapping[str, int] = field(default_factory=dict)  # reason (DROP_REASONS) -> samples, all scrapes
    last_samples: int = 0
    last_duration: float = 0.0  # seconds, the last scrape (failed or not)
    last_error: str = ""  # the last failure's reason ("" after a success)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scraped:
    samples: Sequence[MetricSample]
    result: ProbeResult


@dataclass(slots=True)
class Kept:
    """The samples of one scrape being kept, and what was dropped (the cap and duplicates apply here)."""

    max_series: int
    samples: list[MetricSample] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=set)

    def add(self, name: str, labels: tuple[tuple[str, str], ...], value: Any, at: float) -> None:
        number = value if value.__class__ is float else _number(value)  # per sample: the common case first
        if number is None or number - number != 0:  # x - x is NaN for NaN and ±Inf
            self.dropped["unsupported" if number is None else "nonfinite"] += 1
        elif len(self.samples) >= self.max_series:
            self.dropped["cap"] += 1
        elif (name, labels) in self.seen:
            self.dropped["duplicate"] += 1
        else:
            self.seen.add((name, labels))
            self.samples.append(MetricSample(name=name, value=number, at=at, labels=labels))


def _number(value: Any) -> float | None:
    """An int as a float (+Inf when too large for one), a float as is; None for anything else (and bools)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def scrape_numbers(stats: ScrapeStats | None) -> dict[str, int]:
    """A scraped source's counters as the page and /api/status show them (dropped samples by reason)."""
    if stats is None:
        return {}
    return {"scrapes_ok": stats.ok, "scrapes_failed": stats.failed, "samples": stats.samples,
            "last_samples": stats.last_samples, "bytes": stats.bytes,
            **{f"dropped_{reason}": n for reason, n in sorted(stats.dropped.items()) if n}}


def scrape_level(stats: ScrapeStats | None) -> tuple[str, str]:
    """A scraped source's colour and why: its last scrape failed, or it drops samples, or it is fine."""
    if stats is None or stats.ok + stats.failed == 0:
        return "unknown", "not scraped yet"
    if stats.last_error:
        return "critical", f"last scrape failed: {stats.last_error}"
    dropped = sum(stats.dropped.values())
    if dropped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(stats.dropped.items()) if n)
        return "warning", f"{dropped} sample(s) dropped ({reasons})"
    return "healthy", f"{stats.last_samples} sample(s) in {stats.last_duration * 1000:.0f} ms"


# -- the HTTP exchange --


def scrape_view(config: ScrapeConfig, stats: ScrapeStats | None) -> dict[str, Any]:
    """One scraped source for /api/status: its URL (redacted), its level and why, its counters."""
    level, detail = scrape_level(stats)
    return {"kind": config.kind, "url": redact_url(config.url), "status": level, "detail": detail,
            **scrape_numbers(stats)}


def redact_url(url: str) -> str:
    """The URL as a person may see it: a ``user:password@`` in it becomes ``***@``."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


def fetch(url: urllib.parse.SplitResult, *, timeout: float, max_bytes: int, accept: str) -> Body:
    """GET ``url`` within ``timeout`` seconds in all; the body at most ``max_bytes``; raises ScrapeFailed only."""
    deadline = time.monotonic() + timeout
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    headers = {"Accept": accept, "User-Agent": "suture-scrape", "Connection": "close"}
    if url.username is not None:
        pair = f"{urllib.parse.unquote(url.username)}:{urllib.parse.unquote(url.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    answered = False
    try:
        conn.request("GET", (url.path or "/") + (f"?{url.query}" if url.query else ""), headers=headers)
        _bound(conn, deadline, timeout)
        resp = conn.getresponse()
        answered = True
        if resp.status != 200:
            raise ScrapeFailed(f"HTTP {resp.status}", answered=True)
        if resp.length is not None and resp.length > max_bytes:
            raise ScrapeFailed(_too_big(max_bytes), answered=True)
        chunks: list[bytes] = []
        size = 0
        while True:
            _bound(conn, deadline, timeout)
            chunk = resp.read1(min(CHUNK, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise ScrapeFailed(_too_big(max_bytes), answered=True)
        return Body(data=b"".join(chunks), content_type=resp.getheader("Content-Type") or "")
    except (OSError, http.client.HTTPException) as exc:
        raise ScrapeFailed(_describe(exc, timeout), answered=answered) from exc
    finally:
        conn.close()


def _bound(conn: http.client.HTTPConnection, deadline: float, timeout: float) -> None:
    """The next socket wait ends at the deadline: a server dripping bytes cannot stretch a scrape."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _too_big(max_bytes: int) -> str:
    return f"body larger than {max_bytes} bytes"


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, http.client.IncompleteRead):
        return f"body cut short after {len(exc.partial)} bytes"
    known = next((words for kind, words in FAILURES if isinstance(exc, kind)), None)
    if known is None and isinstance(exc, OSError) and exc.strerror:
        known = exc.strerror
    return known or one_line(f"{type(exc).__name__}: {exc}")


def one_line(text: str, limit: int = REASON_LIMIT) -> str:
    return " ".join(text.split())[:limit]


def utf8(data: bytes) -> str:
    """``data`` decoded; ScrapeFailed naming the first bad byte when it is not UTF-8 (a BOM is allowed)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScrapeFailed(f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})", answered=True) from None


# -- the parse --


def parse_exposition(text: str, content_type: str, *, max_series: int, at: float) -> Kept:
    """Every sample of a text-format or OpenMetrics exposition, through prometheus-client's parser."""
    for number, line in enumerate(text.split("\n"), 1):  # a long line is found before the parser walks it
        if len(line) > MAX_LINE:
            raise ScrapeFailed(f"line {number} longer than {MAX_LINE} characters", answered=True)
    media = content_type.partition(";")[0].strip().lower()
    families: Iterable[Metric] = (
        openmetrics_families(text)  # type: ignore[no-untyped-call]
        if media == "application/openmetrics-text" else text_families(text)
    )
    kept = Kept(max_series)
    add = kept.add
    try:
        for family in families:
            for sample in family.samples:
                add(sample.name, tuple(sorted(sample.labels.items())), sample.value, at)
    except Exception as exc:  # a third-party parser of hostile text: whatever it raises is a parse error
        raise ScrapeFailed(f"parse error: {one_line(str(exc)) or type(exc).__name__}", answered=True) from None
    return kept


# -- the scraper --


class Scraper(abc.ABC):
    """One scraped source: fetch, parse, count. Subclasses say what to accept and how to parse."""

    accept = "*/*"

    def __init__(self, cfg: ScrapeConfig) -> None:
        self.name = cfg.name
        self.interval = cfg.interval
        self.cfg = cfg
        self.probe = f"scrape.{cfg.name}"
        self.stats = ScrapeStats(kind=cfg.kind)
        self._problem = ""
        self.url = urllib.parse.urlsplit("")
        try:
            self.url = urllib.parse.urlsplit(cfg.url)
            if self.url.scheme not in ("http", "https") or not self.url.hostname:
                raise ValueError("expected http:// or https:// and a host")
            _ = self.url.port  # a malformed port raises here, not at every scrape
        except ValueError as exc:
            self._problem = f"invalid url: {one_line(str(exc))}"

    @abc.abstractmethod
    def parse(self, body: Body, at: float) -> Kept:
        """The samples of a body this kind of source reads (PrometheusScraper, JsonHealthScraper)."""

    def scrape(self, now: float) -> Scraped:
        """One scrape; never raises (a failure is an unhealthy result with the reason)."""
        began = time.perf_counter()
        try:
            if self._problem:
                raise ScrapeFailed(self._problem)
            body = fetch(self.url, timeout=self.cfg.timeout, max_bytes=self.cfg.max_bytes, accept=self.accept)
            kept = self.parse(body, now)
        except ScrapeFailed as failed:
            elapsed = time.perf_counter() - began
            self._count(elapsed, failed=failed.reason)
            latency = round(elapsed * 1000, 2) if failed.answered else None
            return Scraped(samples=(), result=ProbeResult(name=self.probe, healthy=False, latency_ms=latency, at=now,
                                                          detail=failed.reason))
        elapsed = time.perf_counter() - began
        self._count(elapsed, size=len(body.data), kept=kept)
        detail = ", ".join([f"{len(kept.samples)} samples",
                            *(f"{n} dropped ({why})" for why, n in sorted(kept.dropped.items()))])
        result = ProbeResult(name=self.probe, healthy=True, latency_ms=round(elapsed * 1000, 2), at=now, detail=detail,
                             values=(("samples", float(len(kept.samples))), ("bytes", float(len(body.data)))))
        return Scraped(samples=kept.samples, result=result)

    def _count(self, elapsed: float, *, failed: str = "", size: int = 0, kept: Kept | None = None) -> None:
        s = self.stats
        if kept is None:
            self.stats = replace(s, failed=s.failed + 1, last_samples=0, last_duration=elapsed, last_error=failed)
            return
        dropped = Counter(s.dropped)
        dropped.update(kept.dropped)
        self.stats = replace(s, ok=s.ok + 1, samples=s.samples + len(kept.samples), bytes=s.bytes + size,
                             dropped=dict(dropped), last_samples=len(kept.samples), last_duration=elapsed,
                             last_error="")


class PrometheusScraper(Scraper):
    accept = ACCEPT

    def parse(self, body: Body, at: float) -> Kept:
        return parse_exposition(utf8(body.data), body.content_type, max_series=self.cfg.max_series, at=at)

