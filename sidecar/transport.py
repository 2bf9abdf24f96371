"""The API's HTTP transport: ``http.server``, hardened against a hostile browser and slow clients.

Before a request reaches :meth:`App.dispatch <sidecar.web.App.dispatch>` it must get through, in order:

- **a connection slot.** At most ``Limits.connections`` connections are open at once (a thread each).
  At the cap a new connection takes the slot of the one that has waited longest for its request (a
  slow client, an idle keep-alive or a browser's unused pre-connect; counted as ``evicted``); if every
  connection is being answered, the new one gets 503 at once (counted as ``refused``). Live event
  streams hold their slot like any answer.
- **a deadline.** The request line, headers and body must all arrive within ``Limits.read_timeout``
  of the server starting to wait for them; a trickle does not extend it. A partial request is cut
  with 408, a silent or idle connection is closed. Answers (event streams too) are not under it.
- **a size.** Request line at most ``Limits.max_line`` bytes (414), head at most ``Limits.max_head``
  (431), body at most its route's limit (413, from the Content-Length, before a byte of the body is read):
  ``Route.max_body``, :data:`MAX_BODY` unless the route declares its own (the Alertmanager route takes
  ``alerts.alertmanager.max_bytes``, and checks its token before it says so: refused there, the
  request is answered without its body being read). The body is read as it arrives, never more than
  its Content-Length, so a length that promises more than comes costs only what arrives and ends at the
  deadline. A request refused before its body is read is answered, then what the client still sends is
  read and dropped (at most :data:`LINGER_BYTES`, for :data:`LINGER_S`, within the deadline) so that the
  answer is not lost to a reset.
- **a Host that names this server** (421 otherwise; the DNS-rebinding guard, see :class:`HostPolicy`).
- **framing.** One Content-Length of ASCII digits (400 otherwise); Transfer-Encoding is refused (411).

Malformed requests are answered 4xx in JSON and the connection is closed; nothing a client sends
gets a 5xx, except 503 meaning "busy" (the cap, or the core not answering in time). Counters go
to the sidecar's /metrics (``suture_api_*``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import select
import socket
import threading
import time
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

from suture.engine.errors import SutureError
from suture.engine.sql import SqlRefused

from . import operations as ops
from .admission import Counts, HostPolicy, Limits, Slots
from .routes import MAX_BODY, ApiError, BodyLimit, Raw, Stream, jsonable
from .web import App, build

if TYPE_CHECKING:
    from .public import PublicSidecar

log = logging.getLogger("suture.api")
ABSOLUTE = re.compile(r"(?i)https?://(?P<authority>[^/?#]*)(?P<rest>.*)")
LENGTH = re.compile(r"[0-9]{1,16}")  # ASCII digits only: str.isdigit() would take '²'
__all__ = ["MAX_BODY", "Server", "serve"]
CHUNK = 64 * 1024  # a body is read this much at a time, as it arrives
LINGER_BYTES = 1024 * 1024  # of a refused body, read and dropped so that the refusal is not lost to a reset
LINGER_S = 2.0


class _TooSlow(Exception):
    """The request did not arrive before its deadline."""


class _TooLarge(Exception):
    """The request head is over its budget."""


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None, *,
                 unread: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.unread = unread  # refused with its body still to come: linger before closing


class _Reader(io.RawIOBase):
    """The socket's read side under the request's deadline and the head's byte budget."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = 0.0
        self.budget: int | None = None
        self.got = 0  # bytes of the current request so far
        self.eof = False

    def begin(self, deadline: float, budget: int) -> None:
        self.deadline, self.budget, self.got, self.eof = deadline, budget, 0, False

    def end_head(self) -> None:
        self.budget = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _TooSlow
        if self.budget is not None and self.budget <= 0:
            raise _TooLarge
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            raise _TooSlow from None
        self.eof = n == 0
        self.got += n
        if self.budget is not None:
            self.budget -= n
        return n


class _Writer(io.RawIOBase):
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sock.sendall(data)
        return len(data)


class _Handler(BaseHTTPRequestHandler):
    app: App
    cors_origin: str | None = None
    server_version = "suture"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.connection = self.request
        self.srv = cast(Server, self.server)
        self.slot = self.srv.slots.get(self.request)
        self.reader = _Reader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        self.wfile = _Writer(self.connection)  # type: ignore[assignment]
        self.headers = HTTPMessage()
        self.target = "/"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    # -- reading a request --

    def handle_one_request(self) -> None:
        self.close_connection = True
        self.command, self.request_version, self.requestline = "", "HTTP/1.1", ""  # until parse_request
        slots, limits = self.srv.slots, self.srv.slots.limits
        if self.slot is None or not slots.reading(self.slot):
            return  # evicted before it began
        self.reader.begin(self.slot.deadline, limits.max_head)
        try:
            if not self._read_head():
                return
            body = self._read_body()
        except _TooSlow:
            slots.count("slow" if self.reader.got else "idle")
            if self.reader.got:
                self._error(HTTPStatus.REQUEST_TIMEOUT, f"the request did not arrive within {limits.read_timeout:g} s")
            return
        except _TooLarge:
            self._error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request head over {limits.max_head} bytes")
            return
        except _Refused as exc:
            if exc.status == HTTPStatus.MISDIRECTED_REQUEST:
                slots.count("misdirected")
            self._error(exc.status, str(exc), exc.headers)
            if exc.unread:
                self._linger()
            return
        except OSError:
            return  # reset by the client, or evicted
        if not slots.answering(self.slot):
            return
        self.connection.settimeout(limits.write_timeout)
        self._answer(body)

    def _read_head(self) -> bool:
        """Request line and headers, checked; False when there is nothing to answer (closed, cut short)."""
        limit = self.srv.slots.limits.max_line
        self.raw_requestline = self.rfile.readline(limit + 1)
        if len(self.raw_requestline) > limit:
            raise _Refused(HTTPStatus.REQUEST_URI_TOO_LONG, f"request line over {limit} bytes")
        if not self.raw_requestline.endswith(b"\n"):
            return False  # closed between requests, or in the middle of the line
        if len(self.raw_requestline.split()) == 2:  # refused before waiting for headers it will never send
            raise _Refused(HTTPStatus.BAD_REQUEST, "HTTP/0.9 is not served; send HTTP/1.1 with a Host header")
        if not self.parse_request():
            return False  # answered already (send_error)
        if self.reader.eof:
            return False  # the headers ended without their blank line: the client went away
        self.target = self._origin_form()
        return True

    def _origin_form(self) -> str:
        """The target as a path (absolute-form gives its host instead of Host), once the host is allowed."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            raise _Refused(HTTPStatus.BAD_REQUEST, "more than one Host header")
        host = hosts[0].strip(" \t") if hosts else None
        target = self.path
        if m := ABSOLUTE.fullmatch(target):
            host, rest = m["authority"], m["rest"]
            target = rest if rest.startswith("/") else "/" + rest
        elif not (target.startswith("/") or (target == "*" and self.command == "OPTIONS")):
            raise _Refused(HTTPStatus.BAD_REQUEST, "the request target must be a path or an http:// URL")
        if host is None and self.request_version != "HTTP/1.0":
            raise _Refused(HTTPStatus.MISDIRECTED_REQUEST, "no Host header; HTTP/1.1 needs one")
        if host is not None and not self.srv.hosts.allows(host):
            raise _Refused(HTTPStatus.MISDIRECTED_REQUEST,
                           f"this API does not answer for Host {host[:100]!r} (a guard against DNS rebinding); "
                           "to allow it, add it to api.allowed_hosts in suture.yaml")
        return target

    def _read_body(self) -> bytes:
        if self.headers.get_all("Transfer-Encoding"):
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding is not accepted; send a Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            raise _Refused(HTTPStatus.BAD_REQUEST, "more than one Content-Length")
        raw = lengths[0].strip(" \t") if lengths else "0"
        if not LENGTH.fullmatch(raw):
            raise _Refused(HTTPStatus.BAD_REQUEST, "Content-Length must be a number in ASCII digits")
        length = int(raw)
        limit = self._limit(length)
        if length > limit.most:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, limit.refusal(length), unread=True)
        self.reader.end_head()
        chunks, got = [], 0
        while got < length:  # as it arrives: memory follows the bytes sent, not the length announced
            chunk = self.rfile.read1(min(CHUNK, length - got))
            if not chunk:
                raise OSError("the client closed the connection in the middle of the body")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _limit(self, length: int) -> BodyLimit:
        """The route's body limit for this request; its refusal (e.g. the alert route's token) answers it now."""
        method = "GET" if self.command == "HEAD" else self.command
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            return self.app.body_limit(method, self.target, headers)
        except ApiError as exc:
            raise _Refused(exc.status, str(exc), exc.headers, unread=length > 0) from None

    def _linger(self) -> None:
        """After answering a request whose body was not read: end our side, then read and drop what the client
        still sends (until it closes, LINGER_BYTES, LINGER_S or the request's deadline), so that closing a
        socket with unread data does not reset the connection before the client has read the answer."""
        sock, left = self.connection, LINGER_BYTES
        until = min(self.reader.deadline, time.monotonic() + LINGER_S)
        sink = bytearray(CHUNK)
        with contextlib.suppress(OSError):  # a timeout, a reset: done either way
            sock.shutdown(socket.SHUT_WR)
            while left > 0 and (wait := until - time.monotonic()) > 0:
                sock.settimeout(wait)
                n = sock.recv_into(sink, min(CHUNK, left))
                if not n:
                    break
                left -= n

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's answers to a malformed request line or headers: JSON, never 5xx (HTTP/2 is 505 there)."""
        status = HTTPStatus(code) if code < 500 else HTTPStatus.BAD_REQUEST
        self._error(status, message or status.phrase)

    # -- answering --

    def _answer(self, body: bytes) -> None:
        method = "GET" if self.command == "HEAD" else self.command
        if method == "OPTIONS":
            self._preflight()
            return
        try:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = self.app.dispatch(method, self.target, headers, body)
            self._respond(status, payload)
        except ApiError as exc:
            self._respond(exc.status, {"error": str(exc)}, exc.headers)
        except ops.OperationError as exc:
            self._respond(exc.status, {"error": str(exc)})
        except SqlRefused as exc:
            self._respond(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except TimeoutError as exc:  # the core did not answer in time: busy
            self._respond(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}, {"Retry-After": "5"})
        except SutureError as exc:
            self._respond(HTTPStatus.CONFLICT, {"error": str(exc)})
        except OSError:
            log.debug("client went away during %s %s", method, self.target)
        except Exception:
            log.exception("API handler failed on %s %s", method, self.target[:200])
            self._respond(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error (see the sidecar log)"})

    def _error(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer a request that is refused before it is read whole, and close (its body was not read)."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # so that the status line is written
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._respond(status, {"error": message}, {**(headers or {}), "Connection": "close"})

    def _cors(self) -> None:
        origin = self.cors_origin
        if origin and self.headers.get("Origin") == origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def _preflight(self) -> None:
        origin = self.cors_origin
        self.send_response(HTTPStatus.NO_CONTENT if origin else HTTPStatus.METHOD_NOT_ALLOWED)
        if origin and self.headers.get("Origin") == origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Methods", "GET, POST")
            self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.send_header("Vary", "Origin")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _respond(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        if isinstance(payload, Stream):
            self._stream(payload)
            return
        if isinstance(payload, Raw):
            body, content_type = payload.body, payload.content_type
            extra = {**payload.headers, **(extra or {})}
        else:
            body, content_type = json.dumps(jsonable(payload), indent=2).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self._cors()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self, stream: Stream) -> None:
        self.send_response(HTTPStatus.OK)
        for name, value in (("Content-Type", stream.content_type), ("Cache-Control", "no-store"),
                            ("X-Content-Type-Options", "nosniff"), ("Connection", "close"), *stream.headers.items()):
            self.send_header(name, value)
        self._cors()
        self.end_headers()
        self.close_connection = True
        sock = self.connection

        def write(chunk: bytes) -> bool:
            try:
                sock.sendall(chunk)
                return True
            except OSError:
                return False

        readable = select.poll()  # not select.select: that fails past file descriptor 1023
        readable.register(sock, select.POLLIN)

        def gone() -> bool:
            """The client closed the connection: readable with nothing to read."""
            try:
                return bool(readable.poll(0)) and not sock.recv(1, socket.MSG_PEEK)
            except OSError:
                return True

        if self.command == "HEAD":
            stream.produce(lambda _chunk: False, lambda: True)  # lets it release what it holds
            return
        stream.produce(write, gone)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # server_close hangs up every connection instead of waiting for streams
    allow_reuse_address = True
    request_queue_size = 128  # a burst of connects must not wait for SYN retries (1 s and more)
    slots: Slots
    hosts: HostPolicy
    collector: Counts | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        # headers and body leave in two writes; without this the second waits for a delayed ACK (40 ms)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.slots.admit(request):
            super().process_request(request, client_address)
        else:
            self._refuse(request)

    def _refuse(self, sock: socket.socket) -> None:
        """503 without a thread: take what the client sent (closing on unread data resets), answer, close."""
        body = json.dumps({"error": f"the API has {self.slots.limits.connections} connections open, all busy; "
                                    "try again shortly"}).encode()
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.recv(65536)
        with contextlib.suppress(OSError):
            sock.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        self.shutdown_request(sock)

    def shutdown_request(self, request: Any) -> None:
        self.slots.release(request)  # before the socket is closed, so an eviction never hangs up a reused one
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("API connection from %s failed", client_address)

    def server_close(self) -> None:
        super().server_close()
        self.slots.close_all()
        if self.collector is not None:
            self.collector.unregister()


def serve(sidecar: PublicSidecar, limits: Limits | None = None) -> Server:
    """Start the API in a background thread; the caller stops it with ``shutdown()``, then ``server_close()``."""
    limits = limits or Limits()
    cfg = sidecar.config.api
    handler = type("Handler", (_Handler,), {"app": build(sidecar), "cors_origin": cfg.cors_origin})
    server_cls: type[Server] = Server
    if ":" in cfg.host:
        server_cls = cast("type[Server]", type("Server6", (Server,), {"address_family": socket.AF_INET6}))
    server = server_cls((cfg.host, cfg.port), handler)
    server.slots = Slots(limits)
    server.hosts = HostPolicy(cfg.host.lower(), frozenset(cfg.allowed_hosts))
    counts = Counts(server.slots, sidecar.telemetry.registry)
    try:
        counts.registry.register(counts)
        server.collector = counts
    except ValueError:  # another API server of this sidecar is counted already
        log.warning("a second API server for one sidecar: its connection counters are not in /metrics")
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host
    sidecar.api_url = f"http://{host}:{port}" if ":" not in str(host) else f"http://[{host}]:{port}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="suture-api", daemon=True).start()
    log.info("api          listening on %s", sidecar.api_url)
    return server
