"""Running a program for a fix: no shell, its own process group, bounded in time and in memory.

:func:`run_program` starts ``argv`` as written (stdin from /dev/null), keeps only the
last ``TAIL_BYTES`` of what it writes on each stream, and on timeout stops its whole
process group: SIGTERM, a grace period, then SIGKILL. :func:`printable` makes its
output one safe line for the journal.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramResult:
    """How a program ended, with the last bytes of its output."""

    returncode: int | None  # None when it was killed for running too long
    timed_out: bool
    seconds: float
    stdout: bytes  # at most TAIL_BYTES: the end of what it wrote
    stderr: bytes


class _Tail:
    """The last ``size`` bytes fed in."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > self.size:
            del self.data[: len(self.data) - self.size]


def run_program(
    argv: tuple[str, ...] | list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    grace: float = 2.0,
    tail_bytes: int = TAIL_BYTES,
) -> ProgramResult:
    """Run ``argv`` (no shell, stdin from /dev/null) in its own process group; bounded time and memory.

    On timeout the whole group gets SIGTERM, ``grace`` seconds, then SIGKILL.
    Raises OSError when the program cannot be started.
    """
    start = time.monotonic()
    deadline = start + timeout
    proc = subprocess.Popen(
        list(argv),
        shell=False,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    tails = {proc.stdout.fileno(): _Tail(tail_bytes), proc.stderr.fileno(): _Tail(tail_bytes)}
    timed_out = _pump(proc, tails, deadline)
    if not timed_out:
        try:
            proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out:
        _kill_group(proc, grace)
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    out, err = (bytes(t.data) for t in tails.values())
    return ProgramResult(
        returncode=None if timed_out else proc.returncode,
        timed_out=timed_out,
        seconds=time.monotonic() - start,
        stdout=out,
        stderr=err,
    )


def _pump(proc: subprocess.Popen[bytes], tails: dict[int, _Tail], deadline: float) -> bool:
    """Read both pipes into their tails until they close or the deadline; True on timeout.

    Once the program itself has exited, output still held open by a child it
    left behind is read for a moment only, so a daemonising script returns.
    """
    with selectors.DefaultSelector() as sel:
        for fd in tails:
            sel.register(fd, selectors.EVENT_READ)
        exited_at: float | None = None
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                return proc.poll() is None
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                return False
            for key, _ in sel.select(min(deadline - now, 0.1)):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    tails[key.fd].feed(chunk)
                else:
                    sel.unregister(key.fd)
    return False


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the program's whole process group, up to ``grace`` seconds, then SIGKILL to what is left."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    _signal_group(proc.pid, signal.SIGKILL)  # the leader may be gone while children it started are not
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def printable(data: bytes) -> str:
    """Output bytes as one safe line: UTF-8 (replaced when broken), lines joined by " | ", controls escaped."""
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    text = " | ".join(line for line in lines if line)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)

