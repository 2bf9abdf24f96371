"""Detection latency: a line appended to a log, until the playbook matches.

suture runs in this process as `suture run` builds it (a real Sidecar with its file
watcher and its API), in the footprint bench's world: 50 playbooks and 3 probes
(http, tcp and the sidecar's own API, every 5 s), plus one playbook that fires on
`TRIGGER <n>`. Each trial appends one such line with a new n, so every trial is
a fresh incident that fires at once, and we time write() -> the `detected` event
(a listener, called on the core thread as it decides), and to the `decided` event
that follows once the playbook's history is read. Each trial starts 30-80 ms (at
random, so as not to fall into step with anything periodic) after the previous
one's shadow outcome is recorded: every trial meets an idle sidecar.

Then the same again (half as many trials) while a writer appends 1,000 ordinary lines/s
to the same file, flushing every 10 ms: the tailer's reads are paced (a steady stream
is read 20 times a second at most), so a trigger in traffic can wait up to ~50 ms.

Baseline, in the same run: GNU `tail -F` (inotify) following a file in the same
folder, timed the same way: write() -> the line on tail's stdout.
"""

from __future__ import annotations

import http.server
import logging
import os
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from suture.engine.config import load_config
from suture.sidecar.runtime import Event, Sidecar

from . import footprint

TRIGGER = """\
id: bench-trigger
when:
  log: {source: app, pattern: 'TRIGGER (?P<n>\\d+)', at_least: 1, within: 10s, group_by: [n]}
confidence: 50
mode: shadow
fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]
validate: {window: 1m, expect: [{log: {source: app, pattern: 'TRIGGER', at_most: 0}}]}
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def row(name: str, values: list[float]) -> str:
    return (f"| {name} | {percentile(values, 50):.1f} | {percentile(values, 95):.1f} | {percentile(values, 99):.1f} "
            f"| {max(values):.1f} |")


TRAFFIC = 1_000  # lines/s of ordinary lines (the footprint bench's) around the triggers, in the last phase
HEADER = "| what | p50 ms | p95 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|"


class Detections:
    """A listener that records when each trigger key was detected (perf_counter), and waits for one."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.events: list[tuple[float, Event]] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        now = time.perf_counter()
        with self._changed:
            self.events.append((now, event))
            if event.kind == "detected" and event.data.get("playbook_id") == "bench-trigger":
                self.at[event.data.get("key", "")] = now
            self._changed.notify_all()

    def count(self, kind: str, playbook: str = "bench-trigger") -> int:
        return sum(1 for _, e in self.events if e.kind == kind and e.data.get("playbook_id") == playbook)

    def first(self, kind: str, since: float, playbook: str = "bench-trigger") -> float:
        """When the first ``kind`` event of ``playbook`` at or after ``since`` came."""
        with self._changed:
            return next(at for at, e in self.events
                        if e.kind == kind and at >= since and e.data.get("playbook_id") == playbook)

    def wait_for(self, ready: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(ready, timeout)


@contextmanager
def running_sidecar(root: Path, extra_playbooks: dict[str, str], extra_config: str = "") -> Iterator[Detections]:
    """The footprint world plus ``extra_playbooks``, run in this process with its API; yields its listener."""
    from suture.sidecar.demo import free_port
    from suture.sidecar.transport import serve

    health = http.server.ThreadingHTTPServer(("127.0.0.1", 0), footprint._Health)
    threading.Thread(target=health.serve_forever, daemon=True).start()
    config_file = footprint.write_world(root, health.server_address[1], free_port())
    for name, text in extra_playbooks.items():
        (root / "playbooks" / name).write_text(text)
    if extra_config:
        with open(config_file, "a") as fh:
            fh.write(extra_config)
    (root / "target" / "logs" / "app.log").write_text("start\n")
    logging.getLogger("suture").setLevel(logging.ERROR)  # not the run's narration (the fix rolled back at stop)
    detections = Detections()
    sidecar = Sidecar(load_config(config_file, env={}), listeners=[detections])
    api = serve(sidecar)
    thread = threading.Thread(target=sidecar.run, daemon=True)
    thread.start()
    try:
        if not sidecar.ready.wait(30):
            raise RuntimeError("the sidecar did not start within 30 s")
        time.sleep(1.0)  # first probes, first heap trim
        yield detections
    finally:
        sidecar.stop.set()
        thread.join(15)
        api.shutdown()
        api.server_close()
        health.shutdown()


def trigger(fh: object, n: int) -> float:
    """Append the trigger line for ``n``; return when (perf_counter) it was written."""
    start = time.perf_counter()
    fh.write(f"2026-11-26T00:00:00Z ERROR TRIGGER {n}\n")  # type: ignore[attr-defined]
    return start


def measure_suture(root: Path, trials: int) -> tuple[list[float], list[float], list[float]]:
    """(write -> detected, write -> decided, write -> detected amid 1,000 lines/s of other lines) in ms;
    each trial starts once the last one is recorded."""
    log = root / "target" / "logs" / "app.log"
    with running_sidecar(root, {"trigger.yaml": TRIGGER}) as seen, open(log, "a", buffering=1) as fh:
        detected, decided = trials_of(seen, fh, range(trials))
        stop = threading.Event()
        traffic = threading.Thread(target=footprint.writer, args=(log, TRAFFIC, 3600.0, stop), daemon=True)
        traffic.start()
        time.sleep(1.0)
        try:
            amid, _ = trials_of(seen, fh, range(trials, trials + trials // 2))
        finally:
            stop.set()
            traffic.join(5)
    return detected, decided, amid


def trials_of(seen: Detections, fh: object, ns: range) -> tuple[list[float], list[float]]:
    rnd = random.Random(14)
    detected, decided = [], []
    for n in ns:
        start = trigger(fh, n)
        # the shadow outcome is the trial's last event: the core is idle again for the next one
        if not seen.wait_for(lambda n=n: seen.count("shadow") > n, 10):
            raise RuntimeError(f"trial {n}: not detected and recorded within 10 s")
        detected.append((seen.at[f"n={n}"] - start) * 1000)
        decided.append((seen.first("decided", start) - start) * 1000)
        time.sleep(0.03 + rnd.random() * 0.05)
    return detected, decided


def measure_tail(root: Path, trials: int) -> list[float]:
    rnd = random.Random(14)
    log = root / "tail.log"
    log.write_text("")
    proc = subprocess.Popen(["tail", "-n0", "-F", str(log)], stdout=subprocess.PIPE, text=True, bufsize=1)
    time.sleep(0.3)
    latencies = []
    assert proc.stdout is not None
    with open(log, "a", buffering=1) as fh:
        for n in range(trials):
            start = trigger(fh, n)
            proc.stdout.readline()
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(0.03 + rnd.random() * 0.05)
    proc.terminate()
    proc.wait()
    return latencies


def main(quick: bool = False) -> None:
    trials = 30 if quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        detected, decided, amid = measure_suture(Path(tmp), trials)
        tail = measure_tail(Path(tmp), trials)
    print(f"Detection latency, {trials} appends, 50 playbooks + 3 probes: `make bench` "
          f"(python tests/bench/run.py detection), {os.cpu_count()} cores")
    print()
    print(HEADER)
    print(row("suture: line appended -> playbook matched (`detected`)", detected))
    print(row("suture: line appended -> decision made (`decided`: history read, confidence adjusted)", decided))
    print(row(f"suture: line appended -> playbook matched, amid {TRAFFIC:,} lines/s of other lines "
              f"({len(amid)} appends)", amid))
    print(row("baseline: GNU tail -F prints the line", tail))
