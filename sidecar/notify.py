"""Alerts that never block: a bounded queue and one thread that POSTs JSON to a webhook.

``send()`` only puts the event on the queue (or counts a drop when it is
full), so a slow or dead webhook can never hold up a fix. The worker POSTs
each event with a timeout and retries what may succeed later (connection
errors, timeouts, 429 and 5xx) with exponential backoff; every wait is on the
stop event, so ``stop()`` interrupts it. On stop, what is still queued gets
one attempt each until the stop deadline; the rest is counted as dropped.

Redirects are not followed: a webhook answering 3xx is a failure, so an
alert never lands somewhere nobody configured.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import queue
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from suture.engine.confine import address_problem

log = logging.getLogger("suture.notify")

USER_AGENT = "suture"


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifierStats:
    """Counters since start: delivered, given up on, never queued or abandoned at stop, and retries."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    queued: int = 0


@dataclass(frozen=True, slots=True)
class _Item:
    url: str
    body: bytes


class RetryLater(Exception):
    """An attempt failed in a way that may succeed later."""


class GiveUp(Exception):
    """An attempt failed in a way that will not succeed later."""


_Retry, _GiveUp = RetryLater, GiveUp


def check_webhook(url: str) -> urllib.parse.SplitResult:
    """The parsed URL, or ValueError when it is not an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook {url!r} is not an http:// or https:// URL")
    return parts


class Notifier:
    """POSTs events as JSON from one background thread; ``start()`` and ``stop()`` are explicit."""

    def __init__(
        self,
        webhook: str | None = None,
        *,
        max_queue: int = 100,
        timeout: float = 5.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if webhook is not None:
            check_webhook(webhook)
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.webhook = webhook
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._deadline = float("inf")  # monotonic time the drain must end by, once stopping
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "failed": 0, "dropped": 0, "retries": 0}
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPConnection | None = None  # the request in flight, for stop() to cut

    # -- the caller's side --

    def send(self, event: Mapping[str, Any], *, webhook: str | None = None) -> bool:
        """Queue ``event`` for ``webhook`` (or the default one); False, and a counted drop, when full or stopped."""
        url = webhook or self.webhook
        if url is None:
            raise ValueError("no webhook: configure notify.webhook or name one on the event")
        check_webhook(url)
        body = json.dumps(dict(event), default=str, ensure_ascii=True, sort_keys=True).encode("ascii")
        if self._stop.is_set():
            self._count("dropped")
            log.warning("notification dropped: the notifier is stopped")
            return False
        try:
            self._queue.put_nowait(_Item(url, body))
        except queue.Full:
            self._count("dropped")
            log.warning("notification dropped: queue full (%d waiting)", self._queue.maxsize)
            return False
        return True

    def stats(self) -> NotifierStats:
        with self._lock:
            return NotifierStats(**self._counts, queued=self._queue.qsize())

    # -- lifecycle --

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the notifier is already started")
        self._thread = threading.Thread(target=self._run, name="suture-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Deliver what can be delivered within ``timeout`` (one attempt each), then end; True if it ended."""
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is None:
            self._drop_rest()
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort()  # a request in flight past the deadline: cut its connection
            self._thread.join(1.0)
        return not self._thread.is_alive()

    def _abort(self) -> None:
        with self._lock:
            conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the worker --

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _run(self) -> None:
        while True:
            if self._stop.is_set() and time.monotonic() >= self._deadline:
                break
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    break
                continue
            self._deliver(item)
        self._drop_rest()

    def _drop_rest(self) -> None:
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        if left:
            self._count("dropped", left)
            log.warning("%d notification(s) dropped at stop", left)

    def _deliver(self, item: _Item) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                self._post(item)
                self._count("sent")
                return
            except _GiveUp as exc:
                reason = str(exc)
                break
            except _Retry as exc:
                reason = str(exc)
            if attempt >= self.attempts or self._stop.is_set():
                break
            delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
            self._count("retries")
            log.info("webhook %s: %s; retry %d in %.1fs", _safe(item.url), reason, attempt, delay)
            if self._stop.wait(delay):
                break  # stopping: no more waiting, this event had its chance
        self._count("failed")
        log.warning("notification to %s failed after %d attempt(s): %s", _safe(item.url), attempt, reason)

    def _post(self, item: _Item) -> None:
        timeout = self.timeout
        if self._stop.is_set():
            timeout = max(0.05, min(timeout, self._deadline - time.monotonic()))
        post_json(item.url, item.body, timeout=timeout, track=self._track)

    def _track(self, conn: http.client.HTTPConnection | None) -> None:
        with self._lock:
            self._conn = conn


def post_json(url: str, body: bytes, *, timeout: float,
              track: Callable[[http.client.HTTPConnection | None], None] | None = None) -> None:
    """POST ``body`` (JSON) to ``url`` once: _Retry when it may succeed later, _GiveUp when it will not.

    The host is resolved once and checked (:func:`_checked_address`), the connection pinned to that
    address; redirects are not followed. ``track`` is told the connection in flight (None after), so
    a caller may cut it.
    """
    parts = check_webhook(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _checked_address(host, port)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(host, port, timeout=timeout)
    _pin(conn, address)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Connection": "close"}
    if track is not None:
        track(conn)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read(64 * 1024)
    except TimeoutError as exc:
        raise _Retry(f"no answer within {timeout:g}s") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if track is not None:
            track(None)
        conn.close()
    if 200 <= resp.status < 300:
        return
    if resp.status == 429 or resp.status >= 500:
        raise _Retry(f"HTTP {resp.status}")
    raise _GiveUp(f"HTTP {resp.status}")


def _checked_address(host: str, port: int) -> str:
    """The address to connect to for ``host``: resolved once here, refused if link-local or a metadata service.

    The connection then goes to this address (pinned), so a name that resolves elsewhere a moment later
    (DNS rebinding) cannot move it.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _Retry(f"cannot resolve {host}: {exc}") from exc
    problems = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        problem = address_problem(address, host)
        if problem is None:
            return address
        problems.append(problem)
    raise _GiveUp("; ".join(problems) or f"{host} resolved to nothing")


def _pin(conn: http.client.HTTPConnection, address: str) -> None:
    """Make ``conn`` connect to ``address``; its Host header (and TLS server name) stay the URL's host.

    ``_create_connection`` is http.client's own hook for making the socket (set per connection in its
    ``__init__``); HTTPSConnection wraps what it returns with ``server_hostname=self.host``, so the
    certificate is still checked against the URL's host.
    """

    def create(target: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
        return socket.create_connection((address, target[1]), timeout, source_address)

    conn._create_connection = create  # type: ignore[attr-defined]


def _safe(url: str) -> str:
    """The URL's scheme and host only: webhook URLs often carry a secret in the path or query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."
