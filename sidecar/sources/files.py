"""Tail the log files a glob matches: every line once, across rotation, truncation and restarts.

Identity. A file is its (st_dev, st_ino) plus a fingerprint: the sha256 of its
first bytes (up to 256; how many is remembered, so a short file's fingerprint
grows with it). The fingerprinted bytes are re-checked at every poll (not only
when size or mtime changed: a rewrite to the same size within the filesystem's
timestamp granularity changes neither). Never the path alone (rotation moves
paths), never the inode alone (a deleted file's inode is reused).

Rotation. Every poll re-expands the glob and stats every match. A tracked file
that no matching path points at any more (renamed away, deleted, moved out of
the glob) is *detached*: its fd stays open and it is drained through it, and it
is closed only once it has been neither detached nor grown for
``rotate_grace`` seconds (and holds no unfinished line or traceback). A file seen for the
first time is read from offset 0. A tracked file that shrank below the read
offset (copytruncate), or whose fingerprinted bytes changed
(truncate-then-grow), is read again from 0 and counted as a truncation; lines
already read but still held (an unfinished traceback) are emitted first.

Lines. Raw bytes are split on b"\\n"; each complete line is decoded as UTF-8
(errors replaced and counted); one trailing "\\r" and a BOM at offset 0 are
stripped. A line without its newline waits; after ``partial_flush_after``
seconds without growth it is emitted with partial=True and its bytes are
consumed (the rest becomes its own line when the newline comes; an empty rest
is dropped). A line longer than ``max_line_bytes`` keeps its first
max_line_bytes (cut at a UTF-8 boundary) and is flagged truncated; the rest is
read and dropped, never buffered.

Tracebacks (``multiline="python"``, the default). A Python traceback becomes one
Line whose text is its lines joined with "\\n": from a ``Traceback (most recent
call last):`` line (or an exception group's ``+ Exception Group Traceback``
line) through the indented frame, source and caret lines to the exception line,
and on through chained tracebacks (blank line, "During handling of the above
exception..." or "The above exception was the direct cause...", blank line, next
traceback). A line that does not continue it ends it (a log line before the
header is never glued). Whether a chained one follows is only known from the
next line, so a complete traceback waits for it, or for ``multiline_flush_after``
seconds without growth (an unfinished one for ``partial_flush_after``). Held
lines are not committed: the checkpoint stays at the traceback's first line, so
a crash reads it whole again. At ``max_traceback_lines`` lines or
``max_line_bytes`` bytes of joined text it is emitted at once, flagged
truncated, and the rest of it is read and dropped (the checkpoint records that
state, ``skip``, so a restart keeps dropping it instead of emitting its tail as
lines).

Checkpoints. One JSON file shared by all sources, keyed by source name and
"dev:ino", holding the fingerprint, the offset just after the last committed
line, ``cont`` (the line at the offset continues a flushed partial line),
``skip`` (the lines at the offset continue a traceback cut at its cap) and the
path. poll() never moves a checkpoint; commit() advances it over what
poll() returned, so a crash in between re-reads and never skips. A checkpoint
is used only if the file's fingerprint still matches; a checkpointed file at the
same path whose first bytes changed while suture was stopped was rewritten
(or replaced on a reused inode): it is read from 0 and counted as a truncation,
since lines past the checkpoint may be lost. Start: a checkpointed
file resumes at its checkpoint; otherwise files present at the first poll of a
fresh store (no checkpoint file was ever saved: the first save writes one even
when empty) start at their end (at the start of an unfinished last line), and
every other file at 0. A checkpointed file no glob match points at on the first
poll is looked for by inode in its old folder (rotated while suture was down)
and drained from its checkpoint, unless its fingerprint is empty (that would be
identity by inode alone: a copy or a new file on the reused inode would match).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from suture.engine.backup import atomic_write

from .base import Block, Line

log = logging.getLogger(__name__)

FP_BYTES = 256
BOM = b"\xef\xbb\xbf"
TB_MARK = b"Traceback (most recent call last):"  # also in an exception group's header
SLOW_LINES = 64  # lines the line-by-line path takes before the block fast path is tried again
_GLOB_MAGIC = re.compile(r"[*?[]")
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO swapped in never blocks us

Key = tuple[int, int]  # (st_dev, st_ino)

_TB_HEADER = "Traceback (most recent call last):"
_EG_HEADER = re.compile(r"[ \t]*\+ Exception Group Traceback \(most recent call last\):")
_EG_LINE = re.compile(r"[ \t]+[|+]")  # every line of an exception group's traceback
_EG_END = re.compile(r"[ \t]*\+-+")  # a group's closing rule: it may be the last line
_EXC_LINE = re.compile(r"[^\W\d][\w.<>]*(?:: .*)?")  # KeyError, pkg.mod.Error: msg, f.<locals>.E
_CHAINED = frozenset((
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
))
SKIP_STATES = ("", "tb", "tb!", "eg", "eg!")  # Resume.skip: inside a cut traceback ("!": it may be complete)
MULTILINE = (None, "python")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key_str(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


def _utf8_cut(raw: bytes) -> bytes:
    """``raw`` without a multi-byte character cut in half at its end."""
    for back in range(1, min(4, len(raw)) + 1):
        b = raw[-back]
        if b < 0x80:
            return raw
        if b >= 0xC0:  # a lead byte: keep its sequence only if complete
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return raw if back >= need else raw[:-back]
    return raw


def _open_file(path: str) -> tuple[int, os.stat_result, bytes]:
    """An fd on ``path``, its stat, and its first FP_BYTES bytes (nothing for a non-regular file)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        head = os.pread(fd, FP_BYTES, 0) if stat.S_ISREG(st.st_mode) else b""
    except BaseException:
        os.close(fd)
        raise
    return fd, st, head


def _nlink(fd: int) -> int:
    try:
        return os.fstat(fd).st_nlink
    except OSError:
        return 0


@dataclass(frozen=True, slots=True)
class Resume:
    """One checkpoint: where to resume a file, and how to recognise it."""

    fp: str  # sha256 hex of the first fp_len bytes
    fp_len: int
    offset: int  # just after the last committed line
    cont: bool  # the line at offset continues a flushed partial line
    path: str  # where the file was last seen
    skip: str = ""  # the lines at offset continue a traceback cut at its cap (one of SKIP_STATES)

    def matches(self, head: bytes) -> bool:
        return len(head) >= self.fp_len and _sha(head[: self.fp_len]) == self.fp

    @classmethod
    def parse(cls, doc: Any) -> Resume:
        ok = (isinstance(doc, dict) and isinstance(doc.get("fp"), str) and type(doc.get("fp_len")) is int
              and type(doc.get("offset")) is int and isinstance(doc.get("cont"), bool)
              and isinstance(doc.get("path"), str))
        skip = doc.get("skip", "") if isinstance(doc, dict) else ""
        if not ok or not 0 <= doc["fp_len"] <= FP_BYTES or doc["offset"] < 0 or skip not in SKIP_STATES:
            raise ValueError(f"bad checkpoint entry {doc!r:.200}")
        return cls(doc["fp"], doc["fp_len"], doc["offset"], doc["cont"], doc["path"], skip)


class Checkpoints:
    """Persisted read positions, one JSON file (e.g. state_dir/checkpoints.json), written atomically.

    Shared by every FileSource (entries are namespaced by source name); safe to use
    from several threads. A corrupt file is renamed to ``<name>.corrupt``, counted in
    ``corrupt`` and logged, and the store counts as fresh: files start at their end
    rather than replaying their whole history as if it were happening now.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.corrupt = 0
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._marks: dict[str, dict[str, Resume]] = {}
        self._saved = 0
        self._fresh = not self.path.exists()
        if not self._fresh:
            self._load()
        # A fresh store is written at its first save even when empty: a restart must not take
        # files that appeared in between for history and start them at their end.
        self._changes = int(self._fresh)

    @property
    def fresh(self) -> bool:
        """True when no (usable) checkpoint file existed at start."""
        return self._fresh

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
            if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("sources"), dict):
                raise ValueError("not a version 1 checkpoint file")
            self._marks = {str(src): {str(k): Resume.parse(v) for k, v in marks.items()}
                           for src, marks in doc["sources"].items()}
        except (ValueError, AttributeError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            self.corrupt += 1
            self._marks, self._fresh = {}, True
            log.error("checkpoint file %s is corrupt (%s); moved to %s, starting fresh", self.path, exc, aside)

    def get(self, source: str, key: str) -> Resume | None:
        with self._lock:
            return self._marks.get(source, {}).get(key)

    def entries(self, source: str) -> dict[str, Resume]:
        with self._lock:
            return dict(self._marks.get(source, {}))

    def put(self, source: str, key: str, mark: Resume) -> None:
        with self._lock:
            marks = self._marks.setdefault(source, {})
            if marks.get(key) != mark:
                marks[key] = mark
                self._changes += 1

    def drop(self, source: str, key: str) -> None:
        with self._lock:
            if self._marks.get(source, {}).pop(key, None) is not None:
                self._changes += 1

    def save(self, *, durable: bool = True) -> None:
        """Write the file atomically (mode 0600) if anything changed or it was never written; on OSError the
        next save retries. ``durable=False`` skips the fsyncs: the rename still survives the process being
        killed (the guarantee a restart needs), only not a power cut; the runtime saves durably now and then."""
        with self._save_lock:
            with self._lock:
                if self._changes == self._saved:
                    return
                changes = self._changes
                doc = {"version": 1, "sources": {src: {k: asdict(m) for k, m in marks.items()}
                                                 for src, marks in self._marks.items() if marks}}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(doc, separators=(",", ":"), sort_keys=True).encode(), mode=0o600,
                         durable=durable, trusted_folder=True)
            with self._lock:
                self._saved = changes


@dataclass(frozen=True, slots=True)
class _Piece:
    """A decoded line on its way to becoming a Line (or several joined ones: a traceback)."""

    text: str
    truncated: bool
    at: float
    start: int = 0  # file offset of its first byte
    cont: bool = False  # it continues a flushed partial line
    lines: int = 1  # physical lines joined into it
    capped: bool = False  # a traceback cut at its cap


def _header(text: str) -> str | None:
    """The traceback kind ``text`` starts: "tb", "eg" (an exception group) or None."""
    if text == _TB_HEADER:
        return "tb"
    return "eg" if _EG_HEADER.fullmatch(text) else None


class _Joiner:
    """Joins the lines of a Python traceback into one piece; one per file, pure (no I/O, no clock).

    Lines pass through until a traceback header; each later line continues the traceback or ends
    it. A traceback that may be complete (its exception line, or a group's closing rule, was seen)
    waits for the next line: a blank line, a chaining sentence and a blank line are held as
    look-ahead until the next header proves a chain (or anything else ends the traceback before
    them). Nothing held is consumed: resume_point() is where a checkpoint must stay. At the cap the
    traceback is emitted truncated at once and the rest of it is dropped as it is read (``discard``).
    """

    def __init__(self, max_lines: int, max_bytes: int, skip: str = "") -> None:
        self._max_lines, self._max_bytes = max_lines, max_bytes
        self.mode: str | None = skip.rstrip("!") or None  # "tb" or "eg": inside a traceback
        self.complete = skip.endswith("!")  # the last line may have been its last
        self.discard = bool(skip)  # emitted at the cap: drop the rest of this traceback
        self._first: _Piece | None = None
        self._texts: list[str] = []
        self._size = 0  # bytes of "\n".join(self._texts)
        self._truncated = False
        self._look: list[_Piece] = []  # blank, chaining sentence, blank: a chain until proven otherwise

    @property
    def holding(self) -> bool:
        """Lines were read that are neither emitted nor dropped."""
        return self.mode is not None and (not self.discard or bool(self._look))

    def resume_point(self, offset: int, cont: bool) -> tuple[int, bool, str]:
        """(offset, cont, skip) for a checkpoint, given where the caller's framing stands."""
        if self.mode is None:
            return offset, cont, ""
        if not self.discard and self._first is not None:
            return self._first.start, self._first.cont, ""
        if self._look:
            return self._look[0].start, self._look[0].cont, self.mode + "!"
        return offset, cont, self.mode + ("!" if self.complete else "")

    def feed(self, piece: _Piece) -> list[_Piece]:
        """What is ready after ``piece``: lines passed through, finished tracebacks."""
        out: list[_Piece] = []
        self._step(piece, out)
        return out

    def expire(self, idle: float, complete_after: float, unfinished_after: float) -> list[_Piece]:
        """Flush a traceback whose file has not grown for long enough (shorter when it may be complete)."""
        if self.mode is None or idle < (complete_after if self.complete or self._look else unfinished_after):
            return []
        return self.flush()

    def flush(self) -> list[_Piece]:
        """End whatever is held: the traceback so far, then the look-ahead as plain lines."""
        out: list[_Piece] = []
        if self.mode is not None:
            look, self._look = self._look, []
            self._end(out)
            for piece in look:
                self._step(piece, out)
        return out

    def _step(self, piece: _Piece, out: list[_Piece]) -> None:
        text = piece.text
        if self.mode is None:
            mode = _header(text)
            if mode is None:
                out.append(piece)
            else:
                self.mode, self.complete, self.discard, self._first = mode, False, False, piece
                self._add(piece, out)
        elif self._look:
            self._chain(piece, out)
        elif self.mode == "eg" and _EG_LINE.match(text):
            self._add(piece, out)
            self.complete = _EG_END.fullmatch(text) is not None
        elif self.mode == "tb" and not self.complete and text.startswith((" ", "\t")):
            self._add(piece, out)  # a frame, source, caret, "...<N lines>..." or "[Previous line repeated]"
        elif self.mode == "tb" and not self.complete and _EXC_LINE.fullmatch(text):
            self._add(piece, out)
            self.complete = True
        elif self.complete and not text:
            self._look.append(piece)
        else:
            self._end(out)
            self._step(piece, out)

    def _chain(self, piece: _Piece, out: list[_Piece]) -> None:
        self._look.append(piece)
        n, text = len(self._look), piece.text
        chaining = text in _CHAINED or (piece.truncated and any(c.startswith(text) for c in _CHAINED))
        if (n == 2 and chaining) or (n == 3 and not text):  # (a tiny line cap may cut the sentence)
            return
        mode = _header(text) if n == 4 else None
        look, self._look = self._look, []
        if mode is not None:  # a chained traceback: the look-ahead belongs to it
            for held in look:
                self._add(held, out)
            self.mode, self.complete = mode, False
            return
        self._end(out)
        for held in look:
            self._step(held, out)

    def _add(self, piece: _Piece, out: list[_Piece]) -> None:
        if self.discard:
            return
        data = piece.text.encode()
        sep = 1 if self._texts else 0
        if len(self._texts) < self._max_lines and self._size + sep + len(data) <= self._max_bytes:
            self._texts.append(piece.text)
            self._size += sep + len(data)
            self._truncated |= piece.truncated
            return
        room = self._max_bytes - self._size - sep
        if len(self._texts) < self._max_lines and room > 0:
            self._texts.append(_utf8_cut(data[:room]).decode("utf-8", errors="replace"))
        self._emit(out, capped=True)
        self.discard = True

    def _end(self, out: list[_Piece]) -> None:
        if not self.discard:
            self._emit(out, capped=False)
        self.mode, self.complete, self.discard = None, False, False

    def _emit(self, out: list[_Piece], *, capped: bool) -> None:
        if self._first is not None and self._texts:
            out.append(_Piece("\n".join(self._texts), self._truncated or capped, self._first.at,
                              lines=len(self._texts), capped=capped))
        self._first, self._texts, self._size, self._truncated = None, [], 0, False


class _TrackedFile:
    """One open file: identity, read position, and the unfinished line."""

    def __init__(self, path: str, fd: int, st: os.stat_result, head: bytes, start: int, cont: bool,
                 now: float, joiner: _Joiner | None) -> None:
        self.path = path
        self.fd = fd
        self.key: Key = (st.st_dev, st.st_ino)
        self.key_s = _key_str(self.key)
        self.fp, self.fp_len = _sha(head), len(head)
        self.pos = start  # next byte to read
        self.line_start = start  # where the unfinished line starts; everything before it was returned
        self.buf = bytearray()  # the unfinished line, at most max_line_bytes of it
        self.overflow = False  # the unfinished line has more bytes than buf keeps
        self.cont = cont  # the unfinished line continues a flushed partial line
        self.joiner = joiner  # joins tracebacks; None when multiline is off
        self.grew_at = now
        self.detached_at: float | None = None
        self.at_eof = False

    @property
    def holding(self) -> bool:
        """Bytes were read that are not yet emitted: an unfinished line or traceback."""
        return bool(self.buf) or self.overflow or (self.joiner is not None and self.joiner.holding)

    def mark(self) -> Resume:
        if self.joiner is None:
            return Resume(self.fp, self.fp_len, self.line_start, self.cont, self.path)
        offset, cont, skip = self.joiner.resume_point(self.line_start, self.cont)
        return Resume(self.fp, self.fp_len, offset, cont, self.path, skip)


class FileSource:
    """Tails every file matching ``pattern`` (absolute; ``**`` allowed). See the module docstring."""

    def __init__(self, name: str, pattern: str, *, checkpoints: Checkpoints,
                 max_line_bytes: int = 65536, partial_flush_after: float = 5.0,
                 clock: Callable[[], float] = time.time, chunk_bytes: int = 1 << 16,
                 start_at_end: bool | None = None, rotate_grace: float = 2.0,
                 max_poll_bytes: int = 4 << 20, max_poll_lines: int = 1 << 16, max_files: int = 1024,
                 multiline: str | None = "python", multiline_flush_after: float = 0.2,
                 max_traceback_lines: int = 200, blocks: bool = False) -> None:
        if not os.path.isabs(pattern):
            raise ValueError(f"source {name}: file pattern must be absolute, got {pattern!r}")
        if min(max_line_bytes, chunk_bytes, max_poll_bytes, max_poll_lines, max_files, max_traceback_lines) < 1:
            raise ValueError(f"source {name}: sizes and limits must be positive")
        if multiline not in MULTILINE:
            raise ValueError(f"source {name}: multiline must be one of {MULTILINE}, got {multiline!r}")
        self.name, self.pattern = name, pattern
        self._checkpoints = checkpoints
        self._max_line, self._flush_after, self._clock = max_line_bytes, partial_flush_after, clock
        self._chunk, self._start_at_end, self._grace = chunk_bytes, start_at_end, rotate_grace
        self._max_poll_bytes, self._max_poll_lines, self._max_files = max_poll_bytes, max_poll_lines, max_files
        self._multiline, self._multiline_after, self._max_tb = multiline, multiline_flush_after, max_traceback_lines
        self._blocks = blocks  # hand runs of ordinary lines over as one Block (see _fast)
        self._fed_from = 0
        self.stats: dict[str, int] = dict.fromkeys(
            ("lines", "bytes", "truncated", "decode_errors", "rotations", "truncations", "partial_flushes",
             "files", "deleted", "errors", "skipped_files", "tracebacks", "tracebacks_truncated"), 0)
        self.backlog = False  # the last poll stopped at a per-poll cap: poll again soon
        self._files: dict[Key, _TrackedFile] = {}
        self._gone: set[str] = set()  # checkpoint keys to drop at the next commit
        self._retired: dict[Key, Resume] = {}  # closed files, in case a match finds them again (bounded)
        self._first = True
        self._warned: set[str] = set()

    # -- public --

    def watch_dirs(self) -> list[Path]:
        """The existing folder a watcher should watch (recursively): the glob's static prefix."""
        parts = Path(self.pattern).parts
        magic = [i for i, part in enumerate(parts) if _GLOB_MAGIC.search(part)]
        prefix = Path(*parts[: magic[0] if magic else -1])  # a plain path: its folder
        return [prefix] if prefix.is_dir() else []

    def poll(self) -> list[Line]:
        """Every new complete line of every matching file, in order per file (non-blocking)."""
        now = self._clock()
        out: list[Line] = []
        self.backlog = False
        self._track(self._expand(), now)
        for tf in list(self._files.values()):
            try:
                self._read(tf, now, out)
            except OSError as exc:
                self.stats["errors"] += 1
                log.warning("%s: reading %s failed: %s", self.name, tf.path, exc)
                continue
            if tf.detached_at is not None and tf.at_eof and not tf.holding \
                    and now - max(tf.detached_at, tf.grew_at) >= self._grace:
                self._retire(tf)
        self._first = False
        self.stats["files"] = len(self._files)
        return out

    def commit(self) -> None:
        """What poll() returned became observations: advance the checkpoints (in memory)."""
        for key_s in self._gone:
            self._checkpoints.drop(self.name, key_s)
        self._gone.clear()
        for tf in self._files.values():
            self._checkpoints.put(self.name, tf.key_s, tf.mark())

    def close(self) -> None:
        for tf in self._files.values():
            with contextlib.suppress(OSError):
                os.close(tf.fd)
        self._files.clear()

    # -- finding files --

    def _expand(self) -> dict[Key, str]:
        found: dict[Key, str] = {}
        for path in sorted(glob.glob(self.pattern, recursive=True)):
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone between glob and stat
            if stat.S_ISREG(st.st_mode):
                found.setdefault((st.st_dev, st.st_ino), path)
        return found

    def _track(self, found: dict[Key, str], now: float) -> None:
        if self._first:
            self._recover_moved(found, now)
        for key, tf in self._files.items():
            path = found.get(key)
            if path is None and tf.detached_at is None:
                tf.detached_at = now
                deleted = _nlink(tf.fd) == 0
                self.stats["deleted" if deleted else "rotations"] += 1
                log.info("%s: %s was %s; draining it", self.name, tf.path, "deleted" if deleted else "rotated")
            elif path is not None:
                if path != tf.path:
                    self.stats["rotations"] += 1
                tf.path, tf.detached_at = path, None
        skipped = 0
        for key, path in found.items():
            if key in self._files:
                continue
            if len(self._files) >= self._max_files:
                skipped += 1
                continue
            self._open(path, now)
        if skipped and not self.stats["skipped_files"]:
            log.warning("%s: more than %d files match %s; %d not read", self.name, self._max_files,
                        self.pattern, skipped)
        self.stats["skipped_files"] = skipped

    def _open(self, path: str, now: float) -> None:
        try:
            fd, st, head = _open_file(path)
        except FileNotFoundError:
            return  # gone since the glob
        except OSError as exc:
            self.stats["errors"] += 1
            if path not in self._warned and len(self._warned) < 1000:
                self._warned.add(path)
                log.warning("%s: cannot open %s: %s", self.name, path, exc)
            return
        key: Key = (st.st_dev, st.st_ino)
        if not stat.S_ISREG(st.st_mode) or key in self._files:
            os.close(fd)
            return
        try:
            start, cont, skip = self._start_of(fd, st, head, path)
        except OSError:
            os.close(fd)
            self.stats["errors"] += 1
            return
        self._files[key] = _TrackedFile(path, fd, st, head, start, cont, now, self._joiner(skip))

    def _joiner(self, skip: str) -> _Joiner | None:
        return None if self._multiline is None else _Joiner(self._max_tb, self._max_line, skip)

    def _start_of(self, fd: int, st: os.stat_result, head: bytes, path: str) -> tuple[int, bool, str]:
        key: Key = (st.st_dev, st.st_ino)
        retired = self._retired.pop(key, None)
        mark = retired or self._checkpoints.get(self.name, _key_str(key))
        if mark is not None and mark.matches(head):
            if mark.offset <= st.st_size:
                return mark.offset, mark.cont, mark.skip
            self.stats["truncations"] += 1
            log.warning("%s: %s shrank below its checkpoint while stopped; reading it from 0", self.name, path)
            return 0, False, ""
        if mark is not None and retired is None and mark.path == path:
            # Rewritten in place while we were stopped (or deleted and recreated on the same inode):
            # whatever followed the checkpoint in the old contents is lost, and we cannot tell how much.
            self.stats["truncations"] += 1
            log.warning("%s: %s has other first bytes than at its checkpoint (rewritten while stopped); "
                        "reading it from 0, lines written before may be lost", self.name, path)
        elif mark is not None:
            log.info("%s: %s reuses a checkpointed inode with other contents: a new file", self.name, path)
        at_end = self._checkpoints.fresh if self._start_at_end is None else self._start_at_end
        return (self._tail_start(fd, st.st_size), False, "") if self._first and at_end else (0, False, "")

    def _tail_start(self, fd: int, size: int) -> int:
        """The end of the file, or the start of its unfinished last line if that is within the line cap."""
        n = min(size, self._max_line)
        nl = os.pread(fd, n, size - n).rfind(b"\n") if n else -1
        return size - n + nl + 1 if nl >= 0 else (0 if n == size else size)

    def _recover_moved(self, found: dict[Key, str], now: float) -> None:
        """First poll: checkpointed files no match points at were rotated or deleted while we were down."""
        known = {_key_str(key) for key in found}
        for key_s, mark in self._checkpoints.entries(self.name).items():
            if key_s not in known and not self._reopen_moved(key_s, mark, now):
                self._gone.add(key_s)

    def _reopen_moved(self, key_s: str, mark: Resume, now: float) -> bool:
        if mark.fp_len == 0:  # an empty fingerprint matches anything: that would be the inode alone
            return False
        try:
            ino = int(key_s.split(":")[1])
            with os.scandir(os.path.dirname(mark.path)) as entries:
                path = next((e.path for e in entries if e.inode() == ino and e.is_file(follow_symlinks=False)), None)
            if path is None:
                return False
            fd, st, head = _open_file(path)
        except (OSError, ValueError, IndexError):
            return False
        if _key_str((st.st_dev, st.st_ino)) != key_s or not mark.matches(head) or mark.offset > st.st_size:
            os.close(fd)
            return False
        tf = _TrackedFile(path, fd, st, head, mark.offset, mark.cont, now, self._joiner(mark.skip))
        tf.detached_at = now
        self._files[tf.key] = tf
        self.stats["rotations"] += 1
        log.info("%s: %s was rotated to %s while stopped; draining it", self.name, mark.path, path)
        return True

    def _retire(self, tf: _TrackedFile) -> None:
        os.close(tf.fd)
        del self._files[tf.key]
        self._gone.add(tf.key_s)
        self._retired[tf.key] = tf.mark()
        if len(self._retired) > self._max_files:
            del self._retired[next(iter(self._retired))]
        log.info("%s: finished %s at offset %d", self.name, tf.path, tf.pos)

    # -- reading --

    def _read(self, tf: _TrackedFile, now: float, out: list[Line]) -> None:
        self._check_identity(tf, os.fstat(tf.fd).st_size, out)
        budget, stop = self._max_poll_bytes, len(out) + self._max_poll_lines
        tf.at_eof = False
        while budget > 0:
            data = os.pread(tf.fd, min(self._chunk, budget), tf.pos)
            if not data:
                tf.at_eof = True
                break
            tf.grew_at = now
            budget -= len(data)
            if not self._feed(tf, data, now, out, stop):
                break
        if not tf.at_eof:
            self.backlog = True
            return
        idle = now - tf.grew_at
        if tf.joiner is not None and tf.joiner.mode is not None:
            self._out(tf, tf.joiner.expire(idle, self._multiline_after, self._flush_after), out)
        if (tf.buf or tf.overflow) and idle >= self._flush_after:
            raw, truncated = bytes(tf.buf), tf.overflow
            tf.buf.clear()
            tf.overflow = False
            self._emit(tf, raw, tf.pos, now, out, partial=True, truncated=truncated)

    def _check_identity(self, tf: _TrackedFile, size: int, out: list[Line]) -> None:
        """Restart at 0 if the file shrank below what was read or its fingerprinted bytes changed."""
        head = os.pread(tf.fd, FP_BYTES, 0)
        if size < tf.pos:
            self._restart(tf, f"shrank from {tf.pos} to {size} bytes", head, out)
        elif len(head) < tf.fp_len or _sha(head[: tf.fp_len]) != tf.fp:
            self._restart(tf, "has new first bytes", head, out)
        elif len(head) > tf.fp_len:
            tf.fp, tf.fp_len = _sha(head), len(head)

    def _restart(self, tf: _TrackedFile, why: str, head: bytes, out: list[Line]) -> None:
        self.stats["truncations"] += 1
        log.warning("%s: %s %s (truncated); reading it from 0, lines written just before are lost",
                    self.name, tf.path, why)
        if tf.joiner is not None:  # a held traceback was read before the truncation: it is an observation
            self._out(tf, tf.joiner.flush(), out)
        tf.fp, tf.fp_len = _sha(head), len(head)
        tf.pos = tf.line_start = 0
        tf.buf.clear()
        tf.overflow = tf.cont = False

    def _fast(self, tf: _TrackedFile, data: bytes, now: float, out: list[Any], stop: int) -> int:
        """The fast path: the complete lines at the head of ``data`` as one Block; bytes consumed (0: none).

        Taken only when nothing is pending (no buffered or flushed partial line, no traceback held)
        and the lines are ordinary: valid UTF-8, no CR, no BOM at a file start, none over the line
        cap, no traceback header. Anything else goes through the line-by-line path, unchanged.
        """
        if (not self._blocks or tf.buf or tf.overflow or tf.cont
                or (tf.joiner is not None and tf.joiner.mode is not None)):
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
        if len(out) + count > stop or (tf.line_start == 0 and tf.pos == 0 and region.startswith(BOM)):
            return 0
        if len(region) > self._max_line and max(map(len, region.split(b"\n"))) > self._max_line:
            return 0
        try:
            region.decode("utf-8")
        except UnicodeDecodeError:
            return 0
        out.append(Block(source=self.name, data=region, lines=count, at=now, path=tf.path))
        tf.pos += end
        tf.line_start = tf.pos
        self.stats["bytes"] += end
        self.stats["lines"] += count
        return end

    def _feed(self, tf: _TrackedFile, data: bytes, now: float, out: list[Any], stop: int) -> bool:
        """Turn ``data`` (read at tf.pos) into lines; False when the per-poll line cap stopped it.

        With ``blocks``, runs of ordinary lines go out as Blocks and the line-by-line path takes
        a few lines at a time around anything special (a traceback, a CR, a long line), then the
        fast path is tried again.
        """
        while True:
            taken = self._fast(tf, data, now, out, stop)
            if taken:
                data = data[taken:]
                if not data:
                    return True
            outcome = self._lines(tf, data, now, out, stop, self._slow_lines(tf) if self._blocks else None)
            if outcome is not None:
                return outcome
            data = data[tf.pos - self._fed_from:]

    @staticmethod
    def _slow_lines(tf: _TrackedFile) -> int:
        """Lines the line-by-line path takes before the fast path is tried again.

        One when all that kept the fast path off is the head of a line split across two reads
        (every read that ends mid-line leaves one): the rest of the read can go as a Block.
        """
        idle = tf.joiner is None or tf.joiner.mode is None
        return 1 if tf.buf and not tf.overflow and not tf.cont and idle else SLOW_LINES

    def _lines(self, tf: _TrackedFile, data: bytes, now: float, out: list[Any], stop: int,
               limit: int | None) -> bool | None:
        """The line-by-line path; None when ``limit`` lines were taken and data is left for the fast path."""
        base, start = tf.pos, 0
        self._fed_from = base
        taken = 0
        while (nl := data.find(b"\n", start)) >= 0:
            raw = bytes(tf.buf) if tf.overflow else (bytes(tf.buf) + data[start:nl] if tf.buf else data[start:nl])
            truncated = tf.overflow
            tf.buf.clear()
            tf.overflow = False
            self._emit(tf, raw, base + nl + 1, now, out, partial=False, truncated=truncated)
            start = nl + 1
            taken += 1
            if len(out) >= stop:
                tf.pos = base + start  # the rest of data is read again next poll
                self.stats["bytes"] += start
                return False
            if limit is not None and taken >= limit and start < len(data):
                tf.pos = base + start
                self.stats["bytes"] += start
                return None
        tf.pos = base + len(data)
        self.stats["bytes"] += len(data)
        room = self._max_line - len(tf.buf)
        if len(data) - start > room:  # an over-long line: keep its head, drop the rest
            tf.buf += data[start : start + room]
            tf.overflow = True
        else:
            tf.buf += data[start:]
        return True

    def _emit(self, tf: _TrackedFile, raw: bytes, end: int, now: float, out: list[Line], *,
              partial: bool, truncated: bool) -> None:
        """Consume the line ending at ``end`` and append it to ``out`` (an empty rest of a flushed line is not)."""
        if tf.line_start == 0 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if len(raw) > self._max_line:
            raw, truncated = raw[: self._max_line], True
        if truncated:
            raw = _utf8_cut(raw)
        elif raw.endswith(b"\r"):
            raw = raw[:-1]
        empty_rest = not raw and (partial or tf.cont)
        piece_start, piece_cont = tf.line_start, tf.cont
        tf.line_start, tf.cont = end, partial
        if empty_rest:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.stats["decode_errors"] += 1
            text = raw.decode("utf-8", errors="replace")
        piece = _Piece(text, truncated, now, piece_start, piece_cont)
        if tf.joiner is None:
            self._out(tf, [piece], out, partial=partial)
        elif partial:  # an unterminated line is never part of a traceback: it ends one
            self._out(tf, tf.joiner.flush(), out)
            self._out(tf, [piece], out, partial=True)
        else:
            self._out(tf, tf.joiner.feed(piece), out)

    def _out(self, tf: _TrackedFile, pieces: list[_Piece], out: list[Line], *, partial: bool = False) -> None:
        for piece in pieces:
            out.append(Line(source=self.name, text=piece.text, at=piece.at, path=tf.path, partial=partial,
                            truncated=piece.truncated))
            self.stats["lines"] += 1
            self.stats["truncated"] += piece.truncated
            self.stats["partial_flushes"] += partial
            self.stats["tracebacks"] += piece.lines > 1
            self.stats["tracebacks_truncated"] += piece.capped
