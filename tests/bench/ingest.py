"""Ingest: a generated 1M-line realistic log through suture's matching, against grep on the same file.

Three ways through the same file, in the same run:

- live path: the tailer (FileSource.poll with its block fast path) and the
  signal board (runs of ordinary lines scanned whole, special lines one by one),
  as `suture run` does;
- block scan: whole blocks through the source's PatternSet.scan (hyperscan in
  C over the block; Python only for the lines that match), as `suture replay` does;
- baseline: `grep -c -E` with the same 50 patterns (`-e p1 -e p2 ...`) and,
  for scale, with one pattern.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from suture.engine.playbook import LogCondition, Where
from suture.sidecar.matching import PatternSet
from suture.sidecar.signals import SignalBoard
from suture.sidecar.sources.base import Block
from suture.sidecar.sources.checkpoints import Checkpoints
from suture.sidecar.sources.files import FileSource

from . import replay

EXTRA_PATTERNS = [
    r"Traceback \(most recent call last\)", r"OperationalError", r"IntegrityError", r"DatabaseError",
    r"\b50[234] (?:Bad Gateway|Service Unavailable|Gateway Timeout)", r"ReadTimeout|ConnectTimeout",
    r"QueuePool limit of size \d+ overflow \d+ reached", r"connection pool exhausted", r"MemoryError",
    r"OOMKilled|Killed process \d+", r"WORKER TIMEOUT \(pid:\d+\)", r"yaml\.scanner\.ScannerError",
    r"json\.decoder\.JSONDecodeError", r"KeyError: '[a-z_]+'", r"FATAL: +too many connections",
    r"ECONNRESET|EPIPE", r"certificate has expired", r"permission denied", r"segmentation fault",
    r"panic: runtime error", r"java\.lang\.OutOfMemoryError", r"upstream prematurely closed connection",
    r"no live upstreams", r"worker_connections are not enough", r"Too many redirects",
    r"lock wait timeout exceeded", r"could not serialize access", r"rate limit(?:ed)? exceeded",
    r"read-only file system", r"Broken pipe",
]


def fifty_patterns() -> list[str]:
    pats = [p[1] for p in replay.PLAYBOOKS] + EXTRA_PATTERNS
    return pats[:50]


def conditions(patterns: list[str]) -> list[LogCondition]:
    at = Where(file="bench", line=0, path="when.log")
    return [LogCondition(source="app", pattern=p, at_least=5, within=60.0, at=at) for p in patterns]


def live_path(log: Path, patterns: list[str], state: Path) -> tuple[float, int]:
    """FileSource.poll + SignalBoard.line per line, from the start of the file."""
    from suture.engine.loader import parse_playbook

    playbooks = []
    for i, p in enumerate(patterns):
        quoted = "'" + p.replace("'", "''") + "'"
        playbooks.append(parse_playbook(
            f"id: p{i}\nwhen: {{log: {{source: app, pattern: {quoted}, at_least: 1000000, within: 1m}}}}\n"
            f"confidence: 50\nfix: [{{notify: {{webhook: 'http://127.0.0.1:9/x'}}}}]\n"
            f"validate: {{window: 1m, expect: [{{log: {{source: app, pattern: {quoted}, at_most: 0}}}}]}}\n",
            f"p{i}.yaml"))
    board = SignalBoard(playbooks)
    source = FileSource("app", str(log), checkpoints=Checkpoints(state / "cp.json"), start_at_end=False,
                        max_poll_bytes=16 << 20, max_poll_lines=1 << 20, blocks=True)
    began = time.perf_counter()
    n = 0
    while True:
        lines = source.poll()
        if not lines:
            break
        for item in lines:
            if isinstance(item, Block):
                board.block("app", item.data, item.at)
                n += item.lines
            else:
                board.line("app", item.text, item.at)
                n += 1
        source.commit()
    took = time.perf_counter() - began
    source.close()
    return took, n


def block_scan(log: Path, patterns: list[str]) -> tuple[float, int]:
    ps = PatternSet(conditions(patterns))
    began = time.perf_counter()
    matched = 0
    with open(log, "rb") as fh:
        rest = b""
        while chunk := fh.read(4 << 20):
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            matched += len(ps.scan(data[:cut]))
            rest = data[cut:]
    return time.perf_counter() - began, matched


def grep(log: Path, patterns: list[str]) -> float:
    args = ["grep", "-c", "-E"]
    for p in patterns:
        args += ["-e", p.replace("(?:", "(").replace("(?i)", "").replace("\\d", "[0-9]")]
    began = time.perf_counter()
    subprocess.run([*args, str(log)], check=False, capture_output=True)
    return time.perf_counter() - began


def main(quick: bool = False) -> None:
    lines = 100_000 if quick else 1_000_000
    patterns = fifty_patterns()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        log = root / "app.log"
        replay.generate(log, lines)
        size = log.stat().st_size
        live, n = live_path(log, patterns, root)
        block, matched = block_scan(log, patterns)
        g50 = grep(log, patterns)
        g1 = grep(log, patterns[:1])
    print(f"Ingest, {n:,} lines ({size / 2**20:.0f} MiB), {len(patterns)} patterns: "
          "`make bench` (python tests/bench/run.py ingest)")
    print()
    print("| what | seconds | lines/s | MB/s | vs grep -E (50 patterns) |")
    print("|---|---:|---:|---:|---:|")
    for name, took in (("suture live path: tailer (block fast path) + signal board", live),
                       (f"suture block scan: hyperscan + confirmation ({matched:,} lines matched)", block),
                       ("baseline: grep -c -E, the same 50 patterns", g50),
                       ("baseline: grep -c -E, 1 pattern", g1)):
        print(f"| {name} | {took:.2f} | {n / took:,.0f} | {size / 1e6 / took:,.0f} | {took / g50:.1f}x |")
