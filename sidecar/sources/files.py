"""Tail the log files a glob matches: every line once, across rotation, truncation and restarts.

A :class:`FileSource` finds the files; each is a :class:`~.followed.FollowedFile`
(identity by inode and fingerprint, lines, the fast path; see ``sidecar.sources.followed``),
its tracebacks joined by a :class:`~.tracebacks.Joiner` and its position kept in the
:class:`~.checkpoints.Checkpoints` every source shares.

Rotation. Every poll re-expands the glob and stats every match. A tracked file
that no matching path points at any more (renamed away, deleted, moved out of
the glob) is *detached*: its fd stays open and it is drained through it, and it
is closed only once it has been neither detached nor grown for
``rotate_grace`` seconds (and holds no unfinished line or traceback). A file seen for the
first time is read from offset 0.

Tracebacks (``multiline="python"``, the default). Whether a chained traceback
follows is only known from the next line, so a complete traceback waits for it,
or for ``multiline_flush_after`` seconds without growth (an unfinished one for
``partial_flush_after``). Held lines are not committed: the checkpoint stays at
the traceback's first line, so a crash reads it whole again. At
``max_traceback_lines`` lines or ``max_line_bytes`` bytes of joined text it is
emitted at once, flagged truncated, and the rest of it is read and dropped (the
checkpoint records that state, ``skip``, so a restart keeps dropping it instead
of emitting its tail as lines).

Checkpoints. poll() never moves a checkpoint; commit() advances it over what
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
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

from .base import Line
from .checkpoints import Checkpoints, Resume
from .followed import FollowedFile, Framing, Key, key_str, open_file
from .tracebacks import Joiner

__all__ = ["Checkpoints", "FileSource", "Resume"]

log = logging.getLogger(__name__)

_GLOB_MAGIC = re.compile(r"[*?[]")
MULTILINE = (None, "python")


def _nlink(fd: int) -> int:
    try:
        return os.fstat(fd).st_nlink
    except OSError:
        return 0


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
        self._max_line, self._clock = max_line_bytes, clock
        self._start_at_end, self._grace, self._max_files = start_at_end, rotate_grace, max_files
        self._multiline, self._max_tb = multiline, max_traceback_lines
        self._framing = Framing(source=name, max_line=max_line_bytes, flush_after=partial_flush_after,
                                multiline_after=multiline_flush_after, chunk=chunk_bytes,
                                max_poll_bytes=max_poll_bytes, max_poll_lines=max_poll_lines,
                                blocks=blocks)  # blocks: hand runs of ordinary lines over as one Block
        self.stats: dict[str, int] = dict.fromkeys(
            ("lines", "bytes", "truncated", "decode_errors", "rotations", "truncations", "partial_flushes",
             "files", "deleted", "errors", "skipped_files", "tracebacks", "tracebacks_truncated"), 0)
        self.backlog = False  # the last poll stopped at a per-poll cap: poll again soon
        self._files: dict[Key, FollowedFile] = {}
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
                tf.read(self._clock, out)
            except OSError as exc:
                self.stats["errors"] += 1
                log.warning("%s: reading %s failed: %s", self.name, tf.path, exc)
                continue
            self.backlog |= not tf.at_eof
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
            fd, st, head = open_file(path)
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
        self._files[key] = self._follow(path, fd, st, head, start, cont, now, skip)

    def _follow(self, path: str, fd: int, st: os.stat_result, head: bytes, start: int, cont: bool, now: float,
                skip: str) -> FollowedFile:
        joiner = None if self._multiline is None else Joiner(self._max_tb, self._max_line, skip)
        return FollowedFile(path, fd, st, head, start, cont, now, joiner, framing=self._framing, stats=self.stats)

    def _start_of(self, fd: int, st: os.stat_result, head: bytes, path: str) -> tuple[int, bool, str]:
        key: Key = (st.st_dev, st.st_ino)
        retired = self._retired.pop(key, None)
        mark = retired or self._checkpoints.get(self.name, key_str(key))
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
        known = {key_str(key) for key in found}
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
            fd, st, head = open_file(path)
        except (OSError, ValueError, IndexError):
            return False
        if key_str((st.st_dev, st.st_ino)) != key_s or not mark.matches(head) or mark.offset > st.st_size:
            os.close(fd)
            return False
        tf = self._follow(path, fd, st, head, mark.offset, mark.cont, now, mark.skip)
        tf.detached_at = now
        self._files[tf.key] = tf
        self.stats["rotations"] += 1
        log.info("%s: %s was rotated to %s while stopped; draining it", self.name, mark.path, path)
        return True

    def _retire(self, tf: FollowedFile) -> None:
        os.close(tf.fd)
        del self._files[tf.key]
        self._gone.add(tf.key_s)
        self._retired[tf.key] = tf.mark()
        if len(self._retired) > self._max_files:
            del self._retired[next(iter(self._retired))]
        log.info("%s: finished %s at offset %d", self.name, tf.path, tf.pos)
