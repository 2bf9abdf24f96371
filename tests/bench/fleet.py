"""Fleet mode on PostgreSQL: 100 sidecars on leases, polls and the outbox, against pgbench (issue 15 item 9).

    .venv/bin/python tests/bench/fleet.py        # alone (~230 s); also `python tests/bench/run.py fleet`, `make bench`

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
  each, then the rest as a backlog in one pass of the Shipper's default batch (200), all at once;
- admission, the real decision path: each sidecar its own :class:`FleetGate` (``fleet.fixes_per_hour``
  100,000, so the hourly cap never answers) asking about one playbook parsed as suture parses a file,
  ``FleetGate.admit`` then ``FleetGate.ended`` (the lease released; a canary's row ended) at Poisson times,
  2 a second each: ``scope: replica`` (each sidecar its own lease key, ``max_concurrent`` 100) with
  ``canary`` 0, then 1 after a canary of the version succeeded (its rows read at every admission), and
  flat out (what the (group, playbook) advisory lock lets through); ``scope: fleet`` on one shared key,
  the sidecar that acts holding the lease 1 s (its fix) while the others are told ``skip``; the fence
  check (``LeaseFence.lost``) at 10 a second each with 100 leases held; and canary rounds: 100 replicas
  ask at once, one becomes the canary, 99 are told ``wait``; it ends succeeded and the 99 ask again.
  fleet_starts, fleet_canaries and fleet_leases are emptied between phases.

Baseline, in the same run, on the same server: ``pgbench -c 100 -j 2 -M prepared -T 4`` with a
custom script (``-f``) of the same statements (``ACQUIRE`` and ``HELD_ELSEWHERE`` from
sidecar/fleet_leases.py, the outbox's ``UPSERT_FIX`` / ``INSERT_STEP`` with a row suture shipped,
the admission's ``SUSPENSION`` / ``STARTS`` / ``EXPIRED`` / ``CANARIES`` from sidecar/fleet_gate.py; the
statements that are no module constant are read from the source of the function that sends them, see
:func:`inline_sql`), in the same transactions and round trips, at the same total rate (``-R``, Poisson
too); the backlog baseline and the flat-out admission run flat out, the backlog 20 fixes a transaction
(see BASE_BATCH); a canary round's is ``-t 1``, each client one admission at once. Percentiles come from its
per-transaction log (``-l``), less the schedule lag, as suture's are timed from the call.
PostgreSQL's CPU: the postmaster and its children (psutil finds them), CPU seconds / wall from
schedstat (see :func:`on_cpu`), in the middle of each phase. The clients share the server's 2
cores: suture's Python clients take CPU the server then lacks, pgbench's C client much less; the
client CPU rows say how much. Nothing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import functools
import inspect
import json
import multiprocessing
import os
import queue
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
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
from suture.engine.config import FleetConfig
from suture.engine.decide import Decision
from suture.engine.errors import FleetUnavailable
from suture.engine.fix import Outcome
from suture.engine.fleet_values import Busy, Lease
from suture.engine.loader import parse_playbook
from suture.engine.playbook import Playbook
from suture.engine.store import Store
from suture.sidecar.fleet_gate import CANARIES, EXPIRED, STARTS, SUSPENSION, FleetGate
from suture.sidecar.fleet_leases import (
    ACQUIRE,
    HELD_ELSEWHERE,
    HOSTILE_FACTOR,
    PLAYBOOK_LOCK,
    RELEASE,
    Leases,
    acquire_in,
)
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

# admission (FleetGate.admit, then FleetGate.ended)
FIXES_PER_HOUR = 100_000  # fleet.fixes_per_hour: far above what a phase starts, so the hourly cap never answers
ADMIT_RATE = 2.0  # admissions a second per sidecar: 200/s across the group
FENCE_RATE = 10.0  # LeaseFence.lost a second per sidecar: 1,000/s
HOLD = 1.0  # scope: fleet: the sidecar that acted holds the lease this long (its fix running), then ended
SHARED_KEY = "target"
CANARY_ROUNDS = 5
CANARY_END, ASK_AGAIN = 1.5, 2.0  # a canary round: the canary ends (succeeded), then the others ask again
# psycopg placeholders -> pgbench variables (sent as untyped parameters: the products need a type)
PGBENCH_VARS = {"%(grp)s": ":grp", "%(pb)s": ":pb", "%(key)s": ":key", "%(holder)s": ":holder",
                "%(ttl)s": ":ttl::float8", "%(factor)s": ":factor::int"}


def inline_sql(function: Callable[..., Any], starts: str) -> str:
    """The one string literal in ``function``'s source that starts with ``starts`` (whitespace aside): a statement
    suture sends that is no module constant, read where it is sent, so the baselines follow the code (none or
    two found: the bench stops)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    found = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and " ".join(node.value.split()).startswith(starts)}
    if len(found) != 1:
        raise RuntimeError(f"{function.__qualname__}: {len(found)} string literals start with {starts!r}")
    return found.pop()


@functools.cache
def inline() -> dict[str, str]:
    """The statements of Leases, Suspensions and FleetGate that are not module constants."""
    return {"held_by": inline_sql(acquire_in, "SELECT holder, token"),  # the lease held: who holds it
            "active": inline_sql(Suspensions.active, "SELECT suspended_at"),
            "start": inline_sql(FleetGate.admit, "INSERT INTO fleet_starts"),
            "canary": inline_sql(FleetGate.admit, "INSERT INTO fleet_canaries"),
            "lost": inline_sql(Leases.lost, "SELECT left(holder")}


@functools.cache
def bench_playbook(scope: str) -> Playbook:
    """The playbook every admission asks about (one id, the scope asked), parsed as suture parses a file."""
    return parse_playbook(textwrap.dedent(f"""
        id: {PLAYBOOK}
        scope: {scope}
        when: {{log: {{source: app, pattern: 'cache stale', at_least: 1, within: 1m}}}}
        confidence: 90
        fix: [{{set: {{file: config/settings.yaml, key: cache.flush, value: true}}}}]
        validate: {{window: 10s, expect: [{{log: {{source: app, pattern: 'cache stale', at_most: 0}}}}]}}
    """), f"{PLAYBOOK}.yaml")


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

    kind: str  # lease, poll, ship, admit, fence, canary, journals (open the journals: no timing)
    start: float = 0.0
    seconds: float = 0.0
    rate: float = 0.0  # per sidecar per second; 0: flat out
    keys: int = 0  # lease: that many shared keys; 0: one key per sidecar
    cap: int | None = None  # lease, admit, fence, canary: max_concurrent
    batch: int = 1  # ship: the Shipper's batch (fixes per transaction)
    until_done: bool = False  # ship: until nothing is pending (``seconds`` is then a bound)
    journal: str = ""  # journals: the template to copy
    scope: str = "replica"  # admit: the playbook's scope
    canary: int = 0  # admit, canary: fleet.canary
    hold: float = 0.0  # admit: how long a fix that acted holds its lease before ended; canary: when the canary ends
    ask_again: float = 0.0  # canary: when the replicas that waited ask again (after ``start``)


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
    admit: list[float] = field(default_factory=list)  # FleetGate.admit
    end: list[float] = field(default_factory=list)  # FleetGate.ended
    actions: dict[str, int] = field(default_factory=dict)  # admit's answers: act, wait, skip, propose
    answers: list[tuple[int, float, float, str]] = field(default_factory=list)  # canary: (ask, asked, answered, action)


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


def gate_for(i: int, fleet: FleetConnection, job: Job) -> FleetGate:
    """Sidecar ``i``'s FleetGate, on its own connection, as Fleet.open makes one (the config's ``postgres`` is
    not read by the gate)."""
    config = FleetConfig(postgres="postgresql://bench", group=GROUP, canary=job.canary,
                         max_concurrent=job.cap or 1, fixes_per_hour=FIXES_PER_HOUR, lease=TTL)
    return FleetGate(config, name=f"sidecar-{i}", decisions=fleet)


def closed(verdict: Any) -> bool:
    """An answer the gate gave without the group (FleetUnavailable, failed closed)."""
    return bool(verdict.without_fleet) or (verdict.action == "propose" and "fleet is unavailable" in verdict.reason)


def ended(gate: FleetGate, pb: Playbook, fix_id: str) -> float:
    """FleetGate.ended of a fix that succeeded; its seconds."""
    t0 = time.monotonic()
    gate.ended(Outcome(fix_id=fix_id, playbook_id=pb.id, status="succeeded", detail="the bench's fix"))
    return time.monotonic() - t0


def admit_sidecar(i: int, fleet: FleetConnection, _shipper: Shipper | None, job: Job) -> Samples:
    """FleetGate.admit at Poisson times; a fix that acted ends (FleetGate.ended) at once, or ``job.hold`` later
    (the times due while it held the lease pass: a sidecar does not ask for the fix it is running; none after the
    phase's end). ``main``: the admission, admit then ended when it acted; with a hold, the answers other than act."""
    gate, pb, out = gate_for(i, fleet, job), bench_playbook(job.scope), Samples()
    key = SHARED_KEY if job.scope == "fleet" else ""
    busy_until, end = 0.0, job.start + job.seconds
    for n, due in enumerate(schedule(job, random.Random(i))):
        if due < busy_until:
            continue
        if time.monotonic() >= end:
            break
        fix_id = f"{job.start:.3f}-{i}-{n}"
        t0 = time.monotonic()
        verdict = gate.admit(pb, key, fix_id)
        took = time.monotonic() - t0
        out.admit.append(took)
        out.actions[verdict.action] = out.actions.get(verdict.action, 0) + 1
        out.errors += closed(verdict)
        if verdict.action != "act":
            out.main.append(took)
            continue
        if job.hold:
            busy_until = t0 + took + job.hold
            sleep_until(busy_until)
        out.end.append(ended(gate, pb, fix_id))
        if not job.hold:
            out.main.append(took + out.end[-1])
    return out


def fence_sidecar(i: int, fleet: FleetConnection, _shipper: Shipper | None, job: Job) -> Samples:
    """Takes a scope: fleet lease on a key of its own (admit, before the phase starts), then checks it at Poisson
    times as every step of a fix does (LeaseFence.lost); ``errors``: checks that did not answer None."""
    gate, pb, out = gate_for(i, fleet, job), bench_playbook("fleet"), Samples()
    fix_id = f"{job.start:.3f}-{i}-fence"
    verdict = gate.admit(pb, str(i), fix_id)
    fence = gate.fence(fix_id, pb) if verdict.action == "act" else None
    if fence is None:
        out.errors += 1
        return out
    for _ in schedule(job, random.Random(i)):
        t0 = time.monotonic()
        lost = fence.lost()
        out.main.append(time.monotonic() - t0)
        out.errors += lost is not None
    ended(gate, pb, fix_id)
    return out


def canary_sidecar(i: int, fleet: FleetConnection, _shipper: Shipper | None, job: Job) -> Samples:
    """A canary round: every sidecar asks at ``start``; the one that acted (the canary) ends, succeeded, at
    ``start + hold``; the others ask again at ``start + ask_again`` and end what acted."""
    gate, pb, out = gate_for(i, fleet, job), bench_playbook("replica"), Samples()
    for ask, at in ((1, job.start), (2, job.start + job.ask_again)):
        fix_id = f"{job.start:.3f}-{i}-{ask}"
        sleep_until(at)
        t0 = time.monotonic()
        verdict = gate.admit(pb, "", fix_id)
        out.answers.append((ask, t0, time.monotonic(), verdict.action))
        out.errors += closed(verdict)
        if verdict.action != "act":
            continue
        if ask == 1:
            sleep_until(job.start + job.hold)
        ended(gate, pb, fix_id)
        if ask == 1:
            break
    return out


PHASES: dict[str, Callable[[int, FleetConnection, Shipper | None, Job], Samples]] = {
    "lease": lease_sidecar, "poll": poll_sidecar, "ship": ship_sidecar, "admit": admit_sidecar,
    "fence": fence_sidecar, "canary": canary_sidecar}


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
        # a warm-up, or a canary round (a sample's CPU would land amid its asks): not measured
        cpu = measure(postmaster, self.pids, start, end) if end - start >= 0.5 and job.kind != "canary" else Cpu()
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


def pgbench_args(text: str, *variables: str) -> str:
    """A statement of suture's with positional ``%s`` parameters: the pgbench ``variables`` in their places, in
    order (``ttl::float8``: a variable and its type), on one line."""
    parts = text.split("%s")
    if len(parts) != len(variables) + 1:
        raise ValueError(f"{len(parts) - 1} parameters, {len(variables)} variables: {' '.join(text.split())[:80]}")
    return " ".join((parts[0] + "".join(f":{v}{p}" for v, p in zip(variables, parts[1:], strict=True))).split())


def acquire_gset() -> str:
    """ACQUIRE, its token (0: not acquired) into :tok."""
    return f"WITH a AS ({pgbench_sql(ACQUIRE)}) SELECT coalesce((SELECT token FROM a), 0) AS tok \\gset"


def lease_script(keys: int, cap: int | None) -> str:
    acquire = acquire_gset()
    held_by, release = pgbench_args(inline()["held_by"], "grp", "pb", "key"), release_sql()
    lines = [f"\\set key random(1, {keys})" if keys else "\\set key :client_id", "\\set holder :client_id"]
    if cap is None:  # Leases.acquire without a cap: the upsert alone, autocommit; who holds it when it fails
        lines += [acquire, "\\if :tok = 0", held_by + ";", "\\endif"]
    else:
        lines += ["BEGIN;", pgbench_args(PLAYBOOK_LOCK, "lock") + ";", held_elsewhere(),
                  "\\if :held >= :cap", "\\set tok 0", "\\else", acquire,
                  "\\if :tok = 0", held_by + ";", "\\endif", "\\endif", "COMMIT;"]
    lines += ["\\if :tok > 0", release + ";", "\\endif"]
    return "\n".join(lines) + "\n"


def held_elsewhere() -> str:
    """HELD_ELSEWHERE, its count into :held."""
    return pgbench_sql(HELD_ELSEWHERE).replace("count(*)", "count(*) AS held", 1) + " \\gset"


def release_sql() -> str:
    return pgbench_args(RELEASE, "grp", "pb", "key", "tok", "holder")


def poll_script() -> str:  # Suspensions.active: one transaction
    return f"BEGIN;\n{pgbench_args(inline()['active'], 'grp', 'pb')};\nCOMMIT;\n"


def admission_script(scope: str, canary: int, *, hold: float = 0.0, round_: bool = False) -> str:
    """FleetGate.admit's transaction, statement for statement (the advisory lock, the suspension, the hourly
    count, with canaries the expired ones and this version's, the lock again as acquire_in takes it, the leases
    held, the upsert, who holds it when it failed, the canary row, the start), then FleetGate.ended's (the
    release) when it got the lease. ``scope: replica`` on the client's own key, ``fleet`` on ``:key``. ``hold``:
    the client that acted sleeps that long before it ends (its latency then includes it). ``round_``: a canary
    round, as its first ask: this version's running canaries counted (the same statement, its rows counted by
    the server, not by plan()): as many as ``canary`` -> wait (commit); else the lease, the canary row, the
    start; nothing ended (the canary ends later, outside the timing)."""
    sql = inline()
    lines = ["\\set fid random(1, 1000000000000)", "\\set holder :client_id",
             *(["\\set key :client_id"] if scope == "replica" else []), "BEGIN;",
             pgbench_args(PLAYBOOK_LOCK, "lock") + ";", pgbench_args(SUSPENSION, "grp", "pb") + ";",
             pgbench_args(STARTS, "grp") + ";"]
    if scope == "replica" and canary > 0:
        lines.append(pgbench_args(EXPIRED, "grp", "pb") + ";")
        canaries = pgbench_args(CANARIES, "grp", "pb", "version")
        if round_:
            lines += [f"WITH c AS ({canaries}) SELECT count(*) AS running FROM c WHERE state = 'running' \\gset",
                      "\\if :running >= :canary", "\\set tok 0", "\\else"]
        else:
            lines.append(canaries + ";")
    lines += [pgbench_args(PLAYBOOK_LOCK, "lock") + ";", held_elsewhere(), "\\if :held >= :cap", "\\set tok 0",
              "\\else", acquire_gset(), "\\if :tok = 0", pgbench_args(sql["held_by"], "grp", "pb", "key") + ";",
              "\\endif", "\\endif", *(["\\endif"] if round_ else []), "\\if :tok > 0"]
    if round_:
        lines.append(pgbench_args(sql["canary"], "grp", "pb", "version", "fid", "client_id", "ttl::float8") + ";")
    lines += [pgbench_args(sql["start"], "grp", "pb", "fid", "client_id") + ";", "\\endif", "COMMIT;"]
    if not round_:
        lines += ["\\if :tok > 0", *([f"\\sleep {round(hold * 1000)} ms"] if hold else []),
                  "BEGIN;", release_sql() + ";", "COMMIT;", "\\endif"]
    return "\n".join(lines) + "\n"


def fence_script() -> str:  # LeaseFence.lost: Leases.lost, one statement, autocommit
    return f"\\set key :client_id\n{pgbench_args(inline()['lost'], 'grp', 'pb', 'key')};\n"


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
    log: list[tuple[int, float, float]] = field(default_factory=list)  # (client, began, ended), epoch seconds


def pgbench(server: Any, postmaster: psutil.Process, script: str, *, seconds: float, rate: float | None,
            folder: Path, defines: dict[str, Any] | None = None, transactions: int | None = None) -> Bench:
    """pgbench with ``script`` for ``seconds``, at ``rate`` transactions/s in all (Poisson), or flat out; or
    ``transactions`` per client, all at once (no CPU then: they are over in a moment)."""
    bin_dir = Path(postmaster.exe()).parent
    run = Path(tempfile.mkdtemp(prefix="pgbench-", dir=folder))
    (run / "script.sql").write_text(script)
    defines = {"grp": PGBENCH_GROUP, "pb": PLAYBOOK, "ttl": TTL, "factor": HOSTILE_FACTOR, "cap": 1,
               "lock": f"{PGBENCH_GROUP}/{PLAYBOOK}", **(defines or {})}
    length = ["-t", str(transactions)] if transactions else ["-T", str(round(seconds))]
    argv = [str(bin_dir / "pgbench"), "-h", server.host, "-p", str(server.port), "-U", server.user, "-n",
            "-f", str(run / "script.sql"), "-c", str(SIDECARS), "-j", "2", *length, "-M", "prepared",
            *(["-R", str(round(rate))] if rate else []), "-l", f"--log-prefix={run}/tx",
            *(arg for k, v in defines.items() if re.search(f":{k}\\b", script) for arg in ("-D", f"{k}={v}")),
            server.database]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=run,
                            env={**os.environ, "PGPASSWORD": server.password})
    cpu = Cpu() if transactions else measure(postmaster, [proc.pid], started + 1.0, started + seconds - 0.3)
    stdout, stderr = proc.communicate()  # (the CPU from after its 100 logins)
    if proc.returncode:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout.decode())
    latencies, logged = [], []
    for log in run.glob("tx.*"):
        for line in log.read_text().splitlines():
            f = line.split()  # client_id transaction_no time script_no time_epoch time_us [schedule_lag]
            latencies.append((int(f[2]) - (int(f[6]) if len(f) > 6 else 0)) / 1e6)
            done = int(f[4]) + int(f[5]) / 1e6
            logged.append((int(f[0]), done - int(f[2]) / 1e6, done))
    shown = {str(run / "script.sql"): "SCRIPT", f"--log-prefix={run}/tx": "", server.host: "HOST",
             str(server.port): "PORT"}
    command = " ".join(shown.get(a, a) for a in argv[1:] if shown.get(a, a))
    return Bench(latencies=latencies, tps=float(tps.group(1)) if tps else 0.0, cpu=cpu, command=command, log=logged)


# -- the table --


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def ms(values: Sequence[float], p: float) -> str:
    return f"{pct(values, p) * 1e3:.1f}"


def ratio(a: float, b: float) -> str:
    if not b:
        return ""
    return f"{a / b:.1f}x" if a / b >= 0.1 else f"{a / b:.2f}x"


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


@dataclass(frozen=True)
class AdmitPhase:
    name: str
    scope: str
    canary: int  # fleet.canary
    cap: int  # fleet.max_concurrent
    rate: float  # admissions a second per sidecar; 0: flat out
    hold: float = 0.0  # the fix that acted holds its lease this long before it ends
    seeded: bool = False  # a canary of this playbook version succeeded first (the group after a canary round)

    def job(self, seconds: float) -> Job:
        return Job(kind="admit", seconds=seconds, rate=self.rate, cap=self.cap, scope=self.scope, canary=self.canary,
                   hold=self.hold)


ADMIT_PHASES = (
    AdmitPhase("admission, scope: replica, canary 0, max_concurrent 100, 200/s", "replica", 0, SIDECARS, ADMIT_RATE),
    AdmitPhase("admission, scope: replica, canary 1 (succeeded), max_concurrent 100, 200/s", "replica", 1, SIDECARS,
               ADMIT_RATE, seeded=True),
    AdmitPhase("admission, scope: replica, canary 0, max_concurrent 100, flat out", "replica", 0, SIDECARS, 0.0),
    AdmitPhase(f"admission, scope: fleet, 1 shared key, 200 attempts/s, the one acting holds it {HOLD:g} s", "fleet", 1,
               1, ADMIT_RATE, hold=HOLD),
)
ACTIONS = ("act", "wait", "skip", "propose")
FENCE = f"fence check: LeaseFence.lost, 100 leases held (scope: fleet, a key each), {FENCE_RATE * SIDECARS:,.0f}/s"


def admission_rows(table: Table, phase: AdmitPhase, run: tuple[list[Samples], Cpu, float], base: Bench,
                   acted: Sequence[bool]) -> None:
    """``acted``: which of pgbench's transactions (as its log lists them) took the lease."""
    samples, cpu, wall = run
    name = phase.name
    actions = [sum(s.actions.get(a, 0) for s in samples) for a in ACTIONS]
    errors = sum(s.errors for s in samples)
    ends = flatten(samples, "end")
    table.latency(f"{name}: FleetGate.admit", flatten(samples, "admit"))
    table.latency(f"{name}: FleetGate.ended (lease released){f', {len(ends)} ends' if len(ends) < 100 else ''}", ends)
    theirs = base.latencies
    if phase.hold:  # pgbench's acting transactions include their hold (\sleep): counted, not timed
        theirs = [x for x, got in zip(base.latencies, acted, strict=True) if not got]
        table.latency(f"{name}: admit, the answers other than act", flatten(samples, "main"), theirs)
    else:
        table.latency(f"{name}: an admission (admit, then ended if it acted)", flatten(samples, "main"), theirs)
    answers = sum(actions) / wall
    table.add(f"{name}: answers/s ({' / '.join(ACTIONS)}{' / failed closed' if errors else ''})",
              f"{answers:,.0f} ({' / '.join(f'{n:,}' for n in actions)}{f' / {errors}' if errors else ''})",
              f"{base.tps:,.0f}{f' ({sum(acted):,} acted)' if phase.hold else ''}")
    table.cpu(name, cpu, answers, base, base.tps, unit="admission")


def spread(values: Sequence[float]) -> str:
    """Median / max, in ms."""
    return f"{statistics.median(values) * 1e3:.1f} / {max(values) * 1e3:.1f}" if values else "-"


@dataclass
class Rounds:
    """Canary rounds, seconds after a round's first ask: its first ``act``, its last other answer, its last ask."""

    first: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    asked: list[float] = field(default_factory=list)
    again: list[float] = field(default_factory=list)  # the second ask, after the canary's success: all answered
    right: int = 0  # rounds answered one act and 99 waits
    acted_again: int = 0  # answers act at the second ask (99 a round)

    def add(self, first: list[tuple[float, float, str]]) -> None:
        """``first``: the first ask's (asked, answered, action), one per replica."""
        began = min(a[0] for a in first)
        acts = [a[1] - began for a in first if a[2] == "act"]
        waits = [a[1] - began for a in first if a[2] == "wait"]
        self.right += len(acts) == 1 and len(waits) == SIDECARS - 1
        if acts:
            self.first.append(min(acts))
        if waits:
            self.last.append(max(waits))
        self.asked.append(max(a[0] for a in first) - began)


def canary_rows(table: Table, rounds: int, ours: Rounds, theirs: Rounds) -> None:
    name = (f"canary round: canary 1, max_concurrent 100, 100 replicas ask at once ({rounds} rounds;"
            " median / max ms after the round's first ask)")
    for what, a, b in (("the last of the 100 asks sent", ours.asked, theirs.asked),
                       ("the first answer act (the canary)", ours.first, theirs.first),
                       ("the 99 others all answered wait", ours.last, theirs.last)):
        table.add(f"{name}: {what}", spread(a), spread(b),
                  ratio(statistics.median(a), statistics.median(b)) if a and b else "")
    table.add(f"{name}: rounds answered 1 act + 99 wait", f"{ours.right} of {rounds}", f"{theirs.right} of {rounds}")
    table.add(f"{name}: then the canary ended (succeeded), the 99 asked again at once: all answered"
              f" ({ours.acted_again:,} of {len(ours.again) * (SIDECARS - 1):,} act)", spread(ours.again))


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

    def baseline(self, name: str, script: str, rate: float | None, **options: Any) -> Bench:
        base = pgbench(self.server, self.postmaster, script, seconds=self.seconds, rate=rate, folder=self.folder,
                       **options)
        if not any(c.startswith(f"{name}: ") for c in self.commands):
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
        ran = self.phase(sidecars, Job(kind="poll", seconds=self.seconds, rate=POLL_RATE))
        base = self.baseline(name, poll_script(), POLL_RATE * SIDECARS)
        self.calls(name, ran, base, errors="polls refused (FleetUnavailable)", unit="poll")

    def calls(self, name: str, run: tuple[list[Samples], Cpu, float], base: Bench, *, errors: str, unit: str) -> None:
        """A phase of one call a sample (a poll, a fence check): its latency against pgbench's, its errors, CPU."""
        samples, cpu, wall = run
        self.table.latency(name, flatten(samples, "main"), base.latencies)
        if failed := sum(s.errors for s in samples):
            self.table.add(f"{name}: {errors}", str(failed))
        self.table.cpu(name, cpu, sum(len(s.main) for s in samples) / wall, base, base.tps, unit=unit)

    def ship(self, sidecars: Sidecars, journal: Path) -> None:
        sidecars.prepare(journal)
        steady = self.phase(sidecars, Job(kind="ship", seconds=self.seconds, rate=SHIP_RATE, batch=1))
        backlog = self.phase(sidecars, Job(kind="ship", seconds=120, batch=BACKLOG_BATCH, until_done=True))
        base = self.baseline(SHIP_STEADY, ship_script(self.server, 1), SHIP_RATE * SIDECARS)
        ship_rows(self.table, SHIP_STEADY, steady, base, 1)
        base = self.baseline(SHIP_BACKLOG, ship_script(self.server, BASE_BATCH), None)
        ship_rows(self.table, SHIP_BACKLOG, backlog, base, BASE_BATCH)


    # -- admission --

    def truncate(self) -> None:
        """The rows admission reads and writes, emptied between phases."""
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            conn.execute("TRUNCATE fleet_starts, fleet_canaries, fleet_leases")

    def fleet(self) -> FleetConnection:
        return FleetConnection(self.url, password=self.server.password, application_name="bench")

    def seed_canary(self, group: str) -> None:
        """A canary of the replica playbook's version that succeeded, by suture's own path (admit, then ended)."""
        fleet, pb = self.fleet(), bench_playbook("replica")
        try:
            config = FleetConfig(postgres=self.url, group=group, canary=1, max_concurrent=SIDECARS,
                                 fixes_per_hour=FIXES_PER_HOUR, lease=TTL)
            gate = FleetGate(config, name="bench-canary", decisions=fleet)
            if not gate.admit(pb, "", "seed").canary:
                raise RuntimeError("the seed did not become the canary")
            ended(gate, pb, "seed")
        finally:
            fleet.close()

    def hold_leases(self) -> None:
        """pgbench's 100 clients' leases (scope: fleet, key and holder its client id), taken by Leases.acquire."""
        fleet = self.fleet()
        try:
            leases = Leases(fleet)
            for client in range(SIDECARS):
                if not isinstance(leases.acquire(PGBENCH_GROUP, PLAYBOOK, str(client), str(client), TTL), Lease):
                    raise RuntimeError("pgbench's lease was not taken")
        finally:
            fleet.close()

    def acted(self, base: Bench) -> list[bool]:
        """Which of pgbench's transactions took the lease: the start each recorded, by client and time."""
        with psycopg.connect(self.server.url()) as conn:
            starts: dict[int, list[float]] = {}
            for sidecar, at in conn.execute("SELECT sidecar, extract(epoch FROM started_at)::float8 FROM fleet_starts"
                                            " WHERE grp = %s", [PGBENCH_GROUP]):
                if sidecar.isdigit():  # not the seeded canary
                    starts.setdefault(int(sidecar), []).append(at)
        return [any(began <= at <= done for at in starts.get(client, ())) for client, began, done in base.log]

    def admission(self, sidecars: Sidecars, rounds: int) -> None:
        # warm up: psycopg prepares a statement on its 5th use on a connection, and admission's are new to each
        for job in (Job(kind="admit", seconds=2.0, rate=5.0, cap=SIDECARS, canary=1),
                    Job(kind="admit", seconds=1.5, rate=5.0, cap=1, scope="fleet", canary=1, hold=0.2),
                    Job(kind="fence", seconds=1.0, rate=FENCE_RATE, cap=SIDECARS)):
            self.truncate()
            self.phase(sidecars, job)
        for phase in ADMIT_PHASES:
            self.truncate()
            if phase.seeded:
                self.seed_canary(GROUP)
            ran = self.phase(sidecars, phase.job(self.seconds))
            self.truncate()
            if phase.seeded:
                self.seed_canary(PGBENCH_GROUP)
            defines = {"cap": phase.cap, "version": bench_playbook(phase.scope).digest[:12], "key": SHARED_KEY}
            base = self.baseline(phase.name, admission_script(phase.scope, phase.canary, hold=phase.hold),
                                 phase.rate * SIDECARS or None, defines=defines)
            admission_rows(self.table, phase, ran, base, self.acted(base) if phase.hold else [])
        self.fence(sidecars)
        self.canary_rounds(sidecars, rounds)

    def fence(self, sidecars: Sidecars) -> None:
        self.truncate()
        ran = self.phase(sidecars, Job(kind="fence", seconds=self.seconds, rate=FENCE_RATE, cap=SIDECARS))
        self.truncate()
        self.hold_leases()
        base = self.baseline(FENCE, fence_script(), FENCE_RATE * SIDECARS)
        self.calls(FENCE, ran, base, errors="sidecars without a lease, or checks not answering None", unit="check")

    def canary_rounds(self, sidecars: Sidecars, rounds: int) -> None:
        ours, theirs = Rounds(), Rounds()
        version = bench_playbook("replica").digest[:12]
        script = admission_script("replica", 1, round_=True)
        job = Job(kind="canary", seconds=ASK_AGAIN + 1.0, cap=SIDECARS, canary=1, hold=CANARY_END, ask_again=ASK_AGAIN)
        for _ in range(rounds):
            self.truncate()
            samples, _, _ = self.phase(sidecars, job)
            answers = [a for s in samples for a in s.answers]
            ours.add([(asked, answered, action) for ask, asked, answered, action in answers if ask == 1])
            again = [a for a in answers if a[0] == 2]
            if again:
                ours.again.append(max(a[2] for a in again) - min(a[1] for a in again))
                ours.acted_again += sum(a[3] == "act" for a in again)
            self.truncate()
            base = self.baseline("canary round, the first ask", script, None, transactions=1,
                                 defines={"cap": SIDECARS, "canary": 1, "version": version})
            with psycopg.connect(self.server.url()) as conn:
                canaries = {str(r[0]) for r in conn.execute("SELECT sidecar FROM fleet_canaries WHERE grp = %s",
                                                            [PGBENCH_GROUP])}
            theirs.add([(began, done, "act" if str(client) in canaries else "wait")
                        for client, began, done in base.log])
        canary_rows(self.table, rounds, ours, theirs)


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since it booted (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this process and of its children that ended (the server, the sidecars, pgbench)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def main(quick: bool = False) -> None:
    seconds = 3.0 if quick else 4.0
    began, busy, own = time.monotonic(), busy_seconds(), own_seconds()
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
                run.admission(sidecars, 3 if quick else CANARY_ROUNDS)
            finally:
                sidecars.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    wall = time.monotonic() - began
    others = (busy_seconds() - busy - (own_seconds() - own)) / wall
    print(f"Fleet mode: {SIDECARS} sidecars (a process each, each its own FleetConnection) on a local PostgreSQL 15,"
          f" {seconds:g} s a phase: `make bench` (python tests/bench/run.py fleet), {os.cpu_count()} cores,"
          f" {datetime.now(UTC):%Y-%m-%d}, {wall:.0f} s in all; other processes on this shared machine used"
          f" {others:.2f} cores meanwhile (its busy CPU less the bench's own)")
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
