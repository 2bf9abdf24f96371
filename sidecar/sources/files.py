"""Tail the log files a glob matches: every line once, across rotation, truncation and restarts.

Identity. A file is its (st_dev, st_ino) plus a fingerprint: the sha256 of its
first bytes (up to 256; how many is remembered, so a short file's fingerprint
grows with it). The fingerprinted bytes are re-checked whenever the file's size
or mtime changes. Never the path alone (rotation moves paths), never the inode
alone (a deleted file's inode is reused).

Rotation. Every poll re-expands the glob and stats every match. A tracked file
that no matching path points at any more (renamed away, deleted, moved out of
the glob) is *detached*: its fd stays open and it is drained through it, and it
is closed only once it has been neither detached nor grown for
``rotate_grace`` seconds (and holds no unfinished line). A file seen for the
first time is read from offset 0. A tracked file that shrank below the read
offset (copytruncate), or whose fingerprinted bytes changed
(truncate-then-grow), is read again from 0 and counted as a truncation.

Lines. Raw bytes are split on b"\\n"; each complete line is decoded as UTF-8
(errors replaced and counted); one trailing "\\r" and a BOM at offset 0 are
stripped. A line without its newline waits; after ``partial_flush_after``
seconds without growth it is emitted with partial=True and its bytes are
consumed (the rest becomes its own line when the newline comes; an empty rest
is dropped). A line longer than ``max_line_bytes`` keeps its first
max_line_bytes (cut at a UTF-8 boundary) and is flagged truncated; the rest is
read and dropped, never buffered.

Checkpoints. One JSON file shared by all sources, keyed by source name and
"dev:ino", holding the fingerprint, the offset just after the last committed
line, ``cont`` (the line at the offset continues a flushed partial line) and
the path. poll() never moves a checkpoint; commit() advances it over what
poll() returned, so a crash in between re-reads and never skips. A checkpoint
is used only if the file's fingerprint still matches. Start: a checkpointed
file resumes at its checkpoint; otherwise files present at the first poll of a
fresh store start at their end (at the start of an unfinished last line), and
every other file at 0. A checkpointed file no glob match points at on the first
poll is looked for by inode in its old folder (rotated while suture was down)
and drained from its checkpoint.
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

from .base import Line

log = logging.getLogger(__name__)

FP_BYTES = 256
BOM = b"\xef\xbb\xbf"
_GLOB_MAGIC = re.compile(r"[*?[]")
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO swapped in never blocks us

Key = tuple[int, int]  # (st_dev, st_ino)


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
class Mark:
    """One checkpoint: where to resume a file, and how to recognise it."""

    fp: str  # sha256 hex of the first fp_len bytes
    fp_len: int
    offset: int  # just after the last committed line
    cont: bool  # the line at offset continues a flushed partial line
    path: str  # where the file was last seen

    def matches(self, head: bytes) -> bool:
        return len(head) >= self.fp_len and _sha(head[: self.fp_len]) == self.fp

    @classmethod
    def parse(cls, doc: Any) -> Mark:
        ok = (isinstance(doc, dict) and isinstance(doc.get("fp"), str) and type(doc.get("fp_len")) is int
              and type(doc.get("offset")) is int and isinstance(doc.get("cont"), bool)
              and isinstance(doc.get("path"), str))
        if not ok or not 0 <= doc["fp_len"] <= FP_BYTES or doc["offset"] < 0:
            raise ValueError(f"bad checkpoint entry {doc!r:.200}")
        return cls(doc["fp"], doc["fp_len"], doc["offset"], doc["cont"], doc["path"])


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
        self._marks: dict[str, dict[str, Mark]] = {}
        self._changes = 0
        self._saved = 0
        self._fresh = not self.path.exists()
        if not self._fresh:
            self._load()

    @property
    def fresh(self) -> bool:
        """True when no (usable) checkpoint file existed at start."""
        return self._fresh

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
            if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("sources"), dict):
                raise ValueError("not a version 1 checkpoint file")
            self._marks = {str(src): {str(k): Mark.parse(v) for k, v in marks.items()}
                           for src, marks in doc["sources"].items()}
        except (ValueError, AttributeError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            self.corrupt += 1
            self._marks, self._fresh = {}, True
            log.error("checkpoint file %s is corrupt (%s); moved to %s, starting fresh", self.path, exc, aside)

    def get(self, source: str, key: str) -> Mark | None:
        with self._lock:
            return self._marks.get(source, {}).get(key)

    def entries(self, source: str) -> dict[str, Mark]:
        with self._lock:
            return dict(self._marks.get(source, {}))

    def put(self, source: str, key: str, mark: Mark) -> None:
        with self._lock:
            marks = self._marks.setdefault(source, {})
            if marks.get(key) != mark:
                marks[key] = mark
                self._changes += 1

    def drop(self, source: str, key: str) -> None:
        with self._lock:
            if self._marks.get(source, {}).pop(key, None) is not None:
                self._changes += 1

    def save(self) -> None:
        """Write the file atomically (mode 0600) if anything changed; on OSError the next save retries."""
        with self._save_lock:
            with self._lock:
                if self._changes == self._saved:
                    return
                changes = self._changes
                doc = {"version": 1, "sources": {src: {k: asdict(m) for k, m in marks.items()}
                                                 for src, marks in self._marks.items() if marks}}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(doc, indent=1, sort_keys=True).encode(), mode=0o600)
            with self._lock:
                self._saved = changes


class _TrackedFile:
    """One open file: identity, read position, and the unfinished line."""

    def __init__(self, path: str, fd: int, st: os.stat_result, head: bytes, start: int, cont: bool,
                 now: float) -> None:
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
        self.seen: tuple[int, int] = (-1, -1)  # (size, mtime_ns) at the last identity check
        self.grew_at = now
        self.detached_at: float | None = None
        self.at_eof = False

    def mark(self) -> Mark:
        return Mark(self.fp, self.fp_len, self.line_start, self.cont, self.path)


class FileSource:
    """Tails every file matching ``pattern`` (absolute; ``**`` allowed). See the module docstring."""

    def __init__(self, name: str, pattern: str, *, checkpoints: Checkpoints,
                 max_line_bytes: int = 65536, partial_flush_after: float = 5.0,
                 clock: Callable[[], float] = time.time, chunk_bytes: int = 1 << 16,
                 start_at_end: bool | None = None, rotate_grace: float = 2.0,
                 max_poll_bytes: int = 4 << 20, max_poll_lines: int = 1 << 16, max_files: int = 1024) -> None:
        if not os.path.isabs(pattern):
            raise ValueError(f"source {name}: file pattern must be absolute, got {pattern!r}")
        if min(max_line_bytes, chunk_bytes, max_poll_bytes, max_poll_lines, max_files) < 1:
            raise ValueError(f"source {name}: sizes and limits must be positive")
        self.name, self.pattern = name, pattern
        self._checkpoints = checkpoints
        self._max_line, self._flush_after, self._clock = max_line_bytes, partial_flush_after, clock
        self._chunk, self._start_at_end, self._grace = chunk_bytes, start_at_end, rotate_grace
        self._max_poll_bytes, self._max_poll_lines, self._max_files = max_poll_bytes, max_poll_lines, max_files
        self.stats: dict[str, int] = dict.fromkeys(
            ("lines", "bytes", "truncated", "decode_errors", "rotations", "truncations", "partial_flushes",
             "files", "deleted", "errors", "skipped_files"), 0)
        self.backlog = False  # the last poll stopped at a per-poll cap: poll again soon
        self._files: dict[Key, _TrackedFile] = {}
        self._gone: set[str] = set()  # checkpoint keys to drop at the next commit
        self._retired: dict[Key, Mark] = {}  # closed files, in case a match finds them again (bounded)
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
            if tf.detached_at is not None and tf.at_eof and not (tf.buf or tf.overflow) \
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
            start, cont = self._start_of(fd, st, head, path)
        except OSError:
            os.close(fd)
            self.stats["errors"] += 1
            return
        self._files[key] = _TrackedFile(path, fd, st, head, start, cont, now)

    def _start_of(self, fd: int, st: os.stat_result, head: bytes, path: str) -> tuple[int, bool]:
        key: Key = (st.st_dev, st.st_ino)
        mark = self._retired.pop(key, None) or self._checkpoints.get(self.name, _key_str(key))
        if mark is not None and mark.matches(head):
            if mark.offset <= st.st_size:
                return mark.offset, mark.cont
            self.stats["truncations"] += 1
            log.warning("%s: %s shrank below its checkpoint while stopped; reading it from 0", self.name, path)
            return 0, False
        if mark is not None:
            log.info("%s: %s reuses a checkpointed inode with other contents: a new file", self.name, path)
        at_end = self._checkpoints.fresh if self._start_at_end is None else self._start_at_end
        return (self._tail_start(fd, st.st_size), False) if self._first and at_end else (0, False)

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

    def _reopen_moved(self, key_s: str, mark: Mark, now: float) -> bool:
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
        tf = _TrackedFile(path, fd, st, head, mark.offset, mark.cont, now)
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
        st = os.fstat(tf.fd)
        if (st.st_size, st.st_mtime_ns) != tf.seen:
            tf.seen = (st.st_size, st.st_mtime_ns)
            self._check_identity(tf, st.st_size)
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
        elif (tf.buf or tf.overflow) and now - tf.grew_at >= self._flush_after:
            raw, truncated = bytes(tf.buf), tf.overflow
            tf.buf.clear()
            tf.overflow = False
            self._emit(tf, raw, tf.pos, now, out, partial=True, truncated=truncated)

    def _check_identity(self, tf: _TrackedFile, size: int) -> None:
        """Restart at 0 if the file shrank below what was read or its fingerprinted bytes changed."""
        head = os.pread(tf.fd, FP_BYTES, 0)
        if size < tf.pos:
            self._restart(tf, f"shrank from {tf.pos} to {size} bytes", head)
        elif len(head) < tf.fp_len or _sha(head[: tf.fp_len]) != tf.fp:
            self._restart(tf, "has new first bytes", head)
        elif len(head) > tf.fp_len:
            tf.fp, tf.fp_len = _sha(head), len(head)

    def _restart(self, tf: _TrackedFile, why: str, head: bytes) -> None:
        self.stats["truncations"] += 1
        log.warning("%s: %s %s (truncated); reading it from 0, lines written just before are lost",
                    self.name, tf.path, why)
        tf.fp, tf.fp_len = _sha(head), len(head)
        tf.pos = tf.line_start = 0
        tf.buf.clear()
        tf.overflow = tf.cont = False

    def _feed(self, tf: _TrackedFile, data: bytes, now: float, out: list[Line], stop: int) -> bool:
        """Turn ``data`` (read at tf.pos) into lines; False when the per-poll line cap stopped it."""
        base, start = tf.pos, 0
        while (nl := data.find(b"\n", start)) >= 0:
            raw = bytes(tf.buf) if tf.overflow else (bytes(tf.buf) + data[start:nl] if tf.buf else data[start:nl])
            truncated = tf.overflow
            tf.buf.clear()
            tf.overflow = False
            self._emit(tf, raw, base + nl + 1, now, out, partial=False, truncated=truncated)
            start = nl + 1
            if len(out) >= stop:
                tf.pos = base + start  # the rest of data is read again next poll
                self.stats["bytes"] += start
                return False
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
        tf.line_start, tf.cont = end, partial
        if empty_rest:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.stats["decode_errors"] += 1
            text = raw.decode("utf-8", errors="replace")
        out.append(Line(source=self.name, text=text, at=now, path=tf.path, partial=partial, truncated=truncated))
        self.stats["lines"] += 1
        self.stats["truncated"] += truncated
        self.stats["partial_flushes"] += partial
