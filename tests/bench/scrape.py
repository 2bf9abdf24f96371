"""Scraping 10,000 series every 5 s: suture's scraper beside a bare urllib GET + prometheus-client parse.

One exporter process serves a prometheus_client registry of 10,000 series (a gauge with an ``i``
label) twice: through ``start_http_server`` (OpenMetrics for suture's Accept header, the text
format for a client that asks nothing) and through its WSGI app with the Accept header hidden (the
text format whatever is asked). Three scraping processes run at once for the same window, each
at one scrape every 5 s, started a third of the interval apart so their requests do not queue:

- suture's :class:`PrometheusScraper` on the OpenMetrics endpoint (what it gets from a
  prometheus_client exporter);
- the same scraper on the text-only endpoint;
- the baseline: ``urllib.request.urlopen(url).read()`` + ``text_string_to_metric_families`` on
  the first endpoint (answered in the text format), every sample turned into a tuple and kept.

Each process reports the CPU it used in the window (``time.process_time``, imports and the
first scrape left out), its RSS at the end (VmRSS) and its highest (VmHWM), and the scrape
durations. The exporter's own CPU is not counted anywhere.

    python tests/bench/run.py scrape            # 60 s
    python tests/bench/run.py scrape --quick    # 15 s
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SERIES = 10_000
INTERVAL = 5.0
WINDOW = 60.0
ROOT = Path(__file__).resolve().parents[2]


def exporter() -> None:
    """Serve the registry on two ports, print both URLs, and serve until stdin closes."""
    from prometheus_client import CollectorRegistry, Gauge

    from tests.scrape_servers import exporter as serve

    registry = CollectorRegistry()
    gauge = Gauge("app_series", "One of many series.", ["i"], registry=registry)
    for i in range(SERIES):
        gauge.labels(str(i)).set(i)
    with serve(registry) as openmetrics, serve(registry, text=True) as text:
        print(json.dumps({"openmetrics": openmetrics, "text": text}), flush=True)
        sys.stdin.read()


def _memory() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process, MiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def worker(kind: str, url: str, window: float, delay: float) -> None:
    """Scrape ``url`` every INTERVAL s for ``window`` s; print what it cost as JSON."""
    import urllib.request
    from collections.abc import Callable

    scrape: Callable[[], int]
    if kind == "suture":
        from suture.engine.config_scrape import ScrapeConfig
        from suture.sidecar.sources.scrape import PrometheusScraper

        scraper = PrometheusScraper(ScrapeConfig(name="bench", kind="prometheus", url=url, timeout=4.0))

        def scrape() -> int:
            scraped = scraper.scrape(time.time())
            assert scraped.result.healthy, scraped.result.detail
            return len(scraped.samples)
    else:
        from prometheus_client.parser import text_string_to_metric_families

        def scrape() -> int:
            with urllib.request.urlopen(url, timeout=4.0) as resp:
                body = resp.read()
            samples = [(s.name, s.labels, s.value)
                       for family in text_string_to_metric_families(body.decode()) for s in family.samples]
            return len(samples)

    time.sleep(delay)
    scrape()  # warm: connections, caches; not measured
    durations: list[float] = []
    counts: set[int] = set()
    began, cpu0 = time.monotonic(), time.process_time()
    tick = began
    while time.monotonic() - began < window:
        t0 = time.perf_counter()
        counts.add(scrape())
        durations.append(time.perf_counter() - t0)
        tick += INTERVAL
        time.sleep(max(0.0, tick - time.monotonic()))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - began
    rss, peak = _memory()
    print(json.dumps({"cpu": cpu, "wall": wall, "scrapes": len(durations), "samples": sorted(counts),
                      "p50": statistics.median(durations), "max": max(durations), "rss": rss, "peak": peak}))


ROWS = (
    ("suture PrometheusScraper, OpenMetrics (what prometheus_client answers its Accept)", "suture", "openmetrics"),
    ("suture PrometheusScraper, text format 0.0.4", "suture", "text"),
    ("baseline: urllib GET + prometheus_client text parser, samples kept as tuples", "baseline", "openmetrics"),
)


def main(quick: bool = False) -> None:
    window = 15.0 if quick else WINDOW
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    began = time.monotonic()
    module = [sys.executable, "-m", "tests.bench.scrape"]
    serving = subprocess.Popen([*module, "exporter"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                               cwd=ROOT)
    try:
        assert serving.stdout is not None
        urls = json.loads(serving.stdout.readline())
        workers = [subprocess.Popen([*module, "worker", kind, urls[endpoint], str(window), str(i * INTERVAL / len(ROWS))],
                                    stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
                   for i, (_, kind, endpoint) in enumerate(ROWS)]
        results = [json.loads(w.communicate(timeout=window + 120)[0]) for w in workers]
    finally:
        if serving.stdin is not None:
            serving.stdin.close()
        serving.wait(10)
    print(f"Scrape, {SERIES:,} series every {INTERVAL:g} s for {window:g} s, three scrapers at once against one "
          f"prometheus_client exporter: `make bench` (python tests/bench/run.py scrape), {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, {time.monotonic() - began:.0f} s in all")
    print()
    print("| what | scrapes | samples each | CPU % of one core | CPU ms per scrape | scrape p50 / max ms "
          "| RSS MiB at the end | highest RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (what, _, _), r in zip(ROWS, results, strict=True):
        samples = "/".join(f"{n:,}" for n in r["samples"])
        print(f"| {what} | {r['scrapes']} | {samples} | {100 * r['cpu'] / r['wall']:.1f} "
              f"| {1000 * r['cpu'] / r['scrapes']:.0f} | {1000 * r['p50']:.0f} / {1000 * r['max']:.0f} "
              f"| {r['rss']:.0f} | {r['peak']:.0f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["exporter"]:
        exporter()
    elif sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    else:
        main(quick="--quick" in sys.argv)
