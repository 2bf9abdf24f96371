"""Reading a recorded log file for replay: whole-line chunks, and the time of each line.

A file is read in big chunks of whole lines (gzip transparently), normalised
as the tailer would see them. Its lines' times come from one of two clocks:

- :class:`StampClock`, when one of the file's first :data:`HEAD_LINES` lines
  has a time :mod:`.timestamps` can read: each line at its own time, a line
  without one at the time of the last line before it that had one (the
  file's first lines at its first time), never going backwards (a line
  stamped earlier than the one before it counts at the later time);
- :class:`DenseClock`, the same when that first time was written without
  a year or date (syslog, logcat, klog, a time of day): every line's time is
  read, so that no month or midnight wrap goes unseen;
- :class:`OrderClock`, when none does: lines in file order, one every
  :data:`ORDER_STEP` seconds (1 per ms), the last at the file's mtime. The
  replay says so (a warning) rather than put every line at one instant.
"""

from __future__ import annotations

import gzip
import io
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator
from pathlib import Path

from suture.engine.errors import SutureError

from .logtime import Partial
from .timestamps import Timestamps

CHUNK_BYTES = 4 * 1024 * 1024
HEAD_BYTES = 64 * 1024
HEAD_LINES = 1000  # a file none of whose first lines has a readable time replays in file order
ORDER_STEP = 0.001  # seconds between lines in file order
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"


class ReplayError(SutureError):
    """A replay that cannot start: a file missing, a source that cannot be told."""


def read_chunks(path: Path, *, max_line: int, chunk_bytes: int = CHUNK_BYTES,
                on_read: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """Whole lines in big chunks, as the tailer would see them (BOM, CRLF, overlong lines).

    gzip is detected by its magic bytes. A last line without a newline is
    read too (the file is finished). ``on_read`` gets the bytes read from disk so far.
    A file that cannot be read (or a broken gzip stream) raises ReplayError naming it.
    """
    try:
        yield from _read_chunks(path, max_line=max_line, chunk_bytes=chunk_bytes, on_read=on_read)
    except (OSError, EOFError, zlib.error) as exc:
        raise ReplayError(f"{path}: {exc}") from exc


def _read_chunks(path: Path, *, max_line: int, chunk_bytes: int,
                 on_read: Callable[[int], None] | None) -> Iterator[bytes]:
    with path.open("rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream: gzip.GzipFile | io.BufferedReader = gzip.GzipFile(fileobj=raw) if gzipped else raw
        carry = b""
        first = True
        skipping = False  # dropping the rest of an overlong line
        while data := stream.read(chunk_bytes):
            if on_read is not None:
                on_read(raw.tell())
            if skipping:
                nl = data.find(b"\n")
                if nl < 0:
                    continue
                data, skipping = data[nl:], False
            buf = carry + data if carry else data
            cut = buf.rfind(b"\n") + 1
            carry = buf[cut:]
            if len(carry) > max_line:
                carry, skipping = carry[:max_line], True
            if cut:
                yield _normalize(buf[:cut], first=first, max_line=max_line)
                first = False
        if carry:
            yield _normalize(carry + b"\n", first=first, max_line=max_line)


def _normalize(chunk: bytes, *, first: bool, max_line: int) -> bytes:
    if first and chunk.startswith(BOM):
        chunk = chunk[len(BOM):]
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")  # the tailer drops one trailing \r per line
    lines = chunk.split(b"\n")
    if max(map(len, lines)) > max_line:
        chunk = b"\n".join(_utf8_cut(line[:max_line]) if len(line) > max_line else line for line in lines)
    return chunk


def _utf8_cut(raw: bytes) -> bytes:
    """``raw`` without a multi-byte character cut in half at its end."""
    for back in range(1, min(4, len(raw)) + 1):
        b = raw[-back]
        if b < 0x80:
            return raw
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return raw if back >= need else raw[:-back]
    return raw


def head_time(path: Path, stamps: Timestamps, *, max_line: int) -> tuple[float | None, int, bool]:
    """Among the first HEAD_LINES lines: the time of the first with one, how many lines were looked
    at, and whether any has a time without a year or date (then the file needs a DenseClock)."""
    first: float | None = None
    partial = False
    looked = 0
    for text in _head_lines(path, max_line=max_line):
        looked += 1
        reading = stamps.read(text)
        if reading is None:
            continue
        partial = partial or isinstance(reading, Partial)
        if first is None:
            first = stamps.parse(text)  # the file's first time: a step, in file order
        if first is not None and partial:
            break
    return first, looked, partial


def _head_lines(path: Path, *, max_line: int) -> Iterator[str]:
    count = 0
    for chunk in read_chunks(path, max_line=max_line, chunk_bytes=HEAD_BYTES):
        for raw in chunk[:-1].split(b"\n"):
            yield _decode(raw)
            count += 1
            if count >= HEAD_LINES:
                return


def count_lines(path: Path, *, max_line: int) -> int:
    return sum(chunk.count(b"\n") for chunk in read_chunks(path, max_line=max_line))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


class StampClock:
    """The time of a file's lines from their own timestamps (see the module docstring)."""

    order = False

    def __init__(self, stamps: Timestamps, start: float) -> None:
        self.stamps = stamps
        self.first = self.now = start
        self.floor = 0  # start of the last line resolved in this chunk: no need to look back past it

    def new_chunk(self, chunk: bytes, lines: int) -> None:
        self.floor = 0

    def line(self, chunk: bytes, start: int, text: str) -> float:
        at = self.stamps.parse(text)
        if at is None:
            at = self._before(chunk, start)
        if at < self.now:
            at = self.now  # out of order: never move time backwards
        self.now, self.floor = at, start
        return at

    def chunk_end(self, chunk: bytes) -> float:
        start = chunk.rfind(b"\n", 0, len(chunk) - 1) + 1
        return self.line(chunk, start, _decode(chunk[start:-1]))

    def _before(self, chunk: bytes, start: int) -> float:
        """The time of the nearest line before ``start`` (back to the last one resolved) that has one."""
        pos = start
        while pos > self.floor:
            prev = chunk.rfind(b"\n", 0, pos - 1) + 1
            text = _decode(chunk[prev:pos - 1])
            if self.stamps.read(text) is not None:  # look first: placing a time is a step in file order
                at = self.stamps.parse(text)
                if at is not None:
                    return at
            pos = prev
        return self.now


class DenseClock:
    """Like StampClock, for times written without a year or a date: every line is looked at.

    Placing such a time depends on the line before it, so a month or midnight wrap
    between two lines the replay reads (matched lines, chunk ends) would otherwise
    go unseen. As each chunk starts, the time of each line that could hold a wrap
    is read in order: lines that begin like the line read before them (the same
    date, or hour: ``Timestamps.same_until``) cannot, and are passed over. A matched
    line (or, without a time, the nearest line before it with one) is then placed
    after the nearest line read before it.
    """

    order = False

    def __init__(self, stamps: Timestamps, start: float) -> None:
        self.stamps = stamps
        self.first = self.now = start
        self._before = start  # the time when the current chunk starts
        self._starts: list[int] = []  # where each line read starts in the chunk
        self._times: list[float] = []
        self._end = start

    def new_chunk(self, chunk: bytes, lines: int) -> None:
        self._before = now = self._end
        starts: list[int] = []
        times: list[float] = []
        same = self.stamps.same_until
        head = b"\0"  # the start of the last line read (never a line's start, at first)
        pos = 0
        last = len(chunk) - 1
        for raw in chunk[:-1].split(b"\n"):
            end = pos + len(raw)
            if same is None or not raw.startswith(head) or end == last:
                at = self.stamps.parse(_decode(raw))
                if at is not None:
                    now = max(at, now)  # out of order: never move time backwards
                    starts.append(pos)
                    times.append(now)
                    # a line with its year written is no anchor to compare with (a file may mix both)
                    head = raw[:same] if same is not None and self.stamps.partial else b"\0"
            pos = end + 1
        self._starts, self._times, self._end = starts, times, now

    def line(self, chunk: bytes, start: int, text: str) -> float:
        i = bisect_right(self._starts, start) - 1
        floor, before = (self._starts[i], self._times[i]) if i >= 0 else (0, self._before)
        reading = self.stamps.read(text)
        pos = start
        while reading is None and pos > floor:  # no time of its own: the nearest line before it with one
            prev = chunk.rfind(b"\n", 0, pos - 1) + 1
            reading = self.stamps.read(_decode(chunk[prev:pos - 1]))
            pos = prev
        at = self.stamps.place(reading, after=before)
        self.now = before if at is None or at < before else at
        return self.now

    def chunk_end(self, chunk: bytes) -> float:
        self.now = self._end
        return self.now


class OrderClock:
    """Lines in file order, ORDER_STEP apart, the last at ``end`` (for a file without readable times)."""

    order = True

    def __init__(self, end: float, lines: int) -> None:
        self.first = self.now = end - max(lines - 1, 0) * ORDER_STEP
        self._base = 0  # lines before the current chunk
        self._next_base = 0
        self._cursor = 0  # a position in the current chunk, and the lines before it
        self._counted = 0

    def new_chunk(self, chunk: bytes, lines: int) -> None:
        self._base, self._next_base = self._next_base, self._next_base + lines
        self._cursor = self._counted = 0

    def line(self, chunk: bytes, start: int, text: str) -> float:
        self._counted += chunk.count(b"\n", self._cursor, start)
        self._cursor = start
        return self._at(self._base + self._counted)

    def chunk_end(self, chunk: bytes) -> float:
        return self._at(self._next_base - 1)

    def _at(self, index: int) -> float:
        self.now = self.first + index * ORDER_STEP
        return self.now
