"""Where each container log source stands, and what a re-attach skips as read before.

Position (``state_dir/container-logs.json``, one entry per source, rewritten
atomically after every batch): the container id, the engine timestamp (epoch
ns) of the last line delivered, how many lines delivered carried exactly that
timestamp, and the source's start mark. A re-attach to the same container asks
``since`` one second before that timestamp and skips, in log order, every line
until the ``count``-th line at that timestamp; the first line with a later
timestamp ends the skipping in any case (the resume point was lost upstream,
e.g. a rotated log), so the rule can repeat lines but never drops one. A
different container id (re-created) skips nothing: all its lines are new. The
first look of a source with no position decides where it starts, as files do:
a container that exists starts at its end (the *mark*: our clock's time, asked
as an exact ``since``, which the engine compares with its nanosecond times);
one that does not exist yet is read from its beginning when it appears. While
the last line delivered is in the same (Podman: whole) second as the mark, the
lines of that second before the mark were never read, so they are not in the
count: the re-attach then asks ``since`` the mark again, which gives back the
same lines the count is about.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from suture.engine.backup import atomic_write

from .log_records import NS

log = logging.getLogger(__name__)

KEEP_DIGESTS = 32  # lines at the last timestamp a position recognises by content


def digest(text: str) -> str:
    """A line's short content digest, to recognise it when it is read again."""
    return hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=5).hexdigest()



@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """Where a container source stands."""

    container: str  # the configured name; a position taken for another name is not used
    id: str | None  # the container it was taken in; None: not seen yet (read it from its beginning)
    ns: int  # engine time of the last line delivered (epoch ns); 0: none yet
    count: int  # lines delivered carrying exactly ``ns``
    mark: int = 0  # where a new source started (epoch ns, our clock); 0: at the container's beginning
    lines: tuple[str, ...] = ()  # digests of the last (up to KEEP_DIGESTS) lines delivered at ``ns``, in order

    def since(self) -> int | float | None:
        """The ``since`` to ask for a re-attach.

        A second before the last line's time (Podman's times are whole seconds, and its
        ``since`` is strict), unless the source started inside that second: lines of it
        before the mark were never read nor counted, so the mark itself, exactly, is asked.
        """
        if self.count == 0 or self.mark > self.ns:
            return self.mark / NS if self.mark > 0 else None
        return max(self.ns // NS - 1, 1)

    def after(self, container_id: str, ns: int | None, text: str = "") -> Position:
        """The position once a line ``text`` with engine time ``ns`` of ``container_id`` is delivered."""
        if ns is None:
            return self  # no timestamp: nothing to resume by (the engine always sends one with timestamps=1)
        line = digest(text)
        if container_id == self.id and ns == self.ns:
            return replace(self, count=self.count + 1, lines=(*self.lines, line)[-KEEP_DIGESTS:])
        mark = self.mark if container_id == self.id else 0  # a new container: all of it is new
        return Position(container=self.container, id=container_id, ns=ns, count=1, mark=mark, lines=(line,))

    @classmethod
    def parse(cls, doc: Any) -> Position:
        ok = (
            isinstance(doc, dict)
            and isinstance(doc.get("container"), str)
            and (doc.get("id") is None or isinstance(doc.get("id"), str))
            and all(type(doc.get(k, 0)) is int and doc.get(k, 0) >= 0 for k in ("ns", "count", "mark"))
        )
        lines: list[str] = doc.get("lines", []) if ok else []
        ok = ok and isinstance(lines, list) and all(isinstance(x, str) and len(x) <= 16 for x in lines)
        if not ok or "ns" not in doc or "count" not in doc or len(lines) > min(doc["count"], KEEP_DIGESTS):
            raise ValueError(f"bad container log position {doc!r:.200}")
        return cls(container=doc["container"], id=doc["id"], ns=doc["ns"], count=doc["count"],
                   mark=doc.get("mark", 0), lines=tuple(lines))


class LogPositions:
    """Every container source's position, one JSON file written atomically; safe from several threads.

    A corrupt file is renamed to ``<name>.corrupt`` and counted in ``corrupt``: its
    sources start as if new (at the end of a container that exists).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.corrupt = 0
        self._lock = threading.Lock()
        self._items: dict[str, Position] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
            items = {name: Position.parse(entry) for name, entry in doc["sources"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.corrupt += 1
            log.error(
                "container log positions %s unreadable (%s); kept as .corrupt, sources start afresh", self.path, exc
            )
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_name(self.path.name + ".corrupt"))
            return
        self._items = items

    def get(self, source: str) -> Position | None:
        with self._lock:
            return self._items.get(source)

    def set(self, source: str, position: Position) -> None:
        with self._lock:
            self._items[source] = position

    def save(self) -> None:
        with self._lock:
            doc = {"version": 1, "sources": {name: asdict(p) for name, p in sorted(self._items.items())}}
            # durable=False: rewritten after every batch; the rename survives a kill, not a power cut
            atomic_write(self.path, json.dumps(doc, indent=1).encode(), durable=False, trusted_folder=True)


@dataclass(slots=True)
class SeenBefore:
    """Skips, in log order, what a position says was delivered: its ``count`` lines at ``ns``.

    The lines at ``ns`` whose digests the position keeps are matched by content, in order
    (what was delivered is a subsequence of what the engine gives again), so a line the
    first stream skipped is delivered now instead of being counted as read; lines before
    those, if more than KEEP_DIGESTS were delivered at ``ns``, are skipped by count.
    """

    ns: int
    count: int
    lines: tuple[str, ...] = ()
    seen: int = 0  # lines at ns taken as read
    done: bool = False

    def skip(self, ns: int | None, text: str = "") -> bool:
        if self.done:
            return False
        if ns is not None and ns > self.ns:
            self.done = True  # past the resume point (lines at it were lost upstream): deliver from here
            return False
        if ns != self.ns:
            return True  # before the resume point
        by_count = self.count - len(self.lines)
        if self.seen < by_count or digest(text) == self.lines[self.seen - by_count]:
            self.seen += 1
        else:
            return False  # not what was delivered next: a line the earlier stream never gave
        self.done = self.seen >= self.count
        return True
