"""Detection latency: a line appended to a log, until the playbook matches.

suture runs in this process (a real Sidecar with its file watcher); each
trial appends one line with a new group key, so every trial is a fresh
incident that fires at once, and we time write() -> the `detected` event.
Baseline: GNU `tail -F` (inotify) on the same file, timed write() -> the line
on tail's stdout, in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from suture.engine.config import load_config
from suture.sidecar.runtime import Event, Sidecar

PLAYBOOK = """\
id: bench-trigger
when:
  log: {source: app, pattern: 'TRIGGER (?P<n>\\d+)', at_least: 1, within: 10s, group_by: [n]}
confidence: 50
mode: shadow
fix: [{adjust: {file: config/x.yaml, key: a, add: 1}}]
validate: {window: 1m, expect: [{log: {source: app, pattern: 'TRIGGER'}}]}
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def measure_suture(root: Path, trials: int) -> list[float]:
    (root / "playbooks").mkdir()
    (root / "logs").mkdir()
    (root / "config").mkdir()
    (root / "config" / "x.yaml").write_text("a: 1\n")
    (root / "playbooks" / "trigger.yaml").write_text(PLAYBOOK)
    (root / "suture.yaml").write_text(
        "target_root: .\nallowed_paths: [config/]\nplaybooks: ./playbooks\nstate_dir: ./state\n"
        "sources:\n  app: {file: ./logs/app.log}\napi: {enabled: false}\n"
    )
    log = root / "logs" / "app.log"
    log.write_text("start\n")
    seen: dict[str, float] = {}
    arrived = threading.Event()

    def listen(event: Event) -> None:
        if event.kind == "detected":
            seen[event.data.get("key", "")] = time.perf_counter()
            arrived.set()

    sidecar = Sidecar(load_config(root / "suture.yaml", env={}), listeners=[listen])
    thread = threading.Thread(target=sidecar.run, daemon=True)
    thread.start()
    sidecar.ready.wait(10)
    time.sleep(0.5)
    latencies = []
    with open(log, "a", buffering=1) as fh:
        for n in range(trials):
            arrived.clear()
            start = time.perf_counter()
            fh.write(f"2026-11-26T00:00:00Z ERROR TRIGGER {n}\n")
            if not arrived.wait(5):
                raise RuntimeError(f"trial {n}: no detection within 5s")
            latencies.append((seen[f"n={n}"] - start) * 1000)
            time.sleep(0.02)
    sidecar.stop.set()
    thread.join(10)
    return latencies


def measure_tail(root: Path, trials: int) -> list[float]:
    log = root / "tail.log"
    log.write_text("")
    proc = subprocess.Popen(["tail", "-n0", "-F", str(log)], stdout=subprocess.PIPE, text=True, bufsize=1)
    time.sleep(0.3)
    latencies = []
    assert proc.stdout is not None
    with open(log, "a", buffering=1) as fh:
        for n in range(trials):
            start = time.perf_counter()
            fh.write(f"TRIGGER {n}\n")
            proc.stdout.readline()
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(0.02)
    proc.terminate()
    proc.wait()
    return latencies


def main(quick: bool = False) -> None:
    trials = 30 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        suture = measure_suture(Path(tmp), trials)
        tail = measure_tail(Path(tmp), trials)
    print(f"Detection latency, {trials} appends: `make bench` (python tests/bench/run.py detection), {os.cpu_count()} cores")
    print()
    print("| what | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("suture: line appended -> playbook matched", suture), ("baseline: GNU tail -F prints the line", tail)):
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 99):.1f} | {max(values):.1f} |")
