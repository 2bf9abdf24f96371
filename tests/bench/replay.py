"""Replay throughput: a realistic 1M-line log through 20 playbooks, offline.

The log is generated (seeded): ISO timestamps, levels, HTTP access lines, and
at low rates 429s in bursts, 5xx, timeouts, tracebacks (multi-line, no
timestamps), database and memory errors. The replay runs in this process
(`Replay.run`, what `suture replay` runs), output discarded. Also timed: the
pattern scan alone, and the baseline, GNU `grep -c -E` of one pattern on the
same file, in the same run.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from suture.engine.config import load_config
from suture.engine.loader import load_playbooks
from suture.sidecar.replay import LogFile, Replay, read_chunks

START = 1_795_564_800.0  # 2026-11-25T00:00:00Z
GREP_PATTERN = "429 .*Too Many Requests"

# id, pattern, at_least, within, group_by, fix
PLAYBOOKS = [
    ("rate-limit", r"\b429\b.*Too Many Requests", 5, "1m", [], "adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 1.5, max: 10}"),
    ("server-errors", r'"(?:GET|POST|PUT|DELETE) (?P<endpoint>/api/v1/[a-z]+)[^"]*" 5\d\d ', 10, "1m", ["endpoint"], "adjust: {file: config/settings.yaml, key: server.workers, add: 2, max: 32}"),
    ("upstream-timeout", r"timeout after \d+s calling (?P<upstream>\w+)", 3, "2m", ["upstream"], "adjust: {file: config/settings.yaml, key: upstream.timeout_s, multiply: 1.5, max: 120}"),
    ("conn-refused", r"ConnectionError: .*Max retries exceeded", 3, "1m", [], "restart: {container: app}"),
    ("db-slots", r"remaining connection slots are reserved", 2, "5m", [], "adjust: {file: config/settings.yaml, key: db.pool_size, add: -2, min: 2}"),
    ("memory-high", r"memory usage (?:9\d|100)% of limit", 3, "10m", [], "restart: {container: app}"),
    ("redis-down", r"redis\.exceptions\.ConnectionError", 3, "1m", [], "restart: {container: cache}"),
    ("open-files", r"\[Errno 24\] Too many open files", 1, "5m", [], "adjust: {file: config/settings.yaml, key: server.max_connections, multiply: 0.8, min: 16}"),
    ("breaker-open", r"circuit breaker (?P<name>\w+) OPEN", 2, "5m", ["name"], "adjust: {file: config/settings.yaml, key: breaker.reset_s, multiply: 2, max: 600}"),
    ("jwt-expired", r"(?i)jwt (?:token )?expired", 50, "5m", [], "adjust: {file: config/settings.yaml, key: auth.leeway_s, add: 30, max: 300}"),
    ("disk-full", r"No space left on device", 1, "5m", [], "restart: {container: app}"),
    ("deadlock", r"deadlock detected", 3, "10m", [], "adjust: {file: config/settings.yaml, key: db.lock_timeout_ms, multiply: 0.5, min: 100}"),
    ("retries", r"retrying request to (?P<upstream>\w+) \(attempt [45]/5\)", 5, "2m", ["upstream"], "adjust: {file: config/settings.yaml, key: upstream.retries, add: -1, min: 1}"),
    ("oom-exit", r"exited with code 137", 2, "10m", [], "adjust: {file: config/settings.yaml, key: worker.memory_mb, multiply: 1.25, max: 8192}"),
    ("slow-queries", r"slow query (?:[3-9]\d{3}|\d{5,})ms", 5, "5m", [], "adjust: {file: config/settings.yaml, key: db.statement_timeout_ms, multiply: 1.2, max: 60000}"),
    ("tls-errors", r"SSL(?:Error|: CERTIFICATE_VERIFY_FAILED)", 3, "5m", [], "restart: {container: app}"),
    ("dns-fail", r"Name or service not known|Temporary failure in name resolution", 3, "2m", [], "restart: {container: app}"),
    ("queue-backlog", r"queue (?P<queue>\w+) backlog (?:[5-9]\d{3}|\d{5,})", 3, "5m", ["queue"], "adjust: {file: config/settings.yaml, key: worker.concurrency, add: 2, max: 64}"),
    ("config-error", r"(?:yaml|json)\.(?:scanner\.)?\w*Error: .* in \"/app/config/", 1, "10m", [], "restart: {container: app}"),
    ("health-fail", r"health check failed: (?P<check>\w+)", 3, "3m", ["check"], "restart: {container: app}"),
]

SETTINGS = """\
upstream:
  request_delay_s: 0.5
  timeout_s: 30
  retries: 5
server:
  workers: 8
  max_connections: 512
db:
  pool_size: 20
  lock_timeout_ms: 5000
  statement_timeout_ms: 30000
breaker:
  reset_s: 30
auth:
  leeway_s: 0
worker:
  memory_mb: 1024
  concurrency: 8
"""


def write_setup(root: Path) -> Path:
    (root / "target" / "config").mkdir(parents=True)
    (root / "target" / "logs").mkdir()
    (root / "target" / "config" / "settings.yaml").write_text(SETTINGS)
    (root / "playbooks").mkdir()
    for pid, pattern, at_least, within, group_by, fix in PLAYBOOKS:
        quoted = "'" + pattern.replace("'", "''") + "'"
        groups = f", group_by: [{', '.join(group_by)}]" if group_by else ""
        (root / "playbooks" / f"{pid}.yaml").write_text(
            f"id: {pid}\nwhen:\n  log: {{source: app, pattern: {quoted}, at_least: {at_least}, within: {within}{groups}}}\n"
            f"confidence: 80\nfix:\n  - {fix}\n"
            f"validate: {{window: 2m, expect: [{{log: {{source: app, pattern: {quoted}, at_most: 0}}}}]}}\ncooldown: 10m\n"
        )
    (root / "suture.yaml").write_text(
        "target_root: ./target\nallowed_paths: [config/]\nallowed_containers: [app, cache]\nplaybooks: ./playbooks\nstate_dir: ./state\n"
        f"sources:\n  app: {{file: {root}/target/logs/*.log}}\napi: {{enabled: false}}\n"
    )
    return root / "suture.yaml"


def _stamp(at: float) -> str:
    whole = int(at)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((at - whole) * 1000):03d}Z"


def generate(path: Path, lines: int, seed: int = 7) -> None:
    """A day of a busy service's log: quiet background errors, and 16 incidents of a few minutes each."""
    rnd = random.Random(seed)
    step = 86_400 / lines
    incidents = sorted((START + rnd.uniform(0, 86_000), rnd.uniform(120, 480), rnd.randrange(len(INCIDENTS)))
                       for _ in range(16))
    at = START
    out: list[str] = []
    n = 0
    while n < lines:
        at += rnd.expovariate(1 / step)
        now = [kind for begin, length, kind in incidents if begin <= at < begin + length]
        text = INCIDENTS[now[0]](rnd) if now and rnd.random() < 0.3 else _background(rnd)
        out.append(f"{_stamp(at)} {text}")
        if text.startswith("ERROR unhandled exception"):
            out.extend(TRACEBACK)
            n += len(TRACEBACK)
        n += 1
        if len(out) >= 100_000:
            with path.open("a") as fh:
                fh.write("\n".join(out) + "\n")
            out = []
    if out:
        with path.open("a") as fh:
            fh.write("\n".join(out) + "\n")


ENDPOINTS = ["orders", "users", "quotes", "carts", "payments", "search"]
UPSTREAMS = ["payments", "partner", "inventory"]
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/app/services/orders.py", line 88, in create',
    "    resp = client.post(url, json=body)",
    "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='payments', port=443): Max retries exceeded",
]


def _access(rnd: random.Random, status: int | None = None, endpoint: str | None = None) -> str:
    if status is None:
        status = rnd.choices([200, 201, 204, 304, 404, 500, 502, 503], [70, 8, 4, 6, 6, 0.3, 0.2, 0.1])[0]
    return (f'INFO  10.0.{rnd.randint(0, 9)}.{rnd.randint(1, 254)} - "{rnd.choice(["GET", "POST", "PUT"])} '
            f'/api/v1/{endpoint or rnd.choice(ENDPOINTS)}/{rnd.randint(1, 99999)} HTTP/1.1" {status} '
            f"{rnd.randint(80, 9000)} {rnd.randint(1, 900)}ms")


def _background(rnd: random.Random) -> str:
    r = rnd.random()
    if r < 0.62:
        return _access(rnd)
    if r < 0.80:
        return (f"INFO  worker-{rnd.randint(1, 8)} processed batch {rnd.randint(1, 10**6)} "
                f"({rnd.randint(1, 500)} items) in {rnd.randint(5, 2000)}ms")
    if r < 0.92:
        return f"DEBUG cache hit key=user:{rnd.randint(1, 10**5)} ttl={rnd.randint(1, 3600)}s"
    if r < 0.955:
        return f"WARNING slow query {rnd.randint(200, 3010)}ms: SELECT id, status FROM orders WHERE customer_id = $1"
    if r < 0.97:
        return f"INFO  queue {rnd.choice(['emails', 'exports'])} backlog {rnd.randint(0, 5010)}"
    if r < 0.985:
        return f"INFO  circuit breaker {rnd.choice(UPSTREAMS)} CLOSED"
    if r < 0.9995:
        return f"WARNING retrying request to {rnd.choice(UPSTREAMS)} (attempt {rnd.randint(1, 3)}/5)"
    return rnd.choice(INCIDENTS)(rnd)  # the odd error on a good day (1 line in 2000)


INCIDENTS: list[Callable[[random.Random], str]] = [
    lambda r: "ERROR 429 Client Error: Too Many Requests for url: https://api.partner.example/v1/quotes",
    lambda r: _access(r, status=r.choice([500, 502, 503]), endpoint="payments"),
    lambda r: f"ERROR upstream timeout after 30s calling {r.choice(UPSTREAMS)}",
    lambda r: f"WARNING retrying request to {r.choice(UPSTREAMS)} (attempt {r.randint(4, 5)}/5)",
    lambda r: f"WARNING memory usage {r.randint(90, 99)}% of limit",
    lambda r: ("ERROR psycopg2.OperationalError: FATAL: remaining connection slots are reserved for "
               "non-replication superuser connections"),
    lambda r: "ERROR redis.exceptions.ConnectionError: Error 111 connecting to cache:6379. Connection refused.",
    lambda r: "ERROR OSError: [Errno 24] Too many open files",
    lambda r: f"WARNING circuit breaker {r.choice(UPSTREAMS)} OPEN",
    lambda r: f"ERROR JWT expired for user {r.randint(1, 10**5)}",
    lambda r: "ERROR deadlock detected while updating orders",
    lambda r: f"ERROR worker-{r.randint(1, 8)} exited with code 137",
    lambda r: f"WARNING health check failed: {r.choice(['db', 'cache'])}",
    lambda r: "ERROR ssl.SSLError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
    lambda r: f"ERROR socket.gaierror: [Errno -2] Name or service not known: {r.choice(UPSTREAMS)}.internal",
    lambda r: f"ERROR unhandled exception in /api/v1/{r.choice(ENDPOINTS)}",
    lambda r: f"WARNING slow query {r.randint(3000, 9000)}ms: SELECT id, status FROM orders WHERE customer_id = $1",
    lambda r: f"INFO  queue exports backlog {r.randint(5000, 20000)}",
]


def run_replay(config_path: Path, log: Path) -> tuple[float, int, int, dict[str, int]]:
    config = load_config(config_path, env={})
    loaded = load_playbooks([config.playbooks], config)
    assert not loaded.problems, [p.render() for p in loaded.problems]
    assert len(loaded.playbooks) == len(PLAYBOOKS)
    firings: dict[str, int] = {}

    def count(f: object) -> None:
        verdict = getattr(f, "verdict", "")
        firings[verdict] = firings.get(verdict, 0) + 1

    began = time.perf_counter()
    summary = Replay(config, loaded.playbooks, on_firing=count).run([LogFile(log, "app")])
    return time.perf_counter() - began, summary.lines, summary.matched_lines, firings


def run_scan(config_path: Path, log: Path) -> tuple[float, int, int]:
    from suture.sidecar.signals import SignalBoard

    config = load_config(config_path, env={})
    board = SignalBoard(load_playbooks([config.playbooks], config).playbooks)
    patterns = board.patterns["app"]
    began = time.perf_counter()
    matched = sum(len(patterns.scan(chunk)) for chunk in read_chunks(log, max_line=config.max_line_bytes))
    return time.perf_counter() - began, matched, len(patterns)


def run_grep(log: Path) -> float:
    began = time.perf_counter()
    subprocess.run(["grep", "-c", "-E", GREP_PATTERN, str(log)], check=False, capture_output=True)
    return time.perf_counter() - began


def main(quick: bool = False) -> None:
    lines = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config_path = write_setup(root)
        log = root / "target" / "logs" / "app.log"
        generate(log, lines)
        size = log.stat().st_size
        replay_s, total, matched, firings = run_replay(config_path, log)
        scan_s, _, n_patterns = run_scan(config_path, log)
        grep_s = run_grep(log)
        shutil.rmtree(root / "target" / "logs")
    fired = ", ".join(f"{n} {v}" for v, n in sorted(firings.items())) or "none"
    print(f"Replay, {total:,} lines ({size / 2**20:.0f} MiB) x {len(PLAYBOOKS)} playbooks: `make bench` "
          f"(python tests/bench/run.py replay), {os.cpu_count()} cores")
    print()
    print("| what | lines | seconds | lines/s |")
    print("|---|---:|---:|---:|")
    rows = [
        (f"suture replay: {len(PLAYBOOKS)} playbooks, {matched:,} matched lines, firings: {fired}", replay_s),
        (f"suture PatternSet.scan alone ({n_patterns} patterns, hyperscan + confirmation)", scan_s),
        (f"baseline: grep -c -E '{GREP_PATTERN}' (1 pattern)", grep_s),
    ]
    for name, seconds in rows:
        print(f"| {name} | {total:,} | {seconds:.2f} | {total / seconds:,.0f} |")


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
