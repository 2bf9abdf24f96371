"""One followed file: its identity, its read position, and its bytes framed into lines.

Identity. A file is its (st_dev, st_ino) plus a fingerprint: the sha256 of its
first bytes (up to 256; how many is remembered, so a short file's fingerprint
grows with it). The fingerprinted bytes are re-checked at every read (not only
when size or mtime changed: a rewrite to the same size within the filesystem's
timestamp granularity changes neither). A file that shrank below the read
offset (copytruncate), or whose fingerprinted bytes changed (truncate-then-grow),
is read again from 0 and counted as a truncation; lines already read but still
held (an unfinished traceback) are emitted first.

Lines. Raw bytes are split on b"\\n"; each complete line is decoded as UTF-8
(errors replaced and counted); one trailing "\\r" and a BOM at offset 0 are
stripped. A line without its newline waits; after ``partial_flush_after``
seconds without growth it is emitted with partial=True and its bytes are
consumed (the rest becomes its own line when the newline comes; an empty rest
is dropped). A line longer than ``max_line_bytes`` keeps its first
max_line_bytes (cut at a UTF-8 boundary) and is flagged truncated; the rest is
read and dropped, never buffered. With ``blocks``, runs of ordinary lines go out
as one :class:`~.base.Block` (the fast path); tracebacks are joined by a
:class:`~.tracebacks.Joiner`.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import Block, Line, utf8_cut
from .checkpoints import FP_BYTES, Resume, fingerprint
from .tracebacks import TB_MARK, Joiner, Piece

log = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"
SLOW_LINES = 64  # lines the line-by-line path takes before the block fast path is tried again
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO swapped in never blocks us

Key = tuple[int, int]  # (st_dev, st_ino)


def key_str(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


def open_file(path: str) -> tuple[int, os.stat_result, bytes]:
    """An fd on ``path``, its stat, and its first FP_BYTES bytes (nothing for a non-regular file)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        head = os.pread(fd, FP_BYTES, 0) if stat.S_ISREG(st.st_mode) else b""
    except BaseException:
        os.close(fd)
        raise
    return fd, st, head


@dataclass(frozen=True, slots=True, kw_only=True)
class Framing:
    """How a source reads each of its files: caps, timeouts and the fast path (one for all its files)."""

    source: str
    max_line: int
    flush_after: float  # an unfinished line is emitted, partial, after this long without growth
    multiline_after: float  # a traceback that may be complete waits this long for a chained one
    chunk: int
    max_poll_bytes: int
    max_poll_lines: int
    blocks: bool


class FollowedFile:
    """One open file: identity, read position, and the unfinished line."""

    def __init__(self, path: str, fd: int, st: os.stat_result, head: bytes, start: int, cont: bool,
                 now: float, joiner: Joiner | None, *, framing: Framing, stats: dict[str, int]) -> None:
        self.path = path
        self.fd = fd
        self.key: Key = (st.st_dev, st.st_ino)
        self.key_s = key_str(self.key)
        self.fp, self.fp_len = fingerprint(head), len(head)
        self.pos = start  # next byte to read
        self.line_start = start  # where the unfinished line starts; everything before it was returned
        self.buf = bytearray()  # the unfinished line, at most max_line_bytes of it
        self.overflow = False  # the unfinished line has more bytes than buf keeps
        self.cont = cont  # the unfinished line continues a flushed partial line
        self.joiner = joiner  # joins tracebacks; None when multiline is off
        self.grew_at = now
        self.detached_at: float | None = None
        self.at_eof = False
        self.framing = framing
        self.stats = stats  # the source's counters
        self._fed_from = 0

    @property
    def holding(self) -> bool:
        """Bytes were read that are not yet emitted: an unfinished line or traceback."""
        return bool(self.buf) or self.overflow or (self.joiner is not None and self.joiner.holding)

    def mark(self) -> Resume:
        if self.joiner is None:
            return Resume(self.fp, self.fp_len, self.line_start, self.cont, self.path)
        offset, cont, skip = self.joiner.resume_point(self.line_start, self.cont)
        return Resume(self.fp, self.fp_len, offset, cont, self.path, skip)

    # -- reading --

    def read(self, clock: Callable[[], float], out: list[Line]) -> None:
        """Append what is new to ``out``; ``at_eof`` False afterwards: a per-poll cap stopped it (read again soon).

        Lines are stamped with the clock read *after* their bytes were (never before: a line written
        between a time taken early and the read would carry a time before it existed).
        """
        f = self.framing
        self._check_identity(os.fstat(self.fd).st_size, out)
        budget, stop = f.max_poll_bytes, len(out) + f.max_poll_lines
        self.at_eof = False
        now = clock()
        while budget > 0:
            data = os.pread(self.fd, min(f.chunk, budget), self.pos)
            if not data:
                self.at_eof = True
                break
            now = clock()
            self.grew_at = now
            budget -= len(data)
            if not self._feed(data, now, out, stop):
                break
        if not self.at_eof:
            return
        idle = now - self.grew_at
        if self.joiner is not None and self.joiner.mode is not None:
            self._out(self.joiner.expire(idle, f.multiline_after, f.flush_after), out)
        if (self.buf or self.overflow) and idle >= f.flush_after:
            raw, truncated = bytes(self.buf), self.overflow
            self.buf.clear()
            self.overflow = False
            self._emit(raw, self.pos, now, out, partial=True, truncated=truncated)

    def _check_identity(self, size: int, out: list[Line]) -> None:
        """Restart at 0 if the file shrank below what was read or its fingerprinted bytes changed."""
        head = os.pread(self.fd, FP_BYTES, 0)
        if size < self.pos:
            self._restart(f"shrank from {self.pos} to {size} bytes", head, out)
        elif len(head) < self.fp_len or fingerprint(head[: self.fp_len]) != self.fp:
            self._restart("has new first bytes", head, out)
        elif len(head) > self.fp_len:
            self.fp, self.fp_len = fingerprint(head), len(head)

    def _restart(self, why: str, head: bytes, out: list[Line]) -> None:
        self.stats["truncations"] += 1
        log.warning("%s: %s %s (truncated); reading it from 0, lines written just before are lost",
                    self.framing.source, self.path, why)
        if self.joiner is not None:  # a held traceback was read before the truncation: it is an observation
            self._out(self.joiner.flush(), out)
        self.fp, self.fp_len = fingerprint(head), len(head)
        self.pos = self.line_start = 0
        self.buf.clear()
        self.overflow = self.cont = False

    def _fast(self, data: bytes, now: float, out: list[Any], stop: int) -> int:
        """The fast path: the complete lines at the head of ``data`` as one Block; bytes consumed (0: none).

        Taken only when nothing is pending (no buffered or flushed partial line, no traceback held)
        and the lines are ordinary: valid UTF-8, no CR, no BOM at a file start, none over the line
        cap, no traceback header. Anything else goes through the line-by-line path, unchanged.
        """
        if (not self.framing.blocks or self.buf or self.overflow or self.cont
                or (self.joiner is not None and self.joiner.mode is not None)):
            return 0
        end = data.rfind(b"\n") + 1
        for special in (TB_MARK, b"\r"):  # stop at the line holding the first special thing
            at = data.find(special, 0, end)
            if at >= 0:
                end = data.rfind(b"\n", 0, at) + 1
        if end == 0:
            return 0
        region = data[:end]
        count = region.count(b"\n")
        if len(out) + count > stop or (self.line_start == 0 and self.pos == 0 and region.startswith(BOM)):
            return 0
        cap = self.framing.max_line
        if len(region) > cap and max(map(len, region.split(b"\n"))) > cap:
            return 0
        try:
            region.decode("utf-8")
        except UnicodeDecodeError:
            return 0
        out.append(Block(source=self.framing.source, data=region, lines=count, at=now, path=self.path))
        self.pos += end
        self.line_start = self.pos
        self.stats["bytes"] += end
        self.stats["lines"] += count
        return end

    def _feed(self, data: bytes, now: float, out: list[Any], stop: int) -> bool:
        """Turn ``data`` (read at pos) into lines; False when the per-poll line cap stopped it.

        With ``blocks``, runs of ordinary lines go out as Blocks and the line-by-line path takes
        a few lines at a time around anything special (a traceback, a CR, a long line), then the
        fast path is tried again.
        """
        while True:
            taken = self._fast(data, now, out, stop)
            if taken:
                data = data[taken:]
                if not data:
                    return True
            outcome = self._lines(data, now, out, stop, self._slow_lines() if self.framing.blocks else None)
            if outcome is not None:
                return outcome
            data = data[self.pos - self._fed_from:]

    def _slow_lines(self) -> int:
        """Lines the line-by-line path takes before the fast path is tried again.

        One when all that kept the fast path off is the head of a line split across two reads
        (every read that ends mid-line leaves one): the rest of the read can go as a Block.
        """
        idle = self.joiner is None or self.joiner.mode is None
        return 1 if self.buf and not self.overflow and not self.cont and idle else SLOW_LINES

    def _lines(self, data: bytes, now: float, out: list[Any], stop: int, limit: int | None) -> bool | None:
        """The line-by-line path; None when ``limit`` lines were taken and data is left for the fast path."""
        base, start = self.pos, 0
        self._fed_from = base
        taken = 0
        while (nl := data.find(b"\n", start)) >= 0:
            buf = self.buf
            raw = bytes(buf) if self.overflow else (bytes(buf) + data[start:nl] if buf else data[start:nl])
            truncated = self.overflow
            buf.clear()
            self.overflow = False
            self._emit(raw, base + nl + 1, now, out, partial=False, truncated=truncated)
            start = nl + 1
            taken += 1
            if len(out) >= stop:
                self.pos = base + start  # the rest of data is read again next poll
                self.stats["bytes"] += start
                return False
            if limit is not None and taken >= limit and start < len(data):
                self.pos = base + start
                self.stats["bytes"] += start
                return None
        self.pos = base + len(data)
        self.stats["bytes"] += len(data)
        room = self.framing.max_line - len(self.buf)
        if len(data) - start > room:  # an over-long line: keep its head, drop the rest
            self.buf += data[start : start + room]
            self.overflow = True
        else:
            self.buf += data[start:]
        return True

    def _emit(self, raw: bytes, end: int, now: float, out: list[Line], *, partial: bool, truncated: bool) -> None:
        """Consume the line ending at ``end`` and append it to ``out`` (an empty rest of a flushed line is not)."""
        if self.line_start == 0 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if len(raw) > self.framing.max_line:
            raw, truncated = raw[: self.framing.max_line], True
        if truncated:
            raw = utf8_cut(raw)
        elif raw.endswith(b"\r"):
            raw = raw[:-1]
        empty_rest = not raw and (partial or self.cont)
        piece_start, piece_cont = self.line_start, self.cont
        self.line_start, self.cont = end, partial
        if empty_rest:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.stats["decode_errors"] += 1
            text = raw.decode("utf-8", errors="replace")
        piece = Piece(text, truncated, now, piece_start, piece_cont)
        if self.joiner is None:
            self._out([piece], out, partial=partial)
        elif partial:  # an unterminated line is never part of a traceback: it ends one
            self._out(self.joiner.flush(), out)
            self._out([piece], out, partial=True)
        else:
            self._out(self.joiner.feed(piece), out)

    def _out(self, pieces: list[Piece], out: list[Line], *, partial: bool = False) -> None:
        for piece in pieces:
            out.append(Line(source=self.framing.source, text=piece.text, at=piece.at, path=self.path,
                            partial=partial, truncated=piece.truncated))
            self.stats["lines"] += 1
            self.stats["truncated"] += piece.truncated
            self.stats["partial_flushes"] += partial
            self.stats["tracebacks"] += piece.lines > 1
            self.stats["tracebacks_truncated"] += piece.capped
