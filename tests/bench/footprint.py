"""Footprint: the sidecar's CPU and memory while idle and under log traffic.

`suture run` runs as a real subprocess (API on, 50 playbooks, 3 probes: http,
tcp and the sidecar's own API) while a writer appends realistic lines at a
fixed rate; we read the process's CPU time and RSS with psutil at the start
and the end of each phase. Baseline in the same run: GNU `tail -F` following
the same file at the same rate.
"""

from __future__ import annotations

import http.server
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from . import replay

PHASE = 20.0  # seconds per measured phase


def write_world(root: Path, port: int, api_port: int) -> Path:
    (root / "target" / "config").mkdir(parents=True)
    (root / "target" / "logs").mkdir()
    (root / "target" / "config" / "settings.yaml").write_text(replay.SETTINGS)
    (root / "playbooks").mkdir()
    from .ingest import fifty_patterns

    for i, pattern in enumerate(fifty_patterns()):
        quoted = "'" + pattern.replace("'", "''") + "'"
        (root / "playbooks" / f"p{i:02d}.yaml").write_text(
            f"id: p{i:02d}\nwhen:\n  all:\n    - log: {{source: app, pattern: {quoted}, at_least: 50, within: 1m}}\n"
            f"    - probe: {{name: api, status: healthy}}\n"
            f"confidence: 50\nmode: shadow\nfix: [{{adjust: {{file: config/settings.yaml, key: upstream.timeout_s, add: 1}}}}]\n"
            f"validate: {{window: 1m, expect: [{{log: {{source: app, pattern: {quoted}, at_most: 0}}}}]}}\n"
        )
    (root / "suture.yaml").write_text(
        "target_root: ./target\nallowed_paths: [config/]\nplaybooks: ./playbooks\nstate_dir: ./state\n"
        f"sources:\n  app: {{file: {root}/target/logs/app.log}}\n"
        f"probes:\n  api: {{http: 'http://127.0.0.1:{port}/health', interval: 5s}}\n"
        f"  tcp: {{tcp: '127.0.0.1:{port}', interval: 5s}}\n"
        f"  self: {{http: 'http://127.0.0.1:{api_port}/api/monitoring/health', interval: 5s}}\n"
        f"api: {{listen: '127.0.0.1:{api_port}'}}\n"
    )
    return root / "suture.yaml"


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def writer(log: Path, rate: float, seconds: float, stop: threading.Event | None = None) -> None:
    """Append ``rate`` realistic lines a second to ``log`` for ``seconds`` (or until ``stop``), flushing every 10 ms."""
    rnd = random.Random(3)
    deadline = time.monotonic() + seconds
    tick = 0.01
    per_tick = rate * tick
    owed = 0.0
    with open(log, "a", buffering=1 << 16) as fh:
        next_at = time.monotonic()
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            owed += per_tick
            n = int(owed)
            owed -= n
            stamp = replay._stamp(time.time())
            fh.write("".join(f"{stamp} {replay._background(rnd)}\n" for _ in range(n)))
            fh.flush()
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))


def measure(proc: psutil.Process, seconds: float, work: threading.Thread | None) -> tuple[float, float, float]:
    """(CPU % of one core, RSS MiB at the end, highest RSS MiB seen, sampled every 0.25 s) over a phase."""
    before = proc.cpu_times()
    began = time.monotonic()
    peak = 0
    if work is not None:
        work.start()
    while (work.is_alive() if work is not None else time.monotonic() - began < seconds):
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.25)
    took = time.monotonic() - began
    after = proc.cpu_times()
    cpu = (after.user + after.system - before.user - before.system) / took * 100
    rss = proc.memory_info().rss
    return cpu, rss / 2**20, max(peak, rss) / 2**20


def main(quick: bool = False) -> None:
    phase = 5.0 if quick else PHASE
    rates = (1_000, 10_000)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from suture.sidecar.demo import free_port

        config = write_world(root, server.server_address[1], free_port())
        log = root / "target" / "logs" / "app.log"
        log.write_text("")
        exe = [sys.executable, "-m", "suture.sidecar.cli", "run", "--config", str(config)]
        child = subprocess.Popen(exe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        proc = psutil.Process(child.pid)
        time.sleep(5)  # start-up, first probes
        rows.append(("suture run, idle (50 playbooks, 3 probes)", *measure(proc, phase, None)))
        for rate in rates:
            work = threading.Thread(target=writer, args=(log, rate, phase))
            rows.append((f"suture run, {rate:,} lines/s", *measure(proc, phase, work)))
        child.terminate()
        child.wait(10)
        tail = subprocess.Popen(["tail", "-n0", "-F", str(log)], stdout=subprocess.DEVNULL)
        tproc = psutil.Process(tail.pid)
        time.sleep(0.5)
        for rate in rates:
            work = threading.Thread(target=writer, args=(log, rate, phase))
            rows.append((f"baseline: tail -F, {rate:,} lines/s", *measure(tproc, phase, work)))
        tail.terminate()
        tail.wait()
    server.shutdown()
    print(f"Footprint, {phase:g} s per phase: `make bench` (python tests/bench/run.py footprint), "
          f"{os.cpu_count()} cores")
    print()
    print("| what | CPU % of one core | RSS MiB at the end | highest RSS MiB (MB) |")
    print("|---|---:|---:|---:|")
    for name, cpu, rss, peak in rows:
        print(f"| {name} | {cpu:.1f} | {rss:.0f} | {peak:.0f} ({peak * 2**20 / 1e6:.0f}) |")
