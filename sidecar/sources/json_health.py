"""JSON health documents: every number and boolean becomes a metric named by its path.

    sources:
      app_health: { json: "http://127.0.0.1:8000/health", interval: 5s }

    {"db": {"ok": true, "latency_ms": 3.5}, "queue": 12, "checks": [{"ok": false}], "status": "green"}
    -> app_health.db.ok 1, app_health.db.latency_ms 3.5, app_health.queue 12, app_health.checks.0.ok 0

The name is the source's name and the keys on the way, joined with dots; list items by their
index. Keys are kept as written (a key with a dot in it is indistinguishable from a nested one:
the first of two equal names is kept, the second counted as ``duplicate``). A document that is
a bare number is the metric named after the source itself. ``true`` is 1, ``false`` 0; strings
and ``null`` are not metrics. Samples carry no labels.

Bounds, each counted as :mod:`.scrape` counts them: names longer than :data:`MAX_NAME`
characters are skipped (``long_name``), NaN and Infinity (which Python's json accepts) and
integers too large for a float are dropped (``nonfinite``), values after the first
``max_series`` are dropped (``cap``). A body that is not UTF-8, not JSON, larger than
``max_bytes`` (1 MiB unless configured) or nested deeper than :data:`MAX_DEPTH` fails the scrape:
no samples, an unhealthy ``scrape.<source>`` result with the reason.
"""

from __future__ import annotations

import json
from typing import Any

from .scrape import Body, Kept, ScrapeFailed, Scraper, one_line, utf8

MAX_DEPTH = 32  # objects and lists inside one another
MAX_NAME = 256  # characters of a metric name, the source's name and the dots included


class JsonHealthScraper(Scraper):
    accept = "application/json"

    def parse(self, body: Body, at: float) -> Kept:
        text = utf8(body.data)
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScrapeFailed(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", answered=True) from None
        except RecursionError:
            raise ScrapeFailed(_too_deep(), answered=True) from None
        except ValueError as exc:  # an integer with more digits than Python converts
            raise ScrapeFailed(f"not JSON ({one_line(str(exc))})", answered=True) from None
        kept = Kept(self.cfg.max_series)
        _walk(document, self.name, 0, kept, at)
        return kept


def _walk(value: Any, name: str, depth: int, kept: Kept, at: float) -> None:
    """Add every number under ``value`` in document order; a part nested too deep fails the whole scrape."""
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise ScrapeFailed(_too_deep(), answered=True)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _walk(item, f"{name}.{key}", depth + 1, kept, at)
        return
    if value is None or isinstance(value, str):
        return
    if len(name) > MAX_NAME:
        kept.dropped["long_name"] += 1
        return
    kept.add(name, (), float(value) if isinstance(value, bool) else value, at)


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels"
