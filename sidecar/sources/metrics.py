"""Host and process metrics through psutil, for ``metric`` conditions.

:class:`MetricsSampler` turns one ``sample(now)`` into a list of
:class:`~.base.MetricSample` and never raises: a part that cannot be read (a
missing ``/proc`` file, a mount that went away) is left out of that sample and
described in ``errors``. The names are the ``name`` of a ``metric`` condition:

======================================  ==============================================
``cpu_percent``                         host CPU busy since the previous sample (the
                                        first sample only primes it)
``memory_percent``, ``swap_percent``    host memory / swap in use (psutil's figures)
``load1``, ``load5``, ``load15``        load averages
``disk_percent``                        the root mount, ``/``
``disk.<mountpoint>.percent``           every mount, as written: ``disk./var/lib.percent``
``process.<name>.up``                   1 when the configured process runs, else 0
``process.<name>.cpu_percent``          CPU since the previous sample, percent of one CPU
``process.<name>.rss_bytes``            resident memory
``process.<name>.memory_percent``       resident memory over host memory
======================================  ==============================================

Processes are configured as in ``metrics.processes`` of suture.yaml: ``{"pidfile": PATH}``
(the pid written in that file) or ``{"name": NAME}`` (every process with that name,
summed: a master and its workers count as one service). A missing or unreadable
pid file, a dead or zombie process gives ``up`` 0 and no other metric of it.
Percentages computed here (CPU, process memory) are rounded to 0.01.

Where the numbers come from, and why sampling is single-threaded: psutil reads
``/proc`` through the module-global ``psutil.PROCFS_PATH``; :meth:`MetricsSampler.sample`
sets it to ``proc_root`` for the duration of the sample and restores it after, so
only one sample may run at a time in a process (the runtime samples on one thread).
That is what lets the tests run against a checked-in fake procfs; with the default
``/proc`` the swap writes the value already there, so psutil calls on other threads
(sidecar.effects) are unaffected.

Load averages are read from ``proc_root/loadavg`` directly, because
``psutil.getloadavg`` is ``os.getloadavg`` and would ignore ``proc_root``. Disk
usage is ``statvfs`` of the mountpoint on the real machine; only the *list* of
mounts comes from ``proc_root`` (psutil lists ``/etc/mtab`` for the real
``/proc``, ``proc_root/self/mounts`` otherwise). Read-only images (squashfs snaps,
ISO mounts) are always full by design and are left out of that list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil

from .base import MetricSample

ROOT_MOUNT = "/"
# Read-only images (snaps, live media) are full by design; a disk alert on them is noise.
IMAGE_FSTYPES = frozenset({"squashfs", "erofs", "iso9660", "udf", "cramfs"})
GONE_STATUSES = frozenset({psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})
# What reading procfs can raise: a file missing or refused, a malformed line, a process gone.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    IndexError,
    KeyError,
    RuntimeError,
    psutil.Error,
)

ProcessKey = tuple[int, float]  # (pid, create time): a pid reused by a new process is a new key
Metrics = list[tuple[str, float]]


@contextlib.contextmanager
def procfs(root: Path) -> Iterator[None]:
    """Point psutil at ``root`` for the duration of the block (not thread-safe: see module doc)."""
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(root)
    try:
        yield
    finally:
        psutil.PROCFS_PATH = saved


class MetricsSampler:
    """Host, disk and process metrics; one instance remembers the previous sample for CPU rates."""

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        processes: Mapping[str, Mapping[str, str]] | None = None,
        mounts: Sequence[str] | None = None,
    ) -> None:
        """``mounts``: the mountpoints to report; None: every real filesystem, no pseudo ones."""
        for name, spec in (processes or {}).items():
            if len(spec) != 1 or not ({"pidfile", "name"} & set(spec)):
                raise ValueError(f"process '{name}' needs exactly one of pidfile, name; got {dict(spec)}")
        self.proc_root = Path(proc_root)
        self.processes = {name: dict(spec) for name, spec in (processes or {}).items()}
        self.mounts = tuple(mounts) if mounts is not None else None
        self.errors: tuple[str, ...] = ()  # what the last sample could not read
        self._cpu_before: tuple[float, float] | None = None  # host (busy, total) seconds
        self._proc_before: dict[str, tuple[float, dict[ProcessKey, float]]] = {}  # name -> (at, cpu s)

    def sample(self, now: float) -> list[MetricSample]:
        """Every metric readable now, stamped ``now``; never raises."""
        errors: list[str] = []
        values: Metrics = []
        parts: tuple[tuple[str, Callable[[float, list[str]], Metrics]], ...] = (
            ("cpu", self._cpu),
            ("memory", self._memory),
            ("load", self._load),
            ("disk", self._disks),
            ("processes", self._processes),
        )
        with procfs(self.proc_root):
            for label, part in parts:
                try:
                    values.extend(part(now, errors))
                except READ_ERRORS as exc:
                    errors.append(f"{label}: {_describe(exc)}")
        self.errors = tuple(errors)
        return [MetricSample(name=name, value=value, at=now) for name, value in values]

    # -- host --

    def _cpu(self, now: float, errors: list[str]) -> Metrics:
        busy, total = _busy_total(psutil.cpu_times())
        before, self._cpu_before = self._cpu_before, (busy, total)
        if before is None:
            return []  # the first sample only primes the rate
        elapsed = total - before[1]
        if elapsed <= 0:
            return []  # no tick passed (or the counters went back): no rate to report
        percent = min(max((busy - before[0]) / elapsed * 100, 0.0), 100.0)
        return [("cpu_percent", round(percent, 2))]

    def _memory(self, now: float, errors: list[str]) -> Metrics:
        return [
            ("memory_percent", float(psutil.virtual_memory().percent)),
            ("swap_percent", float(psutil.swap_memory().percent)),
        ]

    def _load(self, now: float, errors: list[str]) -> Metrics:
        fields = (self.proc_root / "loadavg").read_text().split()
        return [("load1", float(fields[0])), ("load5", float(fields[1])), ("load15", float(fields[2]))]

    def _disks(self, now: float, errors: list[str]) -> Metrics:
        out: Metrics = []
        mounts = self.mounts if self.mounts is not None else real_mounts()
        for mount in dict.fromkeys((ROOT_MOUNT, *mounts)):
            try:
                percent = float(psutil.disk_usage(mount).percent)
            except OSError as exc:
                errors.append(f"disk {mount}: {_describe(exc)}")
                continue
            if mount == ROOT_MOUNT:
                out.append(("disk_percent", percent))
            if mount in mounts:
                out.append((f"disk.{mount}.percent", percent))
        return out

    # -- processes --

    def _processes(self, now: float, errors: list[str]) -> Metrics:
        if not self.processes:
            return []
        try:
            host_total: float | None = float(psutil.virtual_memory().total)
        except READ_ERRORS:
            host_total = None
        out: Metrics = []
        for name, spec in self.processes.items():
            out.extend(self._process(name, spec, now, host_total))
        return out

    def _process(self, name: str, spec: Mapping[str, str], now: float, host_total: float | None) -> Metrics:
        prefix = f"process.{name}"
        cpu: dict[ProcessKey, float] = {}
        rss = 0
        for proc in _find(spec):
            try:
                with proc.oneshot():
                    if proc.status() in GONE_STATUSES:
                        continue
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    rss_one = proc.memory_info().rss
            except READ_ERRORS:
                continue  # it ended while we looked: not running
            cpu[key] = times.user + times.system
            rss += rss_one
        before = self._proc_before.pop(name, None)
        if not cpu:
            return [(f"{prefix}.up", 0.0)]
        self._proc_before[name] = (now, cpu)
        out: Metrics = [(f"{prefix}.up", 1.0), (f"{prefix}.rss_bytes", float(rss))]
        if host_total:
            out.append((f"{prefix}.memory_percent", round(rss / host_total * 100, 2)))
        rate = _cpu_rate(before, now, cpu)
        if rate is not None:
            out.append((f"{prefix}.cpu_percent", rate))
        return out


def real_mounts() -> tuple[str, ...]:
    """Mountpoints of real filesystems (psutil's physical partitions), images left out, once each."""
    parts = psutil.disk_partitions(all=False)
    return tuple(dict.fromkeys(p.mountpoint for p in parts if p.fstype not in IMAGE_FSTYPES))


def _busy_total(times: object) -> tuple[float, float]:
    """(busy, total) CPU seconds the way psutil and htop count them on Linux.

    Guest time is already inside user/nice, so it is taken out of the total;
    idle and iowait are the CPU doing nothing.
    """
    total = float(sum(times))  # type: ignore[call-overload]
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    busy = total - getattr(times, "idle", 0.0) - getattr(times, "iowait", 0.0)
    return busy, total


def _cpu_rate(
    before: tuple[float, dict[ProcessKey, float]] | None, now: float, cpu: Mapping[ProcessKey, float]
) -> float | None:
    """Percent of one CPU used since ``before`` by the processes seen both times; None to prime."""
    if before is None:
        return None
    at, seen = before
    common = [key for key in cpu if key in seen]
    if now <= at or not common:
        return None
    used = sum(max(cpu[key] - seen[key], 0.0) for key in common)
    return round(used / (now - at) * 100, 2)


def _find(spec: Mapping[str, str]) -> list[psutil.Process]:
    """The processes a spec names right now; empty when none (or the pid file is unreadable)."""
    if "pidfile" in spec:
        try:
            pid = int(Path(spec["pidfile"]).read_text().strip())
            return [psutil.Process(pid)] if pid > 0 else []
        except READ_ERRORS:
            return []
    found: list[psutil.Process] = []
    for pid in psutil.pids():
        try:
            proc = psutil.Process(pid)
            if proc.name() == spec["name"]:
                found.append(proc)
        except READ_ERRORS:
            continue
    return found


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"
