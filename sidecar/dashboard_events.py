"""``GET /api/dashboard/events``: the sidecar's recent events as server-sent events.

A client that accepts ``text/event-stream`` gets a live :class:`~.routes.Stream`: the events after
the one it names (``?after=`` or ``Last-Event-ID``), then each as it happens, a keep-alive comment
on a quiet stream, until the sidecar stops, the client leaves or :data:`STREAM_LIFETIME` passes
(the browser reconnects with Last-Event-ID). At most :data:`MAX_STREAMS` are live at once (each
holds a server thread); past that, 503 and the page polls. Any other client gets the events so
far, at once.

Event ids are ``<run>-<seq>``: the run is when the sidecar started, so that after a restart (the
numbering starts again) an old id gets everything rather than nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .dashboard_state import CORE_TIMEOUT
from .routes import ApiError, Raw, Request, Stream, iso, jsonable

if TYPE_CHECKING:
    from .public import PublicSidecar

MAX_STREAMS = 8  # each live stream holds one of the API server's threads
HEARTBEAT = 15.0  # seconds between keep-alive comments on a quiet stream
STREAM_LIFETIME = 600.0  # a stream ends after this; the browser reconnects with Last-Event-ID
WAIT = 1.0  # seconds a stream waits for events before it looks at stop and the client again
EVENT_STREAM = "text/event-stream; charset=utf-8"


class EventStream:
    """The events route, and the open streams it counts."""

    def __init__(self, sidecar: PublicSidecar) -> None:
        self.sidecar = sidecar
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)

    def dashboard_events(self, request: Request, after: int | None = None) -> Raw | Stream:
        run = str(int(self.sidecar.snapshot(timeout=CORE_TIMEOUT).started_at * 1000))
        if after is None:
            # ids are "<run>-<seq>": after a restart of the sidecar the numbering starts again
            their_run, _, seq = request.headers.get("last-event-id", "").partition("-")
            after = int(seq) if their_run == run and seq.isdigit() and len(seq) < 10 else None
        if "text/event-stream" not in request.headers.get("accept", ""):
            return Raw(b"retry: 2000\n\n" + b"".join(_frame(run, s, e) for s, e in self._backlog(after or 0)),
                       EVENT_STREAM)
        if not self.streams.acquire(blocking=False):
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, f"{MAX_STREAMS} live streams are open already; "
                           "the page polls instead", {"Retry-After": "30"})

        def produce(write: Callable[[bytes], bool], gone: Callable[[], bool]) -> None:
            try:
                self._stream(write, gone, run, after or 0)
            finally:
                self.streams.release()

        return Stream(EVENT_STREAM, produce)

    def _backlog(self, after: int) -> list[tuple[int, Any]]:
        sc = self.sidecar
        with sc.events_changed:
            if after > sc.events_seq:
                after = 0  # numbered by an earlier run of the sidecar: send all we have
            return [(seq, e) for seq, e in sc.recent_events if seq > after]

    def _stream(self, write: Callable[[bytes], bool], gone: Callable[[], bool], run: str, after: int) -> None:
        """Events as they happen, until the sidecar stops, the client leaves or the stream is old."""
        sc = self.sidecar
        started = beat = time.monotonic()
        if not write(b"retry: 2000\n\n"):
            return
        sent = after
        while not sc.stop.is_set() and time.monotonic() - started < STREAM_LIFETIME:
            events = self._backlog(sent)
            if not events:
                with sc.events_changed:
                    if sc.events_seq <= sent:
                        sc.events_changed.wait(WAIT)
                events = self._backlog(sent)
            if events:
                if not write(b"".join(_frame(run, seq, e) for seq, e in events)):
                    return
                sent, beat = events[-1][0], time.monotonic()
            elif time.monotonic() - beat >= HEARTBEAT:
                if not write(b": keep-alive\n\n"):
                    return
                beat = time.monotonic()
            if gone():
                return


def _frame(run: str, seq: int, event: Any) -> bytes:
    """One server-sent event: its id (for Last-Event-ID), then the event as one line of JSON."""
    body = json.dumps({"seq": seq, "kind": event.kind, "at": iso(event.at, milliseconds=True),
                       "message": event.message, "data": jsonable(event.data)}, separators=(",", ":"))
    return f"id: {run}-{seq}\ndata: {body}\n\n".encode()
