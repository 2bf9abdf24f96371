"""The demo target: an app that calls a rate-limited upstream.

The upstream is simulated inside the app (a token bucket: RATE requests per
second, bursts of BURST). The app calls it every ``upstream.request_delay_s``
seconds, read from config/settings.yaml, which it re-reads whenever the file
changes. Too short a delay means ``429 Too Many Requests`` errors in the log.

It also serves ``GET /health`` so a probe can watch it.

    python app.py --root DIR --port 8000
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

RATE = 4.0  # upstream allows 4 requests per second
BURST = 5.0


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Config:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime_ns = -1
        self.delay = 1.0

    def refresh(self, log) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if st.st_mtime_ns == self.mtime_ns:
            return
        self.mtime_ns = st.st_mtime_ns
        try:
            data = yaml.safe_load(self.path.read_text())
            delay = float(data["upstream"]["request_delay_s"])
        except Exception as exc:  # a broken config keeps the last good value
            log(f"ERROR config {self.path.name} unreadable, keeping request_delay_s={self.delay}: {exc}")
            return
        if delay != self.delay:
            log(f"INFO config reloaded: request_delay_s={delay}")
        self.delay = delay


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=".")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    root = Path(args.root)
    (root / "logs").mkdir(exist_ok=True)
    logfile = open(root / "logs" / "app.log", "a", buffering=1, encoding="utf-8")

    def log(message: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        logfile.write(f"{stamp} {message}\n")

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            ok = self.path == "/health"
            body = b'{"status": "ok"}' if ok else b"{}"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = Config(root / "config" / "settings.yaml")
    bucket = TokenBucket(RATE, BURST)
    log(f"INFO demo app started (pid {os.getpid()}), upstream allows {RATE:g} req/s")
    n = 0
    while not stop.is_set():
        config.refresh(log)
        n += 1
        if bucket.take():
            log(f"INFO GET https://api.example.test/orders?page={n} 200 OK")
        else:
            log(f"ERROR upstream call failed: 429 Client Error: Too Many Requests for url: https://api.example.test/orders?page={n}")
        stop.wait(config.delay)
    log("INFO demo app stopped")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
