"""A container's log stream into whole lines: records, their engine timestamps, and the reading thread.

Lines. Each log record is ``<RFC 3339 timestamp> <bytes>``; a record that does
not end in a newline is a piece of a longer line and the next record continues
it (its timestamp is dropped; the line keeps its first record's timestamp). A
line longer than ``max_line_bytes`` keeps its first bytes (cut at a UTF-8
boundary) and is flagged ``truncated``; the rest is dropped as it arrives.
One trailing ``\\r`` is stripped (TTY containers end lines in ``\\r\\n``). An
unfinished line is held until its newline; at the end of a stopped
container's backlog it is delivered flagged ``partial`` (the end of a running
container's stream is not trusted with it: it is read again). ``Line.at`` is our
clock's time of reading, as for files; the engine's timestamp only positions.

TTY containers (``tty: true``) give one unframed byte stream: records are
split at newlines, so a piece of a line (no newline) followed by the next
record leaves that record's engine timestamp inside the text.

Podman's compat API prints timestamps to the second and splits a line written in
two ``write`` calls into two records (see ``sidecar.sources.container_logs``).
"""

from __future__ import annotations

import codecs
import contextlib
import queue
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .containers import engine_errors

NS = 1_000_000_000
PUMP_CHUNKS = 256  # stream records buffered between the reading thread and the follower
END = object()  # what the pump queues last, once the stream has ended
_TS = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ")


def engine_time(text: bytes) -> tuple[int | None, bytes]:
    """(epoch ns, rest) of a log record ``<RFC 3339> <text>``; (None, record) if it has no timestamp."""
    m = _TS.match(text)
    if m is None:
        return None, text
    zone = "+00:00" if m[3] == b"Z" else m[3].decode()
    try:
        seconds = int(datetime.fromisoformat(m[1].decode() + zone).timestamp())
    except ValueError:
        return None, text
    return seconds * NS + int((m[2] or b"").ljust(9, b"0")), text[m.end() :]


@dataclass(frozen=True, slots=True)
class Entry:
    ns: int | None
    text: str
    truncated: bool
    partial: bool


class RecordParser:
    """Stream chunks into whole lines: frames (one record each) or, for TTY containers, bytes."""

    def __init__(self, *, tty: bool, cap: int) -> None:
        self.tty = tty
        self.cap = cap
        self._raw = bytearray()  # TTY: bytes not yet split into records
        self._raw_start = True  # TTY: the next raw byte starts a record (a timestamp)
        self._line = bytearray()
        self._ns: int | None = None
        self._open = False
        self._truncated = False

    def feed(self, chunk: bytes) -> list[Entry]:
        if not self.tty:
            ns, data = engine_time(chunk)
            return self._record(ns, data)
        self._raw += chunk
        out: list[Entry] = []
        while (cut := self._raw.find(b"\n")) >= 0:
            piece = bytes(self._raw[: cut + 1])
            del self._raw[: cut + 1]
            out += self._raw_record(piece)
            self._raw_start = True
        if len(self._raw) > self.cap + 64:  # a long unfinished line: pass it on, keep nothing
            piece = bytes(self._raw)
            self._raw.clear()
            out += self._raw_record(piece)
            self._raw_start = False
        return out

    def end(self) -> list[Entry]:
        """The stream ended with the container: an unfinished line is delivered, flagged partial."""
        out: list[Entry] = []
        if self._raw:
            out += self._raw_record(bytes(self._raw))
            self._raw.clear()
        if self._open:
            out.append(self._finish(partial=True))
        return out

    def _raw_record(self, piece: bytes) -> list[Entry]:
        ns, data = engine_time(piece) if self._raw_start else (None, piece)
        return self._record(ns, data)

    def _record(self, ns: int | None, data: bytes) -> list[Entry]:
        out: list[Entry] = []
        pieces = data.split(b"\n")
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if last and not piece:
                break
            if not self._open:
                self._ns, self._open = ns, True
            room = self.cap - len(self._line)
            if len(piece) > room:
                self._line += piece[: max(room, 0)]
                self._truncated = True
            else:
                self._line += piece
            if not last:
                out.append(self._finish(partial=False))
        return out

    def _finish(self, *, partial: bool) -> Entry:
        raw = bytes(self._line)
        if not self._truncated and not partial and raw.endswith(b"\r"):
            raw = raw[:-1]
        # a cut line must not end in half a character: the incremental decoder holds it back
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(raw, final=not self._truncated)
        entry = Entry(self._ns, text, self._truncated, partial)
        self._line.clear()
        self._ns, self._open, self._truncated = None, False, False
        return entry



class Pump:
    """Reads a blocking log stream on its own thread into a bounded queue, so the follower can batch and stop.

    The docker SDK reads log streams with no socket timeout; closing the stream from
    the follower's thread is what ends a read that waits for a quiet container.
    """

    def __init__(self, stream: Any, name: str) -> None:
        self.stream = stream
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=PUMP_CHUNKS)
        self.error: BaseException | None = None
        self._closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"suture-logpump-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pending = bytearray()  # TTY streams come a character at a time (str): coalesced up to a newline
        try:
            for chunk in self.stream:
                if isinstance(chunk, str):
                    pending += chunk.encode()
                    if not chunk.endswith("\n") and len(pending) < 4096:
                        continue
                    chunk, pending = bytes(pending), bytearray()
                if not self._offer(chunk):
                    return
            if pending:
                self._offer(bytes(pending))
        except engine_errors() as exc:
            if not self._closed.is_set():
                self.error = exc
        finally:
            self._offer(END)

    def _offer(self, item: Any) -> bool:
        """Queue ``item``, waiting while the follower is behind (backpressure); False once closed."""
        while not self._closed.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(Exception):  # the SDK's close digs for the socket; a finished response has none
            self.stream.close()
        self.thread.join(timeout=2.0)
        # the SDK shuts the socket down but leaves the HTTP response (and its socket object) open
        with contextlib.suppress(Exception):
            self.stream._response.close()
