"""Wait until something changes in a few folders: inotify where the kernel has it, a plain timeout elsewhere.

The tailer's one question is "has anything happened where my files live?"; it then reads every
source itself, so a `Watcher` says *that* something changed, never what. ``wait`` blocks in
poll(2) on the inotify descriptor, so an idle watcher costs no CPU at all (a watcher that wakes
every few milliseconds to look costs ~2% of a core at a 5 ms step), and returns at the first
event: events that pile up while the caller reads come back as one more wake-up, not one each.

What it copes with, so that the caller's periodic rescan is only a safety net:

- a folder that does not exist yet, or is deleted: its nearest existing ancestor is watched for
  the next name on the path, and the folder is watched again as soon as it (re)appears;
- a folder renamed over, or replaced: the parent's event re-arms the watches; a swap no event
  shows (a symlink higher up the path) is found on the next quiet timeout, which compares each
  folder's (device, inode) with the one watched;
- sub-folders, watched recursively like watchfiles does; one created later is added at once;
- symlinks in a watched folder (a ConfigMap's ``..data``, Kubernetes' ``/var/log/containers``):
  the folder they point into is watched too, and a link created or swapped re-arms;
- the kernel's queue overflowing (IN_Q_OVERFLOW: events were lost): reported as a change, and
  every watch re-armed;
- no inotify (not Linux, or the per-user instance limit reached): ``wait`` sleeps out its timeout
  and returns False, and the caller's rescan is the only way anything is noticed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger("suture")

try:
    from inotify_simple import INotify
except ImportError:  # not a POSIX system (termios, fcntl)
    INotify = None

# <sys/inotify.h>: the kernel's ABI, the same everywhere inotify exists
IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR, IN_ISDIR = 0x2000, 0x4000, 0x8000, 0x1000000, 0x40000000

_ARRIVE = IN_CREATE | IN_MOVED_TO
_LEAVE = IN_DELETE | IN_MOVED_FROM
_SELF = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED  # the watched folder itself is gone or moved
# in a watched folder, anything that can mean new lines, a new file or one gone (not IN_CLOSE_WRITE:
# a close adds no data, and a writer that opens and closes per line would double the events)
TREE_MASK = IN_MODIFY | IN_ATTRIB | _ARRIVE | _LEAVE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
# above a watched folder, only names arriving and leaving: a busy /var/log's writes never wake us
ANCHOR_MASK = _ARRIVE | _LEAVE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR

Key = tuple[int, int]  # (st_dev, st_ino) of a folder
SETTLE_MAX = 1.0  # seconds a wait(settle=...) waits at most for the folders to fall quiet


@dataclass(slots=True)
class _Watch:
    """One watched folder: what its events mean."""

    path: Path
    tree: bool = False  # every event in it is a change
    names: set[str] = field(default_factory=set)  # names on the way to a watched folder: they re-arm
    links: set[str] = field(default_factory=set)  # symlinks in it that were followed: they re-arm


class Watcher:
    """Tell when something changes in ``dirs`` (recursively); see the module docstring.

    One thread calls ``wait``; any thread may call ``close``, which ends a ``wait`` in progress.
    ``inotify=False`` forces the fallback (timeout only), as on a system without inotify.
    """

    def __init__(self, dirs: Iterable[str | os.PathLike[str]], *, recursive: bool = True,
                 inotify: bool = True) -> None:
        self.dirs: tuple[Path, ...] = tuple(dict.fromkeys(Path(os.path.abspath(d)) for d in dirs))
        self.recursive = recursive
        self.overflows = 0  # times the kernel's queue overflowed (each reported as a change)
        self._closed = False
        self._closing = threading.Lock()
        self._waiting = threading.Lock()  # held by wait(); close() takes it before closing descriptors
        self._woken = threading.Event()  # the fallback's wait
        self._watches: dict[int, _Watch] = {}  # by watch descriptor
        self._seen: dict[Path, Key | None] = {}  # each folder's identity when last armed
        self._out_of_watches = False
        self._inotify: Any = _open_inotify() if inotify else None
        self._wake = -1
        if self._inotify is not None:
            self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self._poll = select.poll()
            self._poll.register(self._inotify.fileno(), select.POLLIN)
            self._poll.register(self._wake, select.POLLIN)
            self._arm()

    @property
    def native(self) -> bool:
        """True when the kernel tells us of changes (inotify); False when ``wait`` only times out."""
        return self._inotify is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def wait(self, timeout: float | None = None, *, settle: float = 0.0) -> bool:
        """Block until something changes (True) or ``timeout`` seconds pass quietly (False, also once closed).

        Returns at the first relevant event, having read every event queued by then; with ``settle``,
        only once the folders have been quiet that long after it (at most ``SETTLE_MAX`` s more), so
        that a file being written is read whole (a playbook saved in place: truncate, then write).
        """
        with self._waiting:
            if self._closed:
                return False
            if self._inotify is None:
                self._woken.wait(timeout)
                return False
            changed = self._wait(None if timeout is None else time.monotonic() + timeout)
            if changed and settle > 0:
                until = time.monotonic() + SETTLE_MAX
                while not self._closed and self._wait(min(until, time.monotonic() + settle)):
                    if time.monotonic() >= until:
                        break
            return changed and not self._closed

    def _wait(self, deadline: float | None) -> bool:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = self._poll.poll(None if left is None else math.ceil(left * 1000))
            if self._closed:
                return False
            if ready and self._absorb(self._inotify.read(timeout=0)):
                return True
            if not ready or (deadline is not None and time.monotonic() >= deadline):
                return self._check_moved()

    def close_on(self, event: threading.Event, *, name: str = "suture-watch-stop") -> None:
        """Close this watcher once ``event`` is set, from a thread of its own.

        A stop set by a signal handler cannot interrupt a blocking ``wait``; closing the watcher
        does. The thread also looks once a minute whether the watcher was closed some other way
        (a loop that failed and is restarted with a new one), and ends then.
        """

        def close_when_set() -> None:
            while not event.wait(60.0):
                if self._closed:
                    return
            self.close()

        threading.Thread(target=close_when_set, name=name, daemon=True).start()

    def close(self) -> None:
        """Stop watching and free the descriptors; a ``wait`` in another thread returns False at once.

        Idempotent. Not from a signal handler that may interrupt the thread in ``wait``.
        """
        with self._closing:
            if self._closed:
                return
            self._closed = True
        self._woken.set()
        if self._inotify is None:
            return
        os.eventfd_write(self._wake, 1)
        with self._waiting:
            self._inotify.close()
            os.close(self._wake)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- events --

    def _absorb(self, events: Sequence[Any]) -> bool:
        """Whether ``events`` mean a change; re-arm first if they changed what should be watched."""
        changed = rearm = False
        for event in events:
            if event.mask & IN_Q_OVERFLOW:
                self.overflows += 1
                changed = rearm = True
                continue
            watch = self._watches.get(event.wd)
            if watch is None:
                continue  # the last events of a watch removed since
            if event.mask & _SELF or event.name in watch.names:
                changed = rearm = True
            elif watch.tree:
                changed = True
                rearm = rearm or self._reshapes(watch, event.name, event.mask)
        if rearm:
            self._arm()
        return changed

    def _reshapes(self, watch: _Watch, name: str, mask: int) -> bool:
        """Whether an event in a watched folder changes which folders should be watched."""
        if mask & IN_ISDIR:
            return self.recursive and bool(mask & (_ARRIVE | _LEAVE))
        if name in watch.links:
            return bool(mask & (_ARRIVE | _LEAVE))
        return bool(mask & _ARRIVE) and os.path.islink(watch.path / name)

    def _check_moved(self) -> bool:
        """On a quiet timeout: re-arm if a folder is not the one watched (a swap no event showed)."""
        if all(_key(root) == key for root, key in self._seen.items()):
            return False
        self._arm()
        return True

    # -- watches --

    def _arm(self) -> None:
        """Make the watches match the folders as they are now; cheap enough to redo after any reshaping."""
        wanted: dict[Key, _Watch] = {}
        self._seen = {}
        for root in self.dirs:
            key = self._seen[root] = _key(root)
            if key is not None:
                self._want_tree(wanted, root, key)
            anchor = _anchor(root)
            if anchor is not None and (anchor_key := _key(anchor[0])) is not None:
                _want(wanted, anchor[0], anchor_key).names.add(anchor[1])
        watches: dict[int, _Watch] = {}
        for watch in wanted.values():
            try:
                wd = self._inotify.add_watch(watch.path, TREE_MASK if watch.tree else ANCHOR_MASK)
            except OSError as exc:  # gone since the stat, not readable, or out of watches
                if exc.errno == errno.ENOSPC and not self._out_of_watches:
                    self._out_of_watches = True
                    log.warning("watch        out of inotify watches (fs.inotify.max_user_watches) at %s: "
                                "changes there are seen by the periodic rescan only", watch.path)
                continue
            watches[wd] = watch
        for wd in self._watches.keys() - watches.keys():
            with contextlib.suppress(OSError):  # the kernel removed it already (the folder was deleted)
                self._inotify.rm_watch(wd)
        self._watches = watches

    def _want_tree(self, wanted: dict[Key, _Watch], root: Path, key: Key) -> None:
        """``root`` and, if recursive, every folder under it (symlinks not descended), plus where links point."""
        visited: set[Key] = set()
        pending = [(root, key)]
        while pending:
            folder, key = pending.pop()
            if key in visited:
                continue
            visited.add(key)
            watch = _want(wanted, folder, key)
            watch.tree = True
            for entry in _entries(folder):
                try:
                    if entry.is_symlink():
                        watch.links.add(entry.name)
                        target = Path(os.path.realpath(entry.path))
                        into = target if target.is_dir() else target.parent
                        if (into_key := _key(into)) is not None:
                            _want(wanted, into, into_key).tree = True
                    elif self.recursive and entry.is_dir(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        pending.append((Path(entry.path), (st.st_dev, st.st_ino)))
                except OSError:
                    continue  # gone while we looked


class Pacer:
    """At most ``rate`` reads a second in the long run, ``burst`` of them at once.

    With inotify the tailer could read after every write, and each read has a fixed cost (a
    glob, a checkpoint save: ~1.5 ms of CPU here), so a writer flushing every 10 ms would cost
    ~15% of a core. Paced, a line after a quiet spell is still read at once (the bucket is full),
    while a steady stream is read in batches, ``1 / rate`` seconds apart.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, not {rate!r} and {burst!r}")
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def delay(self) -> float:
        """Take one read's token: the seconds to wait before that read (0.0 when one is at hand)."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate) - 1.0
        self._last = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


def _open_inotify() -> Any:
    if INotify is None:
        return None
    try:
        return INotify()
    except (OSError, AttributeError) as exc:  # EMFILE: fs.inotify.max_user_instances; AttributeError: no inotify in libc
        log.warning("watch        no inotify (%s): changes are seen by the periodic rescan only", exc)
        return None


def _want(wanted: dict[Key, _Watch], path: Path, key: Key) -> _Watch:
    if key not in wanted:
        wanted[key] = _Watch(path)
    return wanted[key]


def _key(path: Path) -> Key | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _anchor(path: Path) -> tuple[Path, str] | None:
    """The nearest existing folder above ``path``, and the name in it on the way down to ``path``."""
    child = path
    for parent in path.parents:
        if _key(parent) is not None:
            return parent, child.name
        child = parent
    return None


def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            yield from it
    except OSError:
        return
