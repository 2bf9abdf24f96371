"""Torture the tailer against a model: random rotations, truncations, crashes and restarts on real files.

In the style of Vector's file-server model tests. A sequence is a seeded random run (30-60 ops) over
a real folder with two logs, a.log and b.log, matched by ``*.log``:

- write 1-6 numbered lines, sometimes a line past the line cap, a traceback (whole, chained, or half
  now and half at the next write), or a line cut in two (its head now, its rest at the next write;
  sometimes the rest is only the newline);
- rotate by rename (into the glob, ``a-7.log``, or out of it, ``a.log.7``) with late writes through
  the writer's old descriptor; copytruncate (copy, lines racing in, truncate); truncate, or
  truncate-then-grow past the old offset; delete and recreate; delete a rotated file;
- poll+commit, poll+commit+save, save, tick the fake clock, poll then crash (drop the FileSource,
  build one from the saved checkpoint file), crash, restart (save, then crash);

then a final drain. The model knows every *unit* it wrote (a line; a cut line's head and rest; each
physical line of a traceback), which file holds it, and what the tailer has read of each file. A
unit is *durable* once committed and saved (a crash drops what was committed but not saved, as it
would in the runtime). The model allows a unit to be lost only when its bytes were destroyed before
it was durable and after the tailer last read them (a truncation racing the writer), or when its
file left the glob or was deleted before the tailer ever saw it. It checks:

- no unit durably observed twice, none lost unless allowed, in write order per file;
- texts and flags exact (partial heads, lines cut at the cap, tracebacks cut at theirs);
- every loss the tailer could see (it had read from that file) counted in stats["truncations"];
- a traceback nothing could split (no timeout, truncation or rotation between its parts) is one
  observation.

The SIGKILL variant runs tests/tailer_harness.py as a separate process and kills it at random while
a writer thread appends and rotates; see test_sigkill_loses_and_repeats_nothing.

TAILER_TORTURE_SEED, TAILER_TORTURE_SEQUENCES (in-process, default 200) and TAILER_TORTURE_KILL_RUNS
(SIGKILL runs of 1-4 kills each, default 30) override the base seed and counts. A failure prints
the seed and the operations run; rerun one with TAILER_TORTURE_SEED=<seed> TAILER_TORTURE_SEQUENCES=1
(the SIGKILL runs depend on timing too: their seed fixes the choices, not the interleaving).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from suture.sidecar.sources.base import Line
from suture.sidecar.sources.checkpoints import Checkpoints
from suture.sidecar.sources.files import FileSource

BASE_SEED = int(os.environ.get("TAILER_TORTURE_SEED", "20261125"))
SEQUENCES = int(os.environ.get("TAILER_TORTURE_SEQUENCES", "200"))
KILL_RUNS = int(os.environ.get("TAILER_TORTURE_KILL_RUNS", "30"))
HARNESS = Path(__file__).with_name("tailer_harness.py")
STREAMS = ("a", "b")
GLOB_NAME = re.compile(r"[^/]*\.log")  # the pattern is <dir>/*.log
CHAIN = "During handling of the above exception, another exception occurred:"
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789 "


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


# -- what was written --


@dataclass(eq=False)
class Unit:
    """One thing the tailer must observe once: a line, a head or rest of a cut line, a traceback line."""

    id: str
    text: str
    order: int  # global write order
    inode: Inode
    end: int  # offset just after it in its file
    gen: int  # the file's truncation count when it was written
    optional: bool = False  # an unterminated head: observed only if a partial flush came first


@dataclass(eq=False)
class Inode:
    """A file the model wrote to, by identity (not path)."""

    name: str
    key: tuple[int, int]
    path: str | None  # None once deleted
    fd: int  # the writer's O_APPEND descriptor
    units: list[Unit] = field(default_factory=list)  # what the file holds now
    gen: int = 0  # bumped by every truncation
    size: int = 0

    def write(self, data: bytes) -> None:
        assert os.write(self.fd, data) == len(data)
        self.size = os.fstat(self.fd).st_size


@dataclass
class Block:
    """A traceback written by the model: its physical lines, and whether it was written in one go."""

    lines: list[str]
    whole: bool  # nothing could have split it (no timeout, truncation or rotation between its parts)
    started: float  # clock time its first part was written


@dataclass
class Window:
    """Truncations of one file since the tailer last looked: may the loss go unnoticed?"""

    inode: Inode
    seen: bool  # the live tailer had read bytes of it (so its next poll must count a truncation)
    crashed: bool = False
    units: list[Unit] = field(default_factory=list)


@dataclass(frozen=True)
class Snap:
    """A file as the tailer last saw it (and so as its checkpoint describes it)."""

    gen: int
    size: int
    path: str  # the last path in the glob


@dataclass
class Instance:
    """What the model knows about the current FileSource."""

    src: FileSource
    tracked: set[Inode] = field(default_factory=set)
    polled: bool = False
    snap: dict[Inode, Snap] = field(default_factory=dict)  # as of its last poll
    committed: dict[Inode, Snap] | None = None


class Model:
    """The world (a folder, two writers, a FileSource) and the bookkeeping that judges the tailer."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.rng = rng
        self.dir = root / "logs"
        self.dir.mkdir(parents=True)
        self.state = root / "state" / "checkpoints.json"
        self.pattern = str(self.dir / "*.log")
        self.clock = Clock()
        self.opts: dict[str, Any] = {
            "max_line_bytes": rng.choice([64, 256, 65536]),
            "chunk_bytes": rng.choice([7, 100, 65536]),
            "rotate_grace": rng.choice([0.5, 2.0, 1e9]),
            "multiline": rng.choice(["python", "python", None]),
            "max_traceback_lines": rng.choice([3, 5, 200]),
            "max_poll_lines": rng.choice([2, 65536]),
            "partial_flush_after": 5.0,
            "multiline_flush_after": 0.2,
        }
        self.ops: list[str] = [f"opts {self.opts}"]
        self.units: dict[str, Unit] = {}
        self.blocks: dict[int, Block] = {}
        self.cut: set[int] = set()  # seqs of lines written in two parts
        self.seq = self.order = self.names = 0
        self.live: dict[str, Inode] = {}
        self.all: list[Inode] = []
        self.rotated: list[Inode] = []
        self.pending_cut: dict[str, int] = {}  # stream -> seq of a line whose head only is written
        self.pending_tb: dict[str, tuple[int, int]] = {}  # stream -> (block, first line not yet written)
        self.durable: list[tuple[Line, list[str]]] = []  # observations committed and saved, with their units
        self.unsaved: list[tuple[Line, list[str]]] = []  # committed, not yet saved
        self.history: set[str] = set()
        self.may_lose: set[str] = set()
        self.destroyed: set[str] = set()
        self.windows: dict[Inode, Window] = {}
        self.closed: list[tuple[int, list[tuple[Window, bool]]]] = []  # per poll: truncations it counted,
        # and the windows it closed, each with whether it had to count it
        self.saved: dict[Inode, Snap] = {}
        self.inst = self._instance()

    # -- files --

    def _create(self, stream: str) -> Inode:
        path = str(self.dir / f"{stream}.log")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        st = os.fstat(fd)
        self.names += 1
        inode = Inode(f"{stream}#{self.names}", (st.st_dev, st.st_ino), path, fd)
        self.all.append(inode)
        return inode

    def _matched(self, inode: Inode) -> bool:
        return inode.path is not None and GLOB_NAME.fullmatch(os.path.basename(inode.path)) is not None

    def _known(self, inode: Inode) -> bool:
        """The live tailer has it open, or will find it by inode at its first poll."""
        return inode in self.inst.tracked or (not self.inst.polled and self._recoverable(inode))

    def _recoverable(self, inode: Inode) -> bool:
        """Out of the glob, but found by inode at a new instance's first poll: checkpointed, same bytes, not empty."""
        snap = self.saved.get(inode)
        return inode.path is not None and snap is not None and snap.gen == inode.gen and snap.size > 0

    def _doom_if_unreachable(self, inode: Inode) -> None:
        if not self._matched(inode) and not self._known(inode):
            self._may_lose(inode.units)

    def _may_lose(self, units: list[Unit]) -> None:
        safe = {u for _, ids in self.durable + self.unsaved for u in ids}
        self.may_lose.update(u.id for u in units if u.id not in safe)

    def _add(self, inode: Inode, uid: str, text: str, data: bytes, optional: bool = False) -> Unit:
        self.order += 1
        inode.write(data)
        unit = Unit(uid, text, self.order, inode, inode.size, inode.gen, optional)
        self.units[uid] = unit
        inode.units.append(unit)
        self._doom_if_unreachable(inode)
        return unit

    # -- writing --

    def _payload(self, long: bool) -> str:
        text = "".join(self.rng.choice(LETTERS) for _ in range(self.rng.randint(0, 40)))
        if long:  # past the line cap
            text = (text or "x") * (2 * self.opts["max_line_bytes"] // max(1, len(text)) + 1)
        return text

    def _line(self, inode: Inode, *, cut: bool, long: bool) -> None:
        self.seq += 1
        n = self.seq
        head = f"seq={n:06d} {self._payload(long and self.rng.random() < 0.5)}"
        rest = f"#{n:06d}#{self._payload(long)}"
        if not cut:
            self._add(inode, f"s{n}", head + rest, (head + rest + "\n").encode())
            return
        self.cut.add(n)
        self._add(inode, f"h{n}", head, head.encode())
        self.pending_cut[self._stream_of(inode)] = n

    def _unfinished(self, stream: str) -> bool:
        """The writer left a line or a traceback half written (it finishes it before anything else)."""
        return stream in self.pending_cut or stream in self.pending_tb

    def _stream_of(self, inode: Inode) -> str:
        return inode.name.split("#")[0]

    def _finish_pending(self, stream: str) -> None:
        """The writer ends what it left unfinished, in whatever file it now writes to."""
        inode = self.live[stream]
        if (n := self.pending_cut.pop(stream, None)) is not None:
            head = self.units[f"h{n}"]
            head.optional = head.inode is not inode  # never terminated in its own file
            if head.inode is inode and head.gen == inode.gen and self.rng.random() < 0.4:
                # Only the newline: after a partial flush of the head it is no line at all.
                self._add(inode, f"r{n}", "", b"\n", optional=True)
                return
            rest = f"#{n:06d}#{self._payload(False)}"
            self._add(inode, f"r{n}", rest, (rest + "\n").encode())
        if (split := self.pending_tb.pop(stream, None)) is not None:
            b, start = split
            block, first = self.blocks[b], self.units[f"t{b}.0"]
            block.whole = first.inode is inode and first.gen == inode.gen and \
                self.clock.now - block.started < self.opts["partial_flush_after"]
            for i in range(start, len(block.lines)):
                self._add(inode, f"t{b}.{i}", block.lines[i], (block.lines[i] + "\n").encode())

    def _traceback(self, inode: Inode, *, chained: bool, split: bool) -> None:
        self.seq += 1
        b = self.seq
        # The token that names each line comes early: a traceback cut at a small byte cap keeps one.
        lines = ["Traceback (most recent call last):",
                 f'  File "<TB{b:06d}:1>/app.py", line {b % 997}, in handler',
                 f"    <TB{b:06d}:2> handle(request)",
                 f"    ^^^^ <TB{b:06d}:3> ^^^^^^^^^^",
                 f"ValueError: <TB{b:06d}:4> boom"]
        if chained:
            lines += ["", CHAIN, "", "Traceback (most recent call last):",
                      f'  File "<TB{b:06d}:9>/app.py", line 7, in outer',
                      f"app.errors.Failed: <TB{b:06d}:10> again"]
        self.blocks[b] = Block(lines, whole=not split, started=self.clock.now)
        upto = self.rng.randint(2, 4) if split else len(lines)
        for i in range(upto):
            self._add(inode, f"t{b}.{i}", lines[i], (lines[i] + "\n").encode())
        if split:
            self.pending_tb[self._stream_of(inode)] = (b, upto)

    def op_write(self, stream: str) -> str:
        self._finish_pending(stream)
        inode = self.live[stream]
        n = self.rng.randint(1, 6)
        long = self.rng.random() < 0.1
        for i in range(n):
            self._line(inode, cut=False, long=long and i == 0)
        desc = f"write {stream} {n}{' long' if long else ''}"
        if self.opts["multiline"] and self.rng.random() < 0.35:
            chained, split = self.rng.random() < 0.3, self.rng.random() < 0.5
            self._traceback(inode, chained=chained, split=split and not chained)
            desc += f" traceback{' chained' if chained else ''}{' split' if split and not chained else ''}"
        elif self.rng.random() < 0.4:
            self._line(inode, cut=True, long=self.rng.random() < 0.1)
            desc += " +cut"
        return desc

    def op_history(self) -> str:
        """Lines already in the files at the very first start: never observed (start at end)."""
        for stream in STREAMS:
            for _ in range(3):
                self.seq += 1
                text = f"hist={self.seq:06d}"
                self.history.add(text)
                self.live[stream].write((text + "\n").encode())
        return "history"

    # -- rotating and truncating --

    def _maybe_finish_first(self, stream: str) -> bool:
        first = self.rng.random() < 0.5
        if first:
            self._finish_pending(stream)
        return first

    def op_rotate(self, stream: str) -> str:
        first = self._maybe_finish_first(stream)
        old = self.live[stream]
        into_glob = self.rng.random() < 0.4
        self.names += 1
        new_path = str(self.dir / (f"{stream}-{self.names}.log" if into_glob else f"{stream}.log.{self.names}"))
        os.rename(str(old.path), new_path)
        old.path = new_path
        self._doom_if_unreachable(old)
        late = 0 if self._unfinished(stream) else self.rng.randint(0, 2)
        for _ in range(late):  # the writer has not reopened yet
            self._line(old, cut=False, long=False)
        self.live[stream] = self._create(stream)
        os.close(old.fd)
        self.rotated.append(old)
        self._finish_pending(stream)
        return f"rotate {stream} -> {os.path.basename(new_path)} late={late} finished_first={first}"

    def _destroy(self, inode: Inode) -> None:
        snap = self.inst.snap.get(inode)
        read = snap.size if inode in self.inst.tracked and snap is not None and snap.gen == inode.gen else 0
        window = self.windows.get(inode)
        if window is None:
            window = self.windows[inode] = Window(inode, seen=read > 0)
        window.units += inode.units
        # What the tailer read is emitted (or held, and emitted when it sees the truncation), except
        # the head of a line whose newline it had not read yet.
        self._may_lose([u for u in inode.units if u.end > read or (u.id[0] == "h" and not self._ended(u, read))])
        self.destroyed.update(u.id for u in inode.units)
        inode.units = []
        inode.gen += 1
        os.ftruncate(inode.fd, 0)
        inode.size = 0

    def _ended(self, head: Unit, read: int) -> bool:
        rest = self.units.get("r" + head.id[1:])
        return rest is not None and rest.inode is head.inode and rest.gen == head.gen and rest.end <= read

    def op_copytruncate(self, stream: str) -> str:
        first = self._maybe_finish_first(stream)
        inode = self.live[stream]
        self.names += 1
        shutil.copyfile(str(inode.path), self.dir / f"{stream}.log.c{self.names}")
        racing = self.rng.choice([0, 0, 1, 3])  # written between the copy and the truncate
        for _ in range(0 if self._unfinished(stream) else racing):
            self._line(inode, cut=False, long=False)
        self._destroy(inode)
        self._finish_pending(stream)
        return f"copytruncate {stream} racing={racing} finished_first={first}"

    def op_truncate(self, stream: str) -> str:
        first = self._maybe_finish_first(stream)
        inode = self.live[stream]
        old = inode.size
        self._destroy(inode)
        grow = self.rng.random() < 0.6
        self._finish_pending(stream)
        while grow and inode.size <= old:  # truncate-then-grow past the old offset
            self._line(inode, cut=False, long=old - inode.size > 2000)
        return f"truncate {stream} grow={grow} finished_first={first}"

    def op_delete(self, stream: str) -> str:
        first = self._maybe_finish_first(stream)
        old = self.live[stream]
        os.unlink(str(old.path))
        old.path = None
        self._doom_if_unreachable(old)
        late = 0 if self._unfinished(stream) else self.rng.randint(0, 1)
        for _ in range(late):
            self._line(old, cut=False, long=False)
        os.close(old.fd)
        self.live[stream] = self._create(stream)
        self._finish_pending(stream)
        return f"delete+recreate {stream} late={late} finished_first={first}"

    def op_delete_rotated(self) -> str:
        alive = [i for i in self.rotated if i.path is not None]
        if not alive:
            return "delete-rotated (none)"
        inode = self.rng.choice(alive)
        name = os.path.basename(str(inode.path))
        os.unlink(str(inode.path))
        inode.path = None
        self._doom_if_unreachable(inode)
        return f"delete-rotated {name}"

    # -- the tailer --

    def _instance(self) -> Instance:
        return Instance(FileSource("app", self.pattern, checkpoints=Checkpoints(self.state), clock=self.clock,
                                   **self.opts))

    def _detectable(self, w: Window) -> bool:
        """Must the poll about to run count this window's truncation?"""
        if not w.crashed:
            return w.seen
        snap = self.saved.get(w.inode)  # the checkpoint the new instance started from
        return self._matched(w.inode) and snap is not None and snap.size > 0 and snap.path == w.inode.path

    def _poll(self) -> tuple[list[Line], int]:
        """poll() until no backlog; (lines, truncations counted)."""
        windows = [(w, self._detectable(w)) for w in self.windows.values()]
        self.windows.clear()
        before = self.inst.src.stats["truncations"]
        lines = self.inst.src.poll()
        while self.inst.src.backlog:
            lines += self.inst.src.poll()  # the runtime commits between these; same thing for the model
        counted = self.inst.src.stats["truncations"] - before
        self.closed.append((counted, windows))
        if not self.inst.polled:
            self.inst.tracked |= {i for i in self.all if self._recoverable(i) and not self._matched(i)}
        self.inst.polled = True
        self.inst.tracked |= {i for i in self.all if self._matched(i)}
        for inode in self.inst.tracked:
            prev = self.inst.snap.get(inode)
            path = inode.path if self._matched(inode) or prev is None else prev.path
            self.inst.snap[inode] = Snap(inode.gen, inode.size, str(path))
        return lines, counted

    def op_poll_commit(self, save: bool) -> str:
        lines, counted = self._poll()
        self.inst.src.commit()
        self.inst.committed = dict(self.inst.snap)
        self.unsaved += [(ln, self.attribute(ln)) for ln in lines]
        if save:
            self.op_save()
        return f"poll+commit{'+save' if save else ''} -> {len(lines)} lines, {counted} truncations"

    def op_save(self) -> str:
        self.inst.src._checkpoints.save()
        self.durable += self.unsaved
        self.unsaved = []
        if self.inst.committed is not None:
            self.saved = dict(self.inst.committed)
        return "save"

    def op_crash(self, poll_first: bool) -> str:
        if poll_first:
            self.inst.src.poll()  # returned, never committed
        self.inst.src.close()
        self.unsaved = []
        durable = {u for _, ids in self.durable for u in ids}
        self.may_lose |= self.destroyed - durable  # read, maybe emitted, but gone from the file: not again
        for inode in self.all:
            if not self._matched(inode) and not self._recoverable(inode):
                self._may_lose(inode.units)
        for window in self.windows.values():
            window.crashed = True
        self.inst = self._instance()
        return "poll+crash" if poll_first else "crash"

    def op_restart(self) -> str:
        self.op_save()
        self.op_crash(poll_first=False)
        return "restart"

    def op_tick(self) -> str:
        dt = self.rng.choice([0.05, 0.25, 1.0, 3.0, 6.0, 6.0])
        self.clock.now += dt
        return f"tick {dt}"

    # -- running --

    def step(self) -> None:
        rng, stream = self.rng, self.rng.choice(STREAMS)
        ops: list[tuple[int, Callable[[], str]]] = [
            (30, lambda: self.op_write(stream)),
            (12, lambda: self.op_poll_commit(save=False)),
            (16, lambda: self.op_poll_commit(save=True)),
            (5, self.op_save),
            (8, self.op_tick),
            (5, lambda: self.op_rotate(stream)),
            (4, lambda: self.op_copytruncate(stream)),
            (4, lambda: self.op_truncate(stream)),
            (3, lambda: self.op_delete(stream)),
            (2, self.op_delete_rotated),
            (4, lambda: self.op_crash(poll_first=True)),
            (2, lambda: self.op_crash(poll_first=False)),
            (2, self.op_restart),
        ]
        op = rng.choices([f for _, f in ops], weights=[w for w, _ in ops])[0]
        self.ops.append(op())

    def run(self, n_ops: int) -> None:
        empty = self.rng.random() < 0.3  # the app has not created its logs yet when suture first starts
        if not empty:
            self.live = {stream: self._create(stream) for stream in STREAMS}
            if self.rng.random() < 0.5:
                self.ops.append(self.op_history())
        self.ops.append(self.op_poll_commit(save=True))  # as the runtime does before `ready`
        if empty:
            self.live = {stream: self._create(stream) for stream in STREAMS}
            self.ops.append("create a.log b.log")
        for _ in range(n_ops):
            self.step()
        for n in self.pending_cut.values():
            self.units[f"h{n}"].optional = True  # never terminated
        for _ in range(3):  # drain: flush partial lines and held tracebacks
            self.clock.now += 10
            self.ops.append("final " + self.op_poll_commit(save=True))

    def close(self) -> None:
        self.inst.src.close()
        for inode in self.all:
            with contextlib.suppress(OSError):  # closed when it was rotated away
                os.close(inode.fd)

    # -- judging --

    def attribute(self, line: Line) -> list[str]:
        """The units one observation stands for (an AssertionError if it matches nothing written)."""
        text = line.text
        assert text not in self.history, f"history replayed: {text!r}"
        if m := re.match(r"seq=(\d{6}) ", text):
            n = int(m[1])
            if n in self.cut:
                return [f"h{n}"] if line.partial else [f"h{n}", f"r{n}"]
            return [f"s{n}"]
        if m := re.match(r"#(\d{6})#", text):
            return [f"r{int(m[1])}"]
        if m := re.search(r"<TB(\d{6}):(\d+)>", text):
            b, k = int(m[1]), int(m[2])
            parts = text.split("\n")
            j = next(i for i, part in enumerate(parts) if m[0] in part)
            return [f"t{b}.{i}" for i in range(k - j, k - j + len(parts))]
        raise AssertionError(f"observation matches nothing written: {text[:200]!r}")

    def expected_text(self, ids: list[str]) -> str:
        if ids[0].startswith("t"):
            return "\n".join(self.units[u].text for u in ids)
        return "".join(self.units[u].text for u in ids)

    def check(self) -> None:
        durable = [(ln, self.attribute(ln)) for ln, _ in self.durable]
        for ln, ids in durable:
            want = self.expected_text(ids)
            assert want.startswith(ln.text) and (ln.text == want or ln.truncated), \
                f"text of {ids}: got {ln.text[:120]!r}, want {want[:120]!r} (truncated={ln.truncated})"
            assert ln.partial == (ids[0].startswith("h") and len(ids) == 1), f"partial flag of {ids}"
        counts = Counter(u for _, ids in durable for u in ids)
        twice = sorted(u for u, n in counts.items() if n > 1)
        assert not twice, f"observed more than once: {twice[:20]}"
        capped = self._capped(durable)
        missing = sorted(u.id for u in self.units.values()
                         if counts[u.id] == 0 and u.id not in self.may_lose and not u.optional and u.id not in capped)
        assert not missing, f"lost without the model allowing it: {missing[:20]}"
        self._check_order(durable)
        self._check_counted(counts)
        self._check_whole_tracebacks(durable)

    def _capped(self, durable: list[tuple[Line, list[str]]]) -> set[str]:
        """Traceback lines after a traceback cut at its cap: dropped by design."""
        dropped: set[str] = set()
        for ln, ids in durable:
            if ids[0].startswith("t") and ln.truncated:
                b, last = ids[-1][1:].split(".")
                dropped |= {f"t{b}.{i}" for i in range(int(last) + 1, len(self.blocks[int(b)].lines))}
        return dropped

    def _check_order(self, durable: list[tuple[Line, list[str]]]) -> None:
        last: dict[Inode, int] = {}
        for _, ids in durable:
            for u in ids:
                unit = self.units[u]
                assert unit.order > last.get(unit.inode, 0), f"{u} out of order in {unit.inode.name}"
                last[unit.inode] = unit.order

    def _check_counted(self, counts: Counter[str]) -> None:
        for i, (counted, windows) in enumerate(self.closed):
            must = [w.inode.name for w, detectable in windows
                    if detectable and any(counts[u.id] == 0 and not u.optional for u in w.units)]
            assert counted >= len(must), f"poll {i}: lossy truncations of {must} the tailer could see, {counted} counted"

    def _check_whole_tracebacks(self, durable: list[tuple[Line, list[str]]]) -> None:
        seen: dict[str, int] = Counter()
        for _, ids in durable:
            if ids[0].startswith("t"):
                seen[ids[0].split(".")[0]] += 1
        for key, n in seen.items():
            block = self.blocks[int(key[1:])]
            assert n == 1 or not block.whole, f"traceback {key} written whole came as {n} observations"


def run_sequence(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    model = Model(root, rng)
    try:
        model.run(rng.randint(30, 60))
        model.check()
    except BaseException as exc:
        ops = "\n  ".join(model.ops)
        raise AssertionError(f"seed {seed}: {exc}\nops:\n  {ops}") from exc
    finally:
        model.close()


@pytest.fixture
def quiet() -> Iterator[None]:
    """The tailer logs every rotation and truncation; thousands of them are noise here."""
    logger = logging.getLogger("suture.sidecar.sources")  # files, followed, checkpoints
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.mark.slow
def test_random_sequences_match_the_model(tmp_path: Path, quiet: None) -> None:
    """Seeded random sequences of writes, rotations, truncations, crashes and restarts: the model holds."""
    for i in range(SEQUENCES):
        run_sequence(tmp_path / f"s{i}", BASE_SEED + i)


# -- SIGKILL: a tailer process killed anywhere, a writer that does not wait for it --


def units_of(text: str) -> list[str]:
    """The units a harness observation stands for: a numbered line, or a slice of a traceback."""
    if m := re.match(r"seq=(\d{6}) ", text):
        return [f"s{int(m[1])}"]
    if m := re.search(r"<TB(\d{6}):(\d+)>", text):
        parts = text.split("\n")
        j = next(i for i, part in enumerate(parts) if m[0] in part)
        return [f"t{int(m[1])}.{i}" for i in range(int(m[2]) - j, int(m[2]) - j + len(parts))]
    raise AssertionError(f"observation matches nothing written: {text[:200]!r}")


def committed_units(out: Path) -> set[str]:
    return {u for r in committed(out) if "obs" in r for u in units_of(r["obs"])}


def committed(out: Path) -> list[dict[str, Any]]:
    """The records of ``out`` up to its last commit record (what tailer_harness.py would keep)."""
    recs: list[dict[str, Any]] = []
    keep = 0
    for raw in out.read_bytes().splitlines(keepends=True) if out.exists() else []:
        if not raw.endswith(b"\n"):
            break
        recs.append(json.loads(raw))
        if "commit" in recs[-1]:
            keep = len(recs)
    return recs[:keep]


class KillWriter(threading.Thread):
    """Appends, rotates and copytruncates two logs on its own clock while the harness is killed and restarted."""

    def __init__(self, logs: Path, out: Path, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.logs, self.out, self.rng = logs, out, rng
        self.stop = threading.Event()
        self.seq = self.names = self.order = 0
        self.units: dict[str, tuple[str, int, str]] = {}  # unit id -> (file label, write order, text)
        self.blocks: dict[int, list[str]] = {}
        self.may_lose: set[str] = set()
        self.lossy: list[tuple[set[str], bool]] = []  # per copytruncate: its units, seen by the tailer after
        self.ops: list[str] = []
        self.error: BaseException | None = None
        self.live: dict[str, tuple[str, int, list[str]]] = {}  # stream -> (label, fd, unit ids in it)
        for stream in STREAMS:
            self._create(stream)

    def _create(self, stream: str) -> None:
        fd = os.open(self.logs / f"{stream}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.names += 1
        self.live[stream] = (f"{stream}#{self.names}", fd, [])

    def _write(self, stream: str, items: list[tuple[str, str]], fd: int | None = None) -> None:
        label, live_fd, ids = self.live[stream]
        if fd is not None:
            ids = []  # late lines to the file just rotated away: it is never truncated
        for uid, text in items:
            self.order += 1
            self.units[uid] = (label, self.order, text)
            ids.append(uid)
        data = "".join(text + "\n" for _, text in items).encode()
        assert os.write(live_fd if fd is None else fd, data) == len(data)

    def _lines(self, stream: str, n: int, fd: int | None = None) -> list[str]:
        items = []
        for _ in range(n):
            self.seq += 1
            pad = "".join(self.rng.choice(LETTERS) for _ in range(self.rng.randint(0, 60)))
            items.append((f"s{self.seq}", f"seq={self.seq:06d} {stream} {pad}"))
        self._write(stream, items, fd)
        return [uid for uid, _ in items]

    def _traceback(self, stream: str) -> None:
        self.seq += 1
        b = self.seq
        lines = ["Traceback (most recent call last):", f'  File "<TB{b:06d}:1>/app.py", line 3, in run',
                 f"    <TB{b:06d}:2> run()", f"KeyError: <TB{b:06d}:3>"]
        if self.rng.random() < 0.5:
            lines += ["", CHAIN, "", "Traceback (most recent call last):",
                      f'  File "<TB{b:06d}:8>/app.py", line 9, in main', f"RuntimeError: <TB{b:06d}:9> wrapped"]
        self.blocks[b] = lines
        self._write(stream, [(f"t{b}.{i}", text) for i, text in enumerate(lines)])  # one write() call

    def _wait_committed(self, uid: str, timeout: float = 3.0) -> bool:
        """Wait until the harness committed ``uid`` (so it knows that file): False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            if uid in committed_units(self.out):
                return True
            time.sleep(0.005)
        return False

    def _rotate(self, stream: str) -> None:
        _, fd, ids = self.live[stream]
        into_glob = self.rng.random() < 0.5
        if not into_glob and not (ids and self._wait_committed(ids[-1])):
            return  # a file the tailer never saw, renamed out of the glob, is lost by any tailer
        self.names += 1
        name = f"{stream}-{self.names}.log" if into_glob else f"{stream}.log.{self.names}"
        os.rename(self.logs / f"{stream}.log", self.logs / name)
        late = self.rng.randint(0, 2)
        if late:
            self._lines(stream, late, fd=fd)  # the writer has not reopened yet
        os.close(fd)
        self._create(stream)
        self.ops.append(f"rotate {stream} -> {name} late={late}")

    def _copytruncate(self, stream: str) -> None:
        label, fd, ids = self.live[stream]
        if not (ids and self._wait_committed(self.rng.choice(ids))):
            return  # the tailer has not read this file: a loss it cannot see, so no count to check
        self.names += 1
        shutil.copyfile(self.logs / f"{stream}.log", self.logs / f"{stream}.log.c{self.names}")
        racing = self.rng.randint(0, 3)
        if racing:
            self._lines(stream, racing)
        safe = committed_units(self.out)  # committed before the truncate: never at risk
        os.ftruncate(fd, 0)
        doomed = set(self.live[stream][2]) - safe
        self.may_lose |= doomed
        self.live[stream] = (label, fd, [])
        after = self._lines(stream, 1)
        # No rotation until the tailer has read past the truncation: then it must have counted it.
        self.lossy.append((doomed, self._wait_committed(after[0])))
        self.ops.append(f"copytruncate {stream} racing={racing}")

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                stream = self.rng.choice(STREAMS)
                roll = self.rng.random()
                if roll < 0.04:
                    self._rotate(stream)
                elif roll < 0.06:
                    self._copytruncate(stream)
                elif roll < 0.12:
                    self._traceback(stream)
                else:
                    self._lines(stream, self.rng.randint(1, 8))
                time.sleep(self.rng.choice([0, 0, 0.001, 0.003, 0.01]))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            for _, fd, _ in self.live.values():
                os.close(fd)


def start_harness(root: Path, opts: list[str]) -> subprocess.Popen[bytes]:
    with open(root / "harness.err", "ab") as err:
        return subprocess.Popen(
            [sys.executable, str(HARNESS), "--pattern", str(root / "logs" / "*.log"),
             "--state", str(root / "state" / "checkpoints.json"), "--out", str(root / "out.jsonl"), *opts],
            stdout=subprocess.DEVNULL, stderr=err)


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def judge_kill_run(writer: KillWriter, recs: list[dict[str, Any]]) -> None:
    obs = [r for r in recs if "obs" in r]
    attributed: list[list[str]] = []
    for r in obs:
        text, ids = r["obs"], units_of(r["obs"])
        want = "\n".join(writer.units[u][2] for u in ids)
        assert text == want, f"text of {ids}: got {text[:200]!r}, want {want[:200]!r}"
        attributed.append(ids)
    counts = Counter(u for ids in attributed for u in ids)
    twice = sorted(u for u, n in counts.items() if n > 1)
    assert not twice, f"observed more than once: {twice[:20]}"
    missing = sorted(u for u in writer.units if counts[u] == 0 and u not in writer.may_lose)
    assert not missing, f"lost without the model allowing it: {missing[:20]}"
    last: dict[str, int] = {}
    for ids in attributed:
        for u in ids:
            label, order, _ = writer.units[u]
            assert order > last.get(label, 0), f"{u} out of order in {label}"
            last[label] = order
    for b, lines in writer.blocks.items():
        block = [f"t{b}.{i}" for i in range(len(lines))]
        if not set(block) & writer.may_lose:
            assert [ids for ids in attributed if set(ids) & set(block)] == [block], f"traceback {b} is not one observation"
    per_run: dict[int, int] = {}
    for r in recs:
        if "commit" in r:
            per_run[r["pid"]] = max(per_run.get(r["pid"], 0), r["truncations"])
    seen_lossy = sum(1 for units, seen in writer.lossy if seen and any(counts[u] == 0 for u in units))
    assert sum(per_run.values()) >= seen_lossy, f"{seen_lossy} lossy truncations seen, {sum(per_run.values())} counted"


def run_kill_scenario(root: Path, seed: int, kills: int) -> int:
    """One writer, one harness killed ``kills`` times at random; returns how many lines it wrote."""
    rng = random.Random(seed)
    (root / "logs").mkdir(parents=True)
    opts = ["--max-line-bytes", str(rng.choice([4096, 65536])), "--chunk-bytes", str(rng.choice([13, 65536])),
            "--max-poll-lines", str(rng.choice([5, 65536]))]
    out = root / "out.jsonl"
    proc = start_harness(root, opts)
    writer: KillWriter | None = None
    log: list[str] = [f"opts {opts}"]
    try:
        assert wait_for(lambda: committed(out), 10), "the harness never committed its first poll"
        writer = KillWriter(root / "logs", out, rng)
        writer.start()
        for _ in range(kills):
            if rng.random() < 0.8:  # mostly while it polls; sometimes while it starts and recovers
                wait_for(lambda pid=proc.pid: any(r.get("pid") == pid for r in committed(out)), 5)
            time.sleep(rng.uniform(0, 0.15))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.append(f"SIGKILL after {len(writer.units)} units")
            proc = start_harness(root, opts)
        time.sleep(0.2)
        writer.stop.set()
        writer.join(10)
        assert writer.error is None, f"writer failed: {writer.error!r}"
        wanted = set(writer.units) - writer.may_lose
        wait_for(lambda: wanted <= committed_units(out), 60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        judge_kill_run(writer, committed(out))
        return len(writer.units)
    except BaseException as exc:
        ops = "\n  ".join(log + (writer.ops if writer else []))
        err = (root / "harness.err").read_text()[-3000:]
        raise AssertionError(f"seed {seed}: {exc}\nops:\n  {ops}\nharness stderr:\n{err}") from exc
    finally:
        if writer is not None:
            writer.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_sigkill_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """A tailer process SIGKILLed at random while logs are written and rotated commits every line exactly once."""
    for i in range(KILL_RUNS):
        seed = BASE_SEED + 10_000 + i
        run_kill_scenario(tmp_path / f"k{i}", seed, random.Random(seed).randint(1, 4))
