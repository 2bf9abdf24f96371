"""Follow a container's logs through the Docker Engine API: every line once, across restarts and re-creation.

A ``sources: {worker: {container: NAME}}`` entry becomes a
:class:`ContainerLogSource`. ``batches(stop)`` yields lists of
:class:`~.base.Line` (stdout and stderr interleaved as the engine stored them,
``path="container:NAME"``) until ``stop`` is set; ``commit()`` records the
position after the last batch handed out, once the core has taken it (SAFETY
"Seeing" 2: a position never moves over lines not yet observed). Nothing the
engine does raises out of ``batches``: a missing container, a stopped one, an
engine that refuses or hangs up all become a wait on ``stop`` (backoff from
``retry[0]`` doubling to ``retry[1]``) and a ``stats.state`` saying why.

Attaching. ``GET /containers/{id}/logs?follow=1&timestamps=1&since=...``: the
stream ends when the container stops (or is removed). Then the container is
inspected again: a stopped container that was not yet read since it stopped is
attached once more (that read returns its backlog and ends) so lines written
between the stream's end and the stop are not lost; after that it is only
watched, until its ``(Id, State.StartedAt)`` changes: a restart (same id, new
start time) or a re-creation under the same name (new id) is attached again.
A stream is not trusted to end: one quiet for ``WATCH`` seconds has its
container inspected, and is closed if the container stopped, restarted or went
away since the attach (Podman now and then misses an exit and keeps the stream
open); the next attach reads again from the position, so nothing it held back
is lost.

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

What Podman's compat API (4.3, measured here) does differently from Docker:

- ``timestamps=1`` prints RFC 3339 to the *second* (``2026-11-26T04:02:55Z``;
  Docker prints nanoseconds), so many lines share a timestamp: hence the count
  in the position, and the one-second margin on ``since``.
- ``since`` is nevertheless compared with the stored nanosecond times, and
  strictly (a line exactly at ``since`` is left out; Docker includes it): the
  margin covers that too.
- Long lines come as 8 KiB records (Docker: 16 KiB), and a line written in two
  ``write`` calls (``printf a; sleep; echo b``) comes as two records, each with
  its own timestamp, the newline only in the last: both are glued as above.
- ``follow=1`` on a stopped container returns the backlog and ends, as Docker
  does; on a created, never started one it returns nothing and ends. A stop
  (hence a restart) ends the stream, as with Docker; a removal too.
- Nothing here relies on ``tail``; zones other than ``Z`` (``+01:00``, a
  service running in a local zone) are parsed too, though only ``Z`` was seen.

TTY containers (``tty: true``) give one unframed byte stream: records are
split at newlines, so a piece of a line (no newline) followed by the next
record leaves that record's engine timestamp inside the text. Docker SDK
errors are described by :func:`.containers.describe_engine_error`.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from suture.engine.backup import atomic_write

from .base import Line
from .containers import ClientSource, client_errors, describe_engine_error, engine_errors, resolve_client, state_of

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

log = logging.getLogger(__name__)

NS = 1_000_000_000
RETRY = (0.5, 10.0)  # seconds: first wait after a failure or a stop, and the most the wait doubles to
MAX_BATCH = 512  # lines handed to the core at once
PUMP_CHUNKS = 256  # stream records buffered between the reading thread and the follower
WATCH = 2.0  # seconds: a stream quiet this long has its container looked at (did the engine miss a stop?)
QUICK_END = 1.0  # seconds: a stream of a running container that ends sooner, empty, is a failure (backoff)
_TS = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ")
_END = object()
KEEP_DIGESTS = 32  # lines at the last timestamp a position recognises by content


def digest(text: str) -> str:
    """A line's short content digest, to recognise it when it is read again."""
    return hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=5).hexdigest()


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


# --- positions ----------------------------------------------------------------------------


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


# --- records into lines -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    ns: int | None
    text: str
    truncated: bool
    partial: bool


class _Parser:
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

    def feed(self, chunk: bytes) -> list[_Entry]:
        if not self.tty:
            ns, data = engine_time(chunk)
            return self._record(ns, data)
        self._raw += chunk
        out: list[_Entry] = []
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

    def end(self) -> list[_Entry]:
        """The stream ended with the container: an unfinished line is delivered, flagged partial."""
        out: list[_Entry] = []
        if self._raw:
            out += self._raw_record(bytes(self._raw))
            self._raw.clear()
        if self._open:
            out.append(self._finish(partial=True))
        return out

    def _raw_record(self, piece: bytes) -> list[_Entry]:
        ns, data = engine_time(piece) if self._raw_start else (None, piece)
        return self._record(ns, data)

    def _record(self, ns: int | None, data: bytes) -> list[_Entry]:
        out: list[_Entry] = []
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

    def _finish(self, *, partial: bool) -> _Entry:
        raw = bytes(self._line)
        if not self._truncated and not partial and raw.endswith(b"\r"):
            raw = raw[:-1]
        # a cut line must not end in half a character: the incremental decoder holds it back
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(raw, final=not self._truncated)
        entry = _Entry(self._ns, text, self._truncated, partial)
        self._line.clear()
        self._ns, self._open, self._truncated = None, False, False
        return entry


@dataclass(slots=True)
class _Resume:
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


class _Pump:
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
            self._offer(_END)

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


# --- the follower -------------------------------------------------------------------------


@dataclass(slots=True)
class LogStats:
    """What a follower is doing, for status pages and tests (read from any thread)."""

    state: str = "starting"  # starting | following (a stream is open) | stopped | missing | error
    detail: str = ""
    container_id: str | None = None
    attaches: int = 0
    lines: int = 0
    bytes: int = 0
    duplicates: int = 0  # lines skipped at a re-attach because they were delivered before
    truncated: int = 0
    partial: int = 0
    errors: int = 0
    retry_in: float = 0.0
    changed_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Target:
    container: Container
    id: str
    running: bool
    key: tuple[str, str]  # (Id, State.StartedAt): changes at a restart or a re-creation
    tty: bool


class ContainerLogSource:
    """One ``container`` source: ``for lines in src.batches(stop): hand over; src.commit()``."""

    def __init__(
        self,
        name: str,
        container: str,
        client: ClientSource,
        *,
        positions: LogPositions,
        clock: Callable[[], float] = time.time,
        max_line_bytes: int = 64 * 1024,
        retry: tuple[float, float] = RETRY,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.name = name
        self.container = container
        self.path = f"container:{container}"
        self.positions = positions
        self.clock = clock
        self.max_line_bytes = max_line_bytes
        self.retry = retry
        self.max_batch = max_batch
        self.stats = LogStats()
        self._client_source = client
        self._client: docker.DockerClient | None = None
        saved = positions.get(name)
        self._committed = saved if saved is not None and saved.container == container else None
        self._handed = self._committed  # the position after the last batch handed out
        self._drained: tuple[str, str] | None = None  # the stopped (Id, StartedAt) already read to its end

    @property
    def state(self) -> str:
        return self.stats.state

    def counters(self) -> dict[str, int]:
        """The counters ``/metrics`` and the dashboard show for every source, by the file tailer's names."""
        st = self.stats
        return {"lines": st.lines, "bytes": st.bytes, "truncated": st.truncated, "partial_flushes": st.partial,
                "errors": st.errors, "attaches": st.attaches, "duplicates": st.duplicates,
                "files": int(st.state == "following")}

    def commit(self) -> None:
        """Persist the position after the last batch handed out (call once the core has taken it)."""
        if self._handed is not None and self._handed != self._committed:
            self.positions.set(self.name, self._handed)
            self.positions.save()
            self._committed = self._handed

    def batches(self, stop: threading.Event) -> Generator[list[Line], None, None]:
        """Lines as they come, in batches, until ``stop`` is set; waits and retries, never raises for the engine."""
        wait = self.retry[0]
        while not stop.is_set():
            target = self._look()
            if target is None or (not target.running and target.key == self._drained):
                if target is not None:
                    self._set("stopped", "not running; waiting for it to start", container_id=target.id)
                self.stats.retry_in = wait
                if stop.wait(wait):
                    return
                wait = min(wait * 2, self.retry[1])
                continue
            started, before = time.monotonic(), self.stats.lines
            read = yield from self._attach(target, stop)
            if read and not target.running:
                self._drained = target.key
            quick = time.monotonic() - started < QUICK_END and self.stats.lines == before
            if not read or (target.running and quick):
                # a failed attach, or a running container's stream that ended at once, empty: do not spin
                self.stats.retry_in = wait
                if stop.wait(wait):
                    return
                wait = min(wait * 2, self.retry[1])
            elif not quick:
                wait = self.retry[0]

    # -- looking and attaching --

    def _look(self) -> _Target | None:
        """The container now, or None (missing, or the engine failed) with the reason in ``stats``."""
        import docker.errors

        client = self._engine()
        if client is None:
            return None
        try:
            container = client.containers.get(self.container)
        except docker.errors.NotFound:
            self._first_look(None)
            self._set("missing", "no such container")
            return None
        except engine_errors() as exc:
            self._fail(exc)
            return None
        attrs = container.attrs
        state, _, _ = state_of(attrs)
        started = str((attrs.get("State") or {}).get("StartedAt") or "")
        self._first_look(container.id)
        return _Target(
            container=container,
            id=container.id,
            running=state in ("running", "unhealthy", "restarting"),
            key=(container.id, started),
            tty=bool((attrs.get("Config") or {}).get("Tty")),
        )

    def _engine(self) -> docker.DockerClient | None:
        if self._client is None:
            try:
                self._client = resolve_client(self._client_source)
            except client_errors() as exc:
                self._fail(exc)
                return None
        return self._client

    def _first_look(self, container_id: str | None) -> None:
        """A source with no position starts at the end of a container that exists, else at its beginning."""
        if self._handed is not None:
            return
        mark = int(self.clock() * NS) if container_id is not None else 0
        self._handed = Position(container=self.container, id=container_id, ns=0, count=0, mark=mark)
        self.commit()  # no line is passed over: only where reading starts is recorded

    def _attach(self, target: _Target, stop: threading.Event) -> Generator[list[Line], None, bool]:
        """Read one log stream to its end (or ``stop``); True if it was read without an engine error."""
        position = self._handed
        assert position is not None
        resume = (_Resume(position.ns, position.count, position.lines)
                  if position.id == target.id and position.count else None)
        try:
            stream = target.container.logs(
                stdout=True, stderr=True, stream=True, follow=True, timestamps=True, since=position.since()
            )
        except engine_errors() as exc:
            self._fail(exc)
            return False
        self.stats.attaches += 1
        self.stats.retry_in = 0.0
        log.debug("container logs %s: attach %s (running=%s) since=%r resume=%r", self.name, target.id[:12],
                  target.running, position.since(), resume)
        # following: a stream is open (one on a stopped container gives its last lines and ends; one on a
        # container created but not yet started goes on once it starts)
        detail = "attached" if target.running else "attached while not running: reading its last lines"
        self._set("following", detail, container_id=target.id)
        pump = _Pump(stream, self.name)
        parser = _Parser(tty=target.tty, cap=self.max_line_bytes)
        try:
            yield from self._drain(pump, parser, resume, target, stop)
        finally:
            pump.close()
        if pump.error is not None:
            self._fail(pump.error)
        return pump.error is None

    def _drain(
        self, pump: _Pump, parser: _Parser, resume: _Resume | None, target: _Target, stop: threading.Event
    ) -> Iterator[list[Line]]:
        ended = False
        quiet_since = time.monotonic()
        while not ended and not stop.is_set():
            try:
                chunk = pump.queue.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() - quiet_since >= WATCH:
                    quiet_since = time.monotonic()
                    # a stopped container's stream gives its backlog and ends; one that stays open missed the
                    # end, as a running container's does that missed a stop: what it did not give is read
                    # again from the position at the next attach
                    if not target.running or self._moved_on(target):
                        return
                continue
            quiet_since = time.monotonic()
            entries: list[_Entry] = []
            while True:
                if chunk is _END:
                    log.debug("container logs %s: stream ended (error=%r)", self.name, pump.error)
                    ended = True
                    # An unfinished line is final only at the end of a stopped container's backlog. A running
                    # container's stream that ends (a stop, a restart) is not trusted with it: Podman was seen
                    # ending one with a line cut short, after skipping the line before it. It is read again,
                    # from the position, by the next attach: that of the stopped container, or of its new run.
                    if pump.error is None and not target.running:
                        entries += parser.end()
                    break
                entries += parser.feed(chunk)
                if len(entries) >= self.max_batch:
                    break
                try:
                    chunk = pump.queue.get_nowait()
                except queue.Empty:
                    break
            lines = self._lines(entries, resume, target.id)
            if lines:
                yield lines

    def _moved_on(self, target: _Target) -> bool:
        """True if the container a quiet stream follows stopped, restarted or is gone since the attach.

        The stream should have ended then, but Podman (4.3, seen here) now and then misses a
        container's exit and keeps the stream open with nothing more to say.
        """
        import docker.errors

        client = self._engine()
        if client is None:
            return False  # cannot tell: keep the stream
        try:
            attrs = client.api.inspect_container(target.id)
        except docker.errors.NotFound:
            moved = True
        except engine_errors():
            return False  # cannot tell: keep the stream
        else:
            state, _, _ = state_of(attrs)
            started = str((attrs.get("State") or {}).get("StartedAt") or "")
            moved = state not in ("running", "unhealthy", "restarting") or started != target.key[1]
        if moved:
            log.info("container logs %s (%s): the stream stayed open after the container stopped; reading "
                     "again from the last position", self.name, self.container)
        return moved

    def _lines(self, entries: list[_Entry], resume: _Resume | None, container_id: str) -> list[Line]:
        now = self.clock()
        position = self._handed
        assert position is not None
        lines: list[Line] = []
        for e in entries:
            if resume is not None and resume.skip(e.ns, e.text):
                self.stats.duplicates += 1
                log.debug("container logs %s: skipped as read before: %s %.80r", self.name, e.ns, e.text)
                continue
            position = position.after(container_id, e.ns, e.text)
            lines.append(
                Line(source=self.name, text=e.text, at=now, path=self.path, partial=e.partial, truncated=e.truncated)
            )
            self.stats.truncated += e.truncated
            self.stats.partial += e.partial
            self.stats.bytes += len(e.text.encode()) + 1  # the newline too, as files count it
        self.stats.lines += len(lines)
        self._handed = position
        return lines

    # -- saying what happens --

    def _fail(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self._set("error", describe_engine_error(exc))

    def _set(self, state: str, detail: str, *, container_id: str | None = None) -> None:
        st = self.stats
        if container_id is not None:
            st.container_id = container_id
        if (st.state, st.detail) == (state, detail):
            return
        st.state, st.detail, st.changed_at = state, detail, self.clock()
        level = logging.WARNING if state in ("error", "missing") else logging.INFO
        log.log(level, "container logs %s (%s): %s: %s", self.name, self.container, state, detail)
