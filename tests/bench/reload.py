"""Hot reload: latency from a playbook write to the new rules in force, and memory over 1,000 reloads.

Latency: a real Sidecar (with its watchfiles watcher) in this process; each
trial rewrites one playbook of a 100-playbook folder and times write() -> the
`reloaded` event. Baseline: watchfiles' own notification of the same kind of
write, timed the same way in the same run.

Memory: 1,000 reloads (one file changed each time) of the 100-playbook set
through the same path (catalog refresh -> install: new signal board, new
durable_rules generation, old one deleted); RSS before and after, and the
number of errors logged.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import watchfiles
from suture.engine.config import load_config
from suture.sidecar.runtime import Event, Sidecar

from .detection import percentile

TEMPLATE = """\
id: pb-{i:03d}
when:
  all:
    - log: {{source: app, pattern: 'E{i:03d} (?P<ep>/\\S+) failed', at_least: {n}, within: 1m, group_by: [ep]}}
    - not: {{log: {{source: app, pattern: 'MAINT{i:03d}', within: 5m}}}}
confidence: {c}
fix: [{{adjust: {{file: config/s.yaml, key: v{i:03d}, add: 1, max: 100}}}}]
validate: {{window: 1m, expect: [{{log: {{source: app, pattern: 'E{i:03d}', at_most: 0}}}}]}}
"""


def make_world(root: Path, count: int = 100) -> Path:
    (root / "playbooks").mkdir()
    (root / "logs").mkdir()
    (root / "config").mkdir()
    (root / "config" / "s.yaml").write_text("".join(f"v{i:03d}: 1\n" for i in range(count)))
    for i in range(count):
        (root / "playbooks" / f"pb-{i:03d}.yaml").write_text(TEMPLATE.format(i=i, n=3, c=70))
    (root / "logs" / "app.log").write_text("")
    (root / "suture.yaml").write_text(
        "target_root: .\nallowed_paths: [config/]\nplaybooks: ./playbooks\nstate_dir: ./state\n"
        "sources:\n  app: {file: ./logs/app.log}\napi: {enabled: false}\n"
    )
    return root / "suture.yaml"


class ErrorCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def reload_latency(root: Path, trials: int) -> list[float]:
    seen = threading.Event()

    def listen(event: Event) -> None:
        if event.kind == "reloaded":
            seen.set()

    sidecar = Sidecar(load_config(make_world(root), env={}), listeners=[listen])
    thread = threading.Thread(target=sidecar.run, daemon=True)
    thread.start()
    sidecar.ready.wait(30)
    time.sleep(1.0)
    out = []
    target = root / "playbooks" / "pb-000.yaml"
    for t in range(trials):
        seen.clear()
        start = time.perf_counter()
        target.write_text(TEMPLATE.format(i=0, n=3, c=50 + t % 40))
        if not seen.wait(10):
            raise RuntimeError("no reload within 10s")
        out.append((time.perf_counter() - start) * 1000)
        time.sleep(0.1)
    sidecar.stop.set()
    thread.join(10)
    return out


def watchfiles_latency(root: Path, trials: int) -> list[float]:
    folder = root / "raw"
    folder.mkdir()
    stop = threading.Event()
    seen = threading.Event()

    def watch() -> None:
        for _ in watchfiles.watch(folder, stop_event=stop, debounce=50, step=10, watch_filter=None,
                                  raise_interrupt=False):
            seen.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.5)
    out = []
    for t in range(trials):
        seen.clear()
        start = time.perf_counter()
        (folder / "x.yaml").write_text(f"t: {t}\n")
        seen.wait(10)
        out.append((time.perf_counter() - start) * 1000)
        time.sleep(0.1)
    stop.set()
    thread.join(5)
    return out


def reload_memory(root: Path, reloads: int) -> tuple[float, float, int, float]:
    errors = ErrorCounter()
    logging.getLogger("suture").addHandler(errors)
    sidecar = Sidecar(load_config(make_world(root), env={}))
    sidecar.open()
    assert sidecar.world is not None
    catalog = sidecar.world.catalog
    target = root / "playbooks" / "pb-050.yaml"
    proc = psutil.Process()

    def one(k: int) -> None:
        target.write_text(TEMPLATE.format(i=50, n=3 + k % 2, c=60 + k % 30))
        result, change = catalog.refresh()
        sidecar.install(result, change)

    for k in range(50):  # warm up allocators and caches
        one(k)
    before = proc.memory_info().rss
    start = time.perf_counter()
    for k in range(reloads):
        one(k)
    took = time.perf_counter() - start
    after = proc.memory_info().rss
    sidecar.shutdown()
    logging.getLogger("suture").removeHandler(errors)
    return before / 1e6, after / 1e6, errors.count, took / reloads * 1000


def main(quick: bool = False) -> None:
    trials, reloads = (10, 100) if quick else (50, 1000)
    logging.getLogger("suture").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
        lat = reload_latency(Path(a), trials)
        raw = watchfiles_latency(Path(b), trials)
        before, after, errors, per = reload_memory(Path(c), reloads)
    print(f"Hot reload of a 100-playbook folder, {trials} edits: `make bench` (python tests/bench/run.py reload)")
    print()
    print("| what | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("suture: playbook written -> new rules in force", lat),
                         ("baseline: watchfiles notices the write", raw)):
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 99):.1f} | {max(values):.1f} |")
    print()
    print(f"| {reloads} reloads of 100 playbooks | RSS before MB | RSS after MB | growth MB | errors | ms per reload |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| one file changed each time | {before:.1f} | {after:.1f} | {after - before:.1f} | {errors} | {per:.1f} |")
