"""Idle CPU: a running `suture run` with nothing to read, thread by thread, beside an idle `tail -F`.

The sidecar runs as a real subprocess (50 playbooks, 3 probes: http, tcp and the
sidecar's own API; API on) through tests/bench/named.py, which hands each
Python thread's name to the kernel. Nothing is appended. Over the same window
we read each thread's CPU time (/proc/<pid>/task/<tid>/schedstat: nanoseconds
on the CPU, or stat's clock ticks where there is no schedstat) and its context
switches (each one a wake-up, or a preemption), and the same for a GNU
`tail -F` following the sidecar's log, started at the same time.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import footprint

WINDOW = 20.0  # seconds measured
SETTLE = 6.0  # seconds of start-up before measuring (loading, first probes, first heap trim)
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Usage:
    """What one thread (or a whole process) used so far."""

    cpu_s: float
    switches: int


def thread_usage(pid: int, tid: int) -> tuple[str, Usage] | None:
    task = Path(f"/proc/{pid}/task/{tid}")
    try:
        name = (task / "comm").read_text().strip()
        schedstat = task / "schedstat"
        if schedstat.exists():
            cpu = int(schedstat.read_text().split()[0]) / 1e9
        else:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)
        status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
    except (OSError, KeyError, ValueError, IndexError):
        return None  # the thread ended between listing and reading
    return name, Usage(cpu, switches)


def process_cpu(pid: int) -> float:
    """CPU seconds of the whole process, threads that have ended included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def threads(pid: int) -> dict[int, tuple[str, Usage]]:
    out = {}
    for entry in os.listdir(f"/proc/{pid}/task"):
        got = thread_usage(pid, int(entry))
        if got is not None:
            out[int(entry)] = got
    return out


def measure(pids: dict[str, int], seconds: float) -> tuple[dict[str, float], dict[str, dict[str, tuple[float, float]]]]:
    """CPU % of one core per process, and per process {thread name: (CPU %, switches/s)}, over ``seconds``."""
    before = {what: (process_cpu(pid), threads(pid)) for what, pid in pids.items()}
    began = time.monotonic()
    time.sleep(seconds)
    took = time.monotonic() - began
    totals, per_thread = {}, {}
    for what, pid in pids.items():
        cpu0, threads0 = before[what]
        totals[what] = (process_cpu(pid) - cpu0) / took * 100
        rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for tid, (name, now) in threads(pid).items():
            then = threads0.get(tid, (name, Usage(0.0, 0)))[1]
            rows[name][0] += (now.cpu_s - then.cpu_s) / took * 100
            rows[name][1] += (now.switches - then.switches) / took
        per_thread[what] = {name: (cpu, sw) for name, (cpu, sw) in rows.items()}
    return totals, per_thread


def main(quick: bool = False) -> None:
    window = 5.0 if quick else WINDOW
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), footprint._Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from suture.sidecar.demo import free_port

        config = footprint.write_world(root, server.server_address[1], free_port())
        log = root / "target" / "logs" / "app.log"
        log.write_text("")
        named = Path(__file__).with_name("named.py")
        child = subprocess.Popen([sys.executable, str(named), "run", "--config", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        tail = subprocess.Popen(["tail", "-n0", "-F", str(log)], stdout=subprocess.DEVNULL)
        try:
            time.sleep(SETTLE)
            totals, per_thread = measure({"suture": child.pid, "tail": tail.pid}, window)
        finally:
            for proc in (child, tail):
                proc.terminate()
                proc.wait(10)
    server.shutdown()
    print(f"Idle CPU over {window:g} s, nothing appended (50 playbooks, 3 probes every 5 s, API on): "
          f"`make bench` (python tests/bench/run.py idle), {os.cpu_count()} cores")
    print()
    print("| what | CPU % of one core | wake-ups/s |")
    print("|---|---:|---:|")
    suture_threads = per_thread["suture"]
    live = sum(cpu for cpu, _ in suture_threads.values())
    print(f"| **suture run, whole process** | **{totals['suture']:.2f}** | "
          f"{sum(sw for _, sw in suture_threads.values()):.1f} |")
    for name, (cpu, switches) in sorted(suture_threads.items(), key=lambda kv: (-kv[1][0], kv[0])):
        print(f"| thread {name} | {cpu:.2f} | {switches:.1f} |")
    print(f"| threads that ended during the window (probe checks, ...) | {max(0.0, totals['suture'] - live):.2f} | |")
    print(f"| **baseline: tail -F, same file, same window** | **{totals['tail']:.2f}** | "
          f"{sum(sw for _, sw in per_thread['tail'].values()):.1f} |")
