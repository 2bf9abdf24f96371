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

Positions, what a re-attach skips and why, are ``sidecar.sources.log_positions``;
records into lines (timestamps, pieces of long lines, TTY streams) and the thread
that reads a stream are ``sidecar.sources.log_records``. Docker SDK errors are
described by :func:`.containers.describe_engine_error`.

What Podman's compat API (4.3, measured here) does differently from Docker:

- ``timestamps=1`` prints RFC 3339 to the *second* (``2026-11-26T04:02:55Z``;
  Docker prints nanoseconds), so many lines share a timestamp: hence the count
  in the position, and the one-second margin on ``since``.
- ``since`` is nevertheless compared with the stored nanosecond times, and
  strictly (a line exactly at ``since`` is left out; Docker includes it): the
  margin covers that too.
- Long lines come as 8 KiB records (Docker: 16 KiB), and a line written in two
  ``write`` calls (``printf a; sleep; echo b``) comes as two records, each with
  its own timestamp, the newline only in the last: both are glued into one line.
- ``follow=1`` on a stopped container returns the backlog and ends, as Docker
  does; on a created, never started one it returns nothing and ends. A stop
  (hence a restart) ends the stream, as with Docker; a removal too.
- Nothing here relies on ``tail``; zones other than ``Z`` (``+01:00``, a
  service running in a local zone) are parsed too, though only ``Z`` was seen.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import Line
from .containers import ClientSource, client_errors, describe_engine_error, engine_errors, resolve_client, state_of
from .log_positions import KEEP_DIGESTS, LogPositions, Position, SeenBefore
from .log_records import END, NS, Entry, Pump, RecordParser

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

__all__ = ["KEEP_DIGESTS", "NS", "ContainerLogSource", "LogPositions", "LogStats", "Position"]

log = logging.getLogger(__name__)

RETRY = (0.5, 10.0)  # seconds: first wait after a failure or a stop, and the most the wait doubles to
MAX_BATCH = 512  # lines handed to the core at once
WATCH = 2.0  # seconds: a stream quiet this long has its container looked at (did the engine miss a stop?)
QUICK_END = 1.0  # seconds: a stream of a running container that ends sooner, empty, is a failure (backoff)


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
        resume = (SeenBefore(position.ns, position.count, position.lines)
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
        pump = Pump(stream, self.name)
        parser = RecordParser(tty=target.tty, cap=self.max_line_bytes)
        try:
            yield from self._drain(pump, parser, resume, target, stop)
        finally:
            pump.close()
        if pump.error is not None:
            self._fail(pump.error)
        return pump.error is None

    def _drain(
        self, pump: Pump, parser: RecordParser, resume: SeenBefore | None, target: _Target, stop: threading.Event
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
            entries: list[Entry] = []
            while True:
                if chunk is END:
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

    def _lines(self, entries: list[Entry], resume: SeenBefore | None, container_id: str) -> list[Line]:
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
