"""Fleet mode on PostgreSQL: 100 sidecars on leases, polls and the outbox, against pgbench (issue 15 item 9).

    .venv/bin/python tests/bench/fleet.py        # alone (~95 s); also `python tests/bench/run.py fleet`, `make bench`

A PostgreSQL 15 of its own: ``initdb`` into a temp folder owned by the ``postgres`` user and the
server run as that user (with tests/servers.py's helpers; its own fixture allows 20 connections),
``max_connections`` 250 (100 sidecars stay connected while pgbench opens 100 more), durability off
as in the test suite (``fsync``, ``synchronous_commit``). Then suture's own ``migrate()``, and 100
sidecars, each a process with its OWN :class:`FleetConnection` (first, the lease phases marked
``threads`` run with the same 100 as threads of one process: what the GIL does to the figures).
Each phase lasts 4 s after a warm-up (psycopg prepares a statement on its 5th use on a connection):

- leases on one playbook: 4 shared keys or 100 distinct keys (one per sidecar), with
  ``max_concurrent=1`` (the config's default: a transaction of advisory lock, count, upsert) at 2
  attempts a second per sidecar, or with no cap (the upsert alone) at 10, and ``max_concurrent`` at
  10 too (past what its lock lets through on this machine). An *attempt* is ``acquire``, then
  ``release`` when it got the lease, at Poisson times;
- poll: ``Suspensions.active``, what a sidecar reads of its group's state, 10 a second each;
- ship: ``Shipper.ship_once`` from each sidecar's own DuckDB journal (200 finished fixes of 4 steps)
  into fleet_fixes / fleet_steps: batch 1 (a fix and its steps a transaction) at 0.5 passes a second
  each, then the rest as a backlog in one pass of the Shipper's default batch (200), all at once.

Baseline, in the same run, on the same server: ``pgbench -c 100 -j 2 -M prepared -T 4`` with a
custom script (``-f``) of the same statements (``ACQUIRE`` and ``HELD_ELSEWHERE`` from
sidecar/fleet_leases.py, the outbox's ``UPSERT_FIX`` / ``INSERT_STEP`` with a row suture shipped),
in the same transactions and round trips, at the same total rate (``-R``, Poisson too); the backlog
baseline runs flat out, 20 fixes a transaction (see BASE_BATCH). Percentiles come from its
per-transaction log (``-l``), less the schedule lag, as suture's are timed from the call.
PostgreSQL's CPU: the postmaster and its children (psutil finds them), CPU seconds / wall from
schedstat (see :func:`on_cpu`), in the middle of each phase. The clients share the server's 2
cores: suture's Python clients take CPU the server then lacks, pgbench's C client much less; the
client CPU rows say how much. Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import queue
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil
import psycopg
from suture.engine.decide import Decision
from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import Busy, Lease
from suture.engine.store import Store
from suture.sidecar.fleet_leases import ACQUIRE, HELD_ELSEWHERE, HOSTILE_FACTOR, Leases
from suture.sidecar.fleet_outbox import FIX_COLUMNS, INSERT_STEP, UPSERT_FIX, Shipper
from suture.sidecar.fleet_pg import FleetConnection
from suture.sidecar.fleet_schema import migrate
from suture.sidecar.fleet_suspensions import Suspensions

SIDECARS = 100
GROUP, PGBENCH_GROUP = "bench", "pgbench"
PLAYBOOK = "bench-playbook"
TTL = 30.0
POLL_RATE = 10.0  # polls a second per sidecar
JOURNAL_FIXES = 200  # per sidecar's journal: the steady phase ships a few, the backlog phase the rest
STEPS = 4  # per fix: 3 steps and the final one
MAX_CONNECTIONS = 250
IDLE_SECONDS = 2.0

# The statements of Leases and Suspensions that are not module constants, as they stand there.
HELD_BY = """SELECT holder, token, extract(epoch FROM expires_at)::float8 FROM fleet_leases
             WHERE grp = %(grp)s AND playbook_id = %(pb)s AND key = %(key)s"""
RELEASE = """UPDATE fleet_leases SET holder = NULL, expires_at = clock_timestamp()
             WHERE grp = %(grp)s AND playbook_id = %(pb)s AND key = %(key)s AND token = %(tok)s AND holder = %(holder)s"""
ACTIVE = """SELECT suspended_at, suspended_by, reason, cause_fix_id FROM fleet_suspensions
            WHERE grp = %(grp)s AND playbook_id = %(pb)s AND resumed_at IS NULL
            ORDER BY suspended_at DESC NULLS LAST LIMIT 1"""
# psycopg placeholders -> pgbench variables (sent as untyped parameters: the products need a type)
PGBENCH_VARS = {"%(grp)s": ":grp", "%(pb)s": ":pb", "%(key)s": ":key", "%(holder)s": ":holder", "%(tok)s": ":tok",
                "%(ttl)s": ":ttl::float8", "%(factor)s": ":factor::int"}


# -- the server --


@contextlib.contextmanager
def postgres(root: Path) -> Iterator[tuple[Any, subprocess.Popen[bytes]]]:
    """A PostgreSQL 15 in ``root`` with a role and database ``suture``, room for 100 sidecars and pgbench."""
    from tests import servers  # pytest and redis load only when this bench runs

    with servers.run_postgres(root, role="suture", database="suture", max_connections=MAX_CONNECTIONS,
                              shared_buffers="128MB") as running:
        yield running


def on_cpu(pids: Sequence[int]) -> dict[int, int]:
    """Nanoseconds on CPU of every thread of these processes, from /proc/PID/task/TID/schedstat: exact,
    where the tick-sampled utime/stime (psutil's cpu_times) miss most of a backend's sub-millisecond
    wake-ups (measured here: 0.02 cores by cpu_times, 0.17 by schedstat, for the same pgbench run)."""
    out: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, ValueError, IndexError), \
                        open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                    out[int(tid)] = int(fh.read().split()[0])
    return out


def server_pids(postmaster: psutil.Process) -> list[int]:
    """The postmaster and its children (backends, background workers), found by psutil."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return [postmaster.pid, *(child.pid for child in postmaster.children(recursive=True))]
    return [postmaster.pid]


@dataclass
class Cpu:
    """Cores used (CPU seconds / wall) by the server and by the clients."""

    server: float = 0.0
    client: float = 0.0


class Meter:
    """CPU of the server and of the clients from ``start`` to ``stop``: two samples, no more (a sample reads
    some 700 schedstat files, CPU the measured processes would miss). Every measured thread lives through
    both (the sidecars' threads and connections are made once; pgbench's are sampled once connected); one
    that appears in between counts from zero, one that ends in between is missed."""

    def __init__(self, postmaster: psutil.Process, clients: Sequence[int]) -> None:
        self.postmaster, self.clients = postmaster, clients
        self.first: tuple[float, dict[int, int], dict[int, int]] = (0.0, {}, {})

    def start(self, at: float | None = None) -> Meter:
        if at is not None:
            sleep_until(at)
        self.first = self._sample()
        return self

    def stop(self) -> Cpu:
        last = self._sample()
        wall = last[0] - self.first[0]

        def cores(first: dict[int, int], last: dict[int, int]) -> float:
            return sum(ns - first.get(tid, 0) for tid, ns in last.items()) / 1e9 / wall

        return Cpu(server=cores(self.first[1], last[1]), client=cores(self.first[2], last[2]))

    def _sample(self) -> tuple[float, dict[int, int], dict[int, int]]:
        return time.monotonic(), on_cpu(server_pids(self.postmaster)), on_cpu(self.clients)


def measure(postmaster: psutil.Process, clients: Sequence[int], start: float, end: float) -> Cpu:
    meter = Meter(postmaster, clients).start(start)
    sleep_until(end)
    return meter.stop()


def sleep_until(at: float) -> None:
    time.sleep(max(0.0, at - time.monotonic()))


# -- the sidecars --


@dataclass(frozen=True)
class Job:
    """One phase, for every sidecar; ``start`` is on time.monotonic(), which all processes share."""

    kind: str  # lease, poll, ship, journals (open the journals: no timing)
    start: float = 0.0
    seconds: float = 0.0
    rate: float = 0.0  # per sidecar per second; 0: flat out
    keys: int = 0  # lease: that many shared keys; 0: one key per sidecar
    cap: int | None = None  # lease: max_concurrent
    batch: int = 1  # ship: the Shipper's batch (fixes per transaction)
    until_done: bool = False  # ship: until nothing is pending (``seconds`` is then a bound)
    journal: str = ""  # journals: the template to copy


@dataclass
class Samples:
    """What one sidecar saw in one phase (times in seconds)."""

    main: list[float] = field(default_factory=list)  # an attempt (acquire + release), a poll, a ship pass
    acquire: list[float] = field(default_factory=list)
    release: list[float] = field(default_factory=list)
    got: int = 0
    held: int = 0
    busy: int = 0
    errors: int = 0
    fixes: int = 0
    rows: int = 0
    exhausted: bool = False


def schedule(job: Job, rnd: random.Random) -> Iterator[float]:
    """Due times at Poisson intervals (``job.rate`` a second), or back to back when the rate is 0."""
    end = job.start + job.seconds
    due = job.start + (rnd.expovariate(job.rate) if job.rate else 0.0)
    while due < end:
        sleep_until(due)
        yield due
        due = due + rnd.expovariate(job.rate) if job.rate else time.monotonic()


def lease_sidecar(i: int, fleet: FleetConnection, _shipper: Shipper | None, job: Job) -> Samples:
    leases, rnd, out = Leases(fleet), random.Random(i), Samples()
    for _ in schedule(job, rnd):
        key = str(rnd.randrange(job.keys) + 1) if job.keys else str(i)
        t0 = time.monotonic()
        try:
            got = leases.acquire(GROUP, PLAYBOOK, key, str(i), TTL, max_concurrent=job.cap)
            t1 = time.monotonic()
            if isinstance(got, Lease):
                leases.release(got)
        except FleetUnavailable:
            out.errors += 1
            continue
        t2 = time.monotonic()
        out.acquire.append(t1 - t0)
        out.main.append(t2 - t0)
        if isinstance(got, Lease):
            out.got += 1
            out.release.append(t2 - t1)
        elif isinstance(got, Busy):
            out.busy += 1
        else:
            out.held += 1
    return out


def poll_sidecar(i: int, fleet: FleetConnection, _shipper: Shipper | None, job: Job) -> Samples:
    suspensions, out = Suspensions(fleet), Samples()
    for _ in schedule(job, random.Random(i)):
        t0 = time.monotonic()
        try:
            suspensions.active(GROUP, PLAYBOOK)
        except FleetUnavailable:
            out.errors += 1
            continue
        out.main.append(time.monotonic() - t0)
    return out


def ship_sidecar(i: int, _fleet: FleetConnection, shipper: Shipper | None, job: Job) -> Samples:
    assert shipper is not None
    shipper.batch = job.batch
    out = Samples()
    for _ in schedule(job, random.Random(i)):
        t0 = time.monotonic()
        try:
            report = shipper.ship_once()
        except FleetUnavailable:
            out.errors += 1
            continue
        if not report.fixes and not report.steps:  # nothing was pending: no round trip to PostgreSQL
            out.exhausted = True
            break
        out.main.append(time.monotonic() - t0)
        out.fixes += report.new_fixes
        out.rows += report.new_fixes + report.new_steps
    return out


PHASES: dict[str, Callable[[int, FleetConnection, Shipper | None, Job], Samples]] = {
    "lease": lease_sidecar, "poll": poll_sidecar, "ship": ship_sidecar}


def worker(pipe: Connection, sidecars: list[int], url: str, password: str, folder: str) -> None:
    """A process of sidecars, each a thread (alive from start to end, so its CPU is counted) with its own
    FleetConnection, each running every phase the pipe brings."""
    fleets = {i: FleetConnection(url, password=password, application_name=f"bench sidecar {i}") for i in sidecars}
    stores: dict[int, Store] = {}
    shippers: dict[int, Shipper] = {}
    jobs: dict[int, queue.SimpleQueue[Job | None]] = {i: queue.SimpleQueue() for i in sidecars}
    done: queue.SimpleQueue[tuple[int, Samples]] = queue.SimpleQueue()

    def sidecar(i: int) -> None:
        while (job := jobs[i].get()) is not None:
            done.put((i, PHASES[job.kind](i, fleets[i], shippers.get(i), job)))

    threads = [threading.Thread(target=sidecar, args=(i,), name=f"sidecar-{i}", daemon=True) for i in sidecars]
    try:
        for fleet in fleets.values():
            with fleet.transaction(atomic=False) as pg:
                pg.execute("SELECT 1")
        for thread in threads:
            thread.start()
        pipe.send("ready")
        while (job := pipe.recv()) is not None:
            if job.kind == "journals":
                for i in sidecars:
                    path = Path(folder) / f"sidecar-{i}.duckdb"
                    shutil.copyfile(job.journal, path)
                    stores[i] = Store.open(path)
                    shippers[i] = Shipper(stores[i], fleets[i], group=GROUP, sidecar=f"sidecar-{i}")
                pipe.send("ready")
                continue
            for i in sidecars:
                jobs[i].put(job)
            out = dict(done.get() for _ in sidecars)
            pipe.send([out[i] for i in sidecars])
    finally:
        for i in sidecars:
            jobs[i].put(None)
        for thread in threads:
            thread.join(10)
        for shipper in shippers.values():
            shipper.close()
        for store in stores.values():
            store.close()
        for fleet in fleets.values():
            fleet.close()


class Sidecars:
    """100 sidecars in ``processes`` processes (the rest of the 100 as threads of each)."""

    def __init__(self, processes: int, url: str, password: str, folder: Path) -> None:
        ctx = multiprocessing.get_context("fork")  # nothing in this process holds a connection or DuckDB yet
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for p in range(processes):
            ours, theirs = ctx.Pipe()
            sidecars = list(range(p, SIDECARS, processes))
            proc = ctx.Process(target=worker, args=(theirs, sidecars, url, password, str(folder)), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)
        for pipe in self.pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a sidecar process did not connect")
        self.pids = [proc.pid for proc in self.procs if proc.pid is not None]

    def prepare(self, journal: Path) -> None:
        for pipe in self.pipes:
            pipe.send(Job(kind="journals", journal=str(journal)))
        for pipe in self.pipes:
            pipe.recv()

    def run(self, job: Job, postmaster: psutil.Process) -> tuple[list[Samples], Cpu, float]:
        """Every sidecar's samples, the CPU in the middle of the phase (or, for a phase that runs until it is
        done, from its start to the last sidecar's end), and the phase's wall seconds."""
        for pipe in self.pipes:
            pipe.send(job)
        if job.until_done:
            meter = Meter(postmaster, self.pids).start(job.start)
            samples = [s for pipe in self.pipes for s in pipe.recv()]
            return samples, meter.stop(), time.monotonic() - job.start
        start, end = job.start + 0.5, job.start + job.seconds - 0.5  # clear of the phase's edges
        cpu = measure(postmaster, self.pids, start, end) if end - start >= 0.5 else Cpu()  # a warm-up: not measured
        return [s for pipe in self.pipes for s in pipe.recv()], cpu, job.seconds

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for proc in self.procs:
            proc.join(30)


def build_journal(path: str, fixes: int) -> None:
    """A local history of ``fixes`` finished fixes, each with STEPS journal steps carrying a fence."""
    store = Store.open(Path(path))
    t = 1_790_000_000.0
    for n in range(fixes):
        fix_id = f"f-{n}"
        d = Decision(playbook_id=PLAYBOOK, key="", verdict="apply", reason="confident", base_confidence=90,
                     adjusted_confidence=90, threshold=85, successes=0, failures=0, decided_at=t + n)
        store.begin_fix(fix_id, d, status="matched", playbook_version="v1", fix_types=["adjust"], errors_before=3)
        for s in range(STEPS - 1):
            store.step(fix_id, f"step-{s}", t + n, {"fence": n + 1})
            store.update(fix_id, status="validating")
        store.finish(fix_id, "succeeded", t + n + 1, detail="done")
    store.close()


# -- pgbench --


def pgbench_sql(text: str) -> str:
    """A statement of suture's, with pgbench variables for its parameters, on one line."""
    for placeholder, variable in PGBENCH_VARS.items():
        text = text.replace(placeholder, variable)
    return " ".join(text.split())


def lease_script(keys: int, cap: int | None) -> str:
    acquire = f"WITH a AS ({pgbench_sql(ACQUIRE)}) SELECT coalesce((SELECT token FROM a), 0) AS tok \\gset"
    lines = [f"\\set key random(1, {keys})" if keys else "\\set key :client_id", "\\set holder :client_id"]
    if cap is None:  # Leases.acquire without a cap: the upsert alone, autocommit; who holds it when it fails
        lines += [acquire, "\\if :tok = 0", pgbench_sql(HELD_BY) + ";", "\\endif"]
    else:
        lines += ["BEGIN;", "SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0));",
                  pgbench_sql(HELD_ELSEWHERE).replace("count(*)", "count(*) AS held", 1) + " \\gset",
                  "\\if :held >= :cap", "\\set tok 0", "\\else", acquire,
                  "\\if :tok = 0", pgbench_sql(HELD_BY) + ";", "\\endif", "\\endif", "COMMIT;"]
    lines += ["\\if :tok > 0", pgbench_sql(RELEASE) + ";", "\\endif"]
    return "\n".join(lines) + "\n"


def poll_script() -> str:
    return f"BEGIN;\n{pgbench_sql(ACTIVE)};\nCOMMIT;\n"  # Suspensions.active: one transaction


def ship_script(server: Any, fixes: int) -> str:
    """Shipper.ship_once of ``fixes`` fixes: BEGIN, the fixes upserted (one pipeline), their steps inserted
    (one pipeline), COMMIT; with the values of a fix suture shipped, under new random ids."""
    with psycopg.connect(server.url()) as conn:
        columns = ", ".join(FIX_COLUMNS)
        fix = conn.execute(f"SELECT {columns} FROM fleet_fixes WHERE grp = %s LIMIT 1", [GROUP]).fetchone()
        assert fix is not None, "the ship phase shipped nothing"
        steps = conn.execute("SELECT seq, step, happened_at, detail, fence FROM fleet_steps WHERE grp = %s"
                             " AND sidecar = 'sidecar-0' AND fix_id = %s ORDER BY seq", [GROUP, fix[0]]).fetchall()
        cur = psycopg.ClientCursor(conn)
        values = [json.dumps(v) if c == "changes" and v is not None else v for c, v in zip(FIX_COLUMNS, fix, strict=True)]
        upsert = cur.mogrify(UPSERT_FIX, ["@grp@", "@sidecar@", "@fid@", *values[1:]])
        inserts = [cur.mogrify(INSERT_STEP, ["@grp@", "@sidecar@", "@fid@", seq, step, at, json.dumps(detail), fence])
                   for seq, step, at, detail, fence in steps]

    def variables(text: str, n: int) -> str:
        text = text.replace("'@grp@'", ":grp").replace("'@sidecar@'", ":client_id").replace("'@fid@'", f":fid{n}")
        return " ".join(text.split()) + ";"

    return "\n".join([*(f"\\set fid{n} random(1, 1000000000000)" for n in range(fixes)), "BEGIN;", "\\startpipeline",
                      *(variables(upsert, n) for n in range(fixes)), "\\endpipeline", "\\startpipeline",
                      *(variables(insert, n) for n in range(fixes) for insert in inserts), "\\endpipeline",
                      "COMMIT;"]) + "\n"


@dataclass
class Bench:
    """pgbench's figures: latencies (seconds, less the schedule lag), transactions/s, CPU."""

    latencies: list[float]
    tps: float
    cpu: Cpu
    command: str


def pgbench(server: Any, postmaster: psutil.Process, script: str, *, seconds: float, rate: float | None,
            folder: Path) -> Bench:
    """pgbench with ``script`` for ``seconds``, at ``rate`` transactions/s in all (Poisson), or flat out."""
    bin_dir = Path(postmaster.exe()).parent
    run = Path(tempfile.mkdtemp(prefix="pgbench-", dir=folder))
    (run / "script.sql").write_text(script)
    defines = {"grp": PGBENCH_GROUP, "pb": PLAYBOOK, "ttl": TTL, "factor": HOSTILE_FACTOR, "cap": 1,
               "lock": f"{PGBENCH_GROUP}/{PLAYBOOK}"}
    argv = [str(bin_dir / "pgbench"), "-h", server.host, "-p", str(server.port), "-U", server.user, "-n",
            "-f", str(run / "script.sql"), "-c", str(SIDECARS), "-j", "2", "-T", str(round(seconds)), "-M", "prepared",
            *(["-R", str(round(rate))] if rate else []), "-l", f"--log-prefix={run}/tx",
            *(arg for k, v in defines.items() if f":{k}" in script for arg in ("-D", f"{k}={v}")), server.database]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=run,
                            env={**os.environ, "PGPASSWORD": server.password})
    cpu = measure(postmaster, [proc.pid], started + 1.0, started + seconds - 0.3)  # after its 100 logins
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout.decode())
    latencies = []
    for log in run.glob("tx.*"):
        for line in log.read_text().splitlines():
            f = line.split()  # client_id transaction_no time script_no time_epoch time_us [schedule_lag]
            latencies.append((int(f[2]) - (int(f[6]) if len(f) > 6 else 0)) / 1e6)
    shown = {str(run / "script.sql"): "SCRIPT", f"--log-prefix={run}/tx": "", server.host: "HOST",
             str(server.port): "PORT"}
    command = " ".join(shown.get(a, a) for a in argv[1:] if shown.get(a, a))
    return Bench(latencies=latencies, tps=float(tps.group(1)) if tps else 0.0, cpu=cpu, command=command)


# -- the table --


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ms(values: Sequence[float], p: float) -> str:
    return f"{pct(values, p) * 1e3:.1f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else ""


def flatten(samples: list[Samples], name: str) -> list[float]:
    return [x for s in samples for x in getattr(s, name)]


class Table:
    """Rows of ``what | suture | baseline | ratio``."""

    def __init__(self) -> None:
        self.rows: list[str] = []

    def add(self, what: str, suture: str, baseline: str = "-", ratio_: str = "") -> None:
        self.rows.append(f"| {what} | {suture} | {baseline} | {ratio_} |")

    def latency(self, what: str, ours: list[float], theirs: list[float] | None = None) -> None:
        """p50 / p99 in ms, against pgbench's when there is a baseline."""
        if theirs is None:
            self.add(f"{what}, p50 / p99 ms", f"{ms(ours, 50)} / {ms(ours, 99)}")
            return
        self.add(f"{what}, p50 / p99 ms", f"{ms(ours, 50)} / {ms(ours, 99)}", f"{ms(theirs, 50)} / {ms(theirs, 99)}",
                 f"{ratio(pct(ours, 50), pct(theirs, 50))} / {ratio(pct(ours, 99), pct(theirs, 99))}")

    def cpu(self, what: str, ours: Cpu, ours_rate: float, base: Bench, base_rate: float, unit: str) -> None:
        """PostgreSQL's cores and CPU ms per ``unit`` (``*_rate`` of them a second); the clients' cores."""

        def server(cpu: Cpu, rate: float) -> str:
            return f"{cpu.server:.2f} ({cpu.server / rate * 1e3:.2f})" if rate else f"{cpu.server:.2f}"

        per_ours = ours.server / ours_rate if ours_rate else 0.0
        per_base = base.cpu.server / base_rate if base_rate else 0.0
        self.add(f"{what}: PostgreSQL CPU, cores (ms per {unit})", server(ours, ours_rate),
                 server(base.cpu, base_rate), ratio(per_ours, per_base))
        self.add(f"{what}: client CPU, cores", f"{ours.client:.2f}", f"{base.cpu.client:.2f}",
                 ratio(ours.client, base.cpu.client))


@dataclass(frozen=True)
class LeasePhase:
    name: str
    keys: int  # shared keys; 0: one key per sidecar
    cap: int | None  # max_concurrent
    rate: float  # attempts a second per sidecar
    threads: bool = False  # also as 100 threads of one process (what the GIL does)

    def job(self, seconds: float) -> Job:
        return Job(kind="lease", seconds=seconds, rate=self.rate, keys=self.keys, cap=self.cap)


LEASE_PHASES = (
    LeasePhase("leases, 4 shared keys, max_concurrent 1, 200 attempts/s", 4, 1, 2.0),
    LeasePhase("leases, 100 distinct keys, max_concurrent 1, 200 attempts/s", 0, 1, 2.0),
    LeasePhase("leases, 4 shared keys, no cap, 1,000 attempts/s", 4, None, 10.0),
    LeasePhase("leases, 100 distinct keys, no cap, 1,000 attempts/s", 0, None, 10.0, threads=True),
    LeasePhase("leases, 4 shared keys, max_concurrent 1, 1,000 attempts/s", 4, 1, 10.0, threads=True),
)
THREADS = "; as 100 threads of 1 process"


def lease_rows(table: Table, name: str, run: tuple[list[Samples], Cpu, float], base: Bench | None) -> None:
    samples, cpu, wall = run
    got, held, busy, errors = (sum(getattr(s, k) for s in samples) for k in ("got", "held", "busy", "errors"))
    table.latency(f"{name}: acquire", flatten(samples, "acquire"))
    if base is None:  # the threads variant: what differs
        table.latency(f"{name}: attempt", flatten(samples, "main"))
        table.add(f"{name}: client CPU, cores", f"{cpu.client:.2f}")
        return
    table.latency(f"{name}: release", flatten(samples, "release"))
    table.latency(f"{name}: attempt (acquire, then release if got)", flatten(samples, "main"), base.latencies)
    attempts = sum(len(s.main) for s in samples) / wall
    table.add(f"{name}: attempts/s (got / held / busy{' / refused' if errors else ''})",
              f"{attempts:,.0f} ({got:,} / {held:,} / {busy:,}{f' / {errors}' if errors else ''})", f"{base.tps:,.0f}")
    table.cpu(name, cpu, attempts, base, base.tps, unit="attempt")


SHIP_STEADY = "ship, steady: Shipper.ship_once, batch 1 (1 fix + 4 steps), 50 passes/s"
SHIP_BACKLOG = "ship, backlog: Shipper.ship_once, batch 200 (200 fixes + 800 steps), once each"
BACKLOG_BATCH = 200  # the Shipper's default batch
# pgbench's backlog transactions: 20 fixes, flat out. A script cannot loop, so each of a transaction's
# statements is a prepared statement of its own, used once per transaction: with 200 fixes and one
# transaction per client, pgbench would be measuring 1,000 PREPAREs per connection.
BASE_BATCH = 20
SHIP_RATE = 0.5  # steady passes a second per sidecar (the worker's interval is 5 s: 0.2)


def ship_rows(table: Table, name: str, run: tuple[list[Samples], Cpu, float], base: Bench, batch: int) -> None:
    """``batch``: fixes per pgbench transaction."""
    samples, cpu, wall = run
    fixes, rows = sum(s.fixes for s in samples), sum(s.rows for s in samples)
    paced = batch == 1  # both at the same rate: a ratio of rates or latencies of unlike sizes would say nothing
    table.latency(f"{name}: a pass", flatten(samples, "main"), base.latencies if paced else None)
    table.add(f"{name}: fixes/s (rows/s){'' if paced else f'; pgbench: {batch} fixes a transaction, flat out'}",
              f"{fixes / wall:,.0f} ({rows / wall:,.0f})",
              f"{base.tps * batch:,.0f} ({base.tps * batch * (1 + STEPS):,.0f})",
              "" if paced else ratio(fixes / wall, base.tps * batch))
    errors = sum(s.errors for s in samples)
    if errors:
        table.add(f"{name}: passes refused (FleetUnavailable)", str(errors))
    table.cpu(name, cpu, fixes / wall, base, base.tps * batch, unit="fix")


class Run:
    """One run of the whole bench: the server, the sidecars, the table."""

    def __init__(self, folder: Path, server: Any, postmaster: psutil.Process, seconds: float) -> None:
        self.folder, self.server, self.postmaster, self.seconds = folder, server, postmaster, seconds
        self.url = server.url(password="")
        self.table = Table()
        self.commands: list[str] = []

    def sidecars(self, processes: int) -> Sidecars:
        sidecars = Sidecars(processes, self.url, self.server.password, self.folder)
        # warm up: psycopg prepares a statement on its 5th use on a connection (prepare_threshold), pgbench's
        # -M prepared on its first; the lease and poll phases compare prepared with prepared
        self.phase(sidecars, LEASE_PHASES[-1].job(1.0))
        self.phase(sidecars, Job(kind="poll", seconds=0.8, rate=POLL_RATE))
        return sidecars

    def phase(self, sidecars: Sidecars, job: Job) -> tuple[list[Samples], Cpu, float]:
        return sidecars.run(dataclasses.replace(job, start=time.monotonic() + 0.5), self.postmaster)

    def baseline(self, name: str, script: str, rate: float | None) -> Bench:
        base = pgbench(self.server, self.postmaster, script, seconds=self.seconds, rate=rate, folder=self.folder)
        self.commands.append(f"{name}: `pgbench {base.command}`")
        return base

    def threaded(self) -> dict[str, tuple[list[Samples], Cpu, float]]:
        """The lease phases marked ``threads``, with the 100 sidecars as threads of one process."""
        threads = self.sidecars(1)
        try:
            return {p.name: self.phase(threads, p.job(self.seconds)) for p in LEASE_PHASES if p.threads}
        finally:
            threads.close()

    def idle(self, sidecars: Sidecars) -> None:
        """The floor under every CPU figure: the server with 100 idle connections (and its own background)."""
        now = time.monotonic()
        cpu = measure(self.postmaster, sidecars.pids, now, now + IDLE_SECONDS)
        self.table.add("100 sidecars connected, idle: PostgreSQL CPU, cores", f"{cpu.server:.3f}")

    def leases(self, sidecars: Sidecars, threaded: dict[str, tuple[list[Samples], Cpu, float]]) -> None:
        for phase in LEASE_PHASES:
            ran = self.phase(sidecars, phase.job(self.seconds))
            base = self.baseline(phase.name, lease_script(phase.keys, phase.cap), phase.rate * SIDECARS)
            lease_rows(self.table, phase.name, ran, base)
            if phase.name in threaded:
                lease_rows(self.table, phase.name + THREADS, threaded[phase.name], None)

    def poll(self, sidecars: Sidecars) -> None:
        name = f"poll: Suspensions.active, {POLL_RATE * SIDECARS:,.0f}/s"
        samples, cpu, wall = self.phase(sidecars, Job(kind="poll", seconds=self.seconds, rate=POLL_RATE))
        base = self.baseline(name, poll_script(), POLL_RATE * SIDECARS)
        self.table.latency(name, flatten(samples, "main"), base.latencies)
        errors = sum(s.errors for s in samples)
        if errors:
            self.table.add(f"{name}: polls refused (FleetUnavailable)", str(errors))
        self.table.cpu(name, cpu, sum(len(s.main) for s in samples) / wall, base, base.tps, unit="poll")

    def ship(self, sidecars: Sidecars, journal: Path) -> None:
        sidecars.prepare(journal)
        steady = self.phase(sidecars, Job(kind="ship", seconds=self.seconds, rate=SHIP_RATE, batch=1))
        backlog = self.phase(sidecars, Job(kind="ship", seconds=120, batch=BACKLOG_BATCH, until_done=True))
        base = self.baseline(SHIP_STEADY, ship_script(self.server, 1), SHIP_RATE * SIDECARS)
        ship_rows(self.table, SHIP_STEADY, steady, base, 1)
        base = self.baseline(SHIP_BACKLOG, ship_script(self.server, BASE_BATCH), None)
        ship_rows(self.table, SHIP_BACKLOG, backlog, base, BASE_BATCH)


def main(quick: bool = False) -> None:
    seconds = 3.0 if quick else 4.0
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="suture-bench-fleet-"))
    try:
        folder.chmod(0o755)  # the server, as postgres, goes through it to its own folder
        (folder / "pg").mkdir()
        journal = folder / "journal.duckdb"  # built in a child (this process forks the sidecars) as the server starts
        builder = multiprocessing.get_context("fork").Process(target=build_journal, args=(str(journal), JOURNAL_FIXES))
        builder.start()
        with postgres(folder / "pg") as (server, proc):
            run = Run(folder, server, psutil.Process(proc.pid), seconds)
            fleet = FleetConnection(run.url, password=server.password)
            migrate(fleet)  # suture's own schema, as a sidecar's worker applies it
            fleet.close()
            builder.join()
            threaded = run.threaded()
            sidecars = run.sidecars(SIDECARS)
            try:
                run.idle(sidecars)
                run.leases(sidecars, threaded)
                run.poll(sidecars)
                run.ship(sidecars, journal)
            finally:
                sidecars.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"Fleet mode: {SIDECARS} sidecars (a process each, each its own FleetConnection) on a local PostgreSQL 15,"
          f" {seconds:g} s a phase: `make bench` (python tests/bench/run.py fleet), {os.cpu_count()} cores,"
          f" {datetime.now(UTC):%Y-%m-%d}, {time.monotonic() - began:.0f} s in all")
    print()
    print("| what | suture | baseline: pgbench | ratio |")
    print("|---|---:|---:|---:|")
    print("\n".join(run.table.rows))
    print()
    print("Baselines (`-f SCRIPT`: the same statements in the same transactions, written by tests/bench/fleet.py;"
          " `-D`: its variables):")
    print()
    for command in run.commands:
        print(f"- {command}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter phases, for a smoke run")
    main(quick=parser.parse_args().quick)
