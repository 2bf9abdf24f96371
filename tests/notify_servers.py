"""Real receivers for the notification tests: an SMTP server (aiosmtpd) and an HTTP server with scripted answers.

Both listen on 127.0.0.1 at a free port the kernel picks (parallel-safe) and keep what they
received. The HTTP receiver stands in for Slack, ntfy, PagerDuty and plain JSON endpoints,
through the Apprise URL forms that take a custom host (json://, ntfy://HOST:PORT/topic).
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """Answers each request with the next status of ``script``, then ``then`` (0: close without answering)."""

    script: list[int] = field(default_factory=list)
    then: int = 200
    requests: list[Received] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.requests) >= n, timeout)
            return list(self.requests)

    def _answer(self) -> int:
        return self.script.pop(0) if self.script else self.then


def _handler(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.changed:
                status = receiver._answer()
                receiver.requests.append(Received(self.command, self.path, dict(self.headers), body))
                receiver.changed.notify_all()
            if status == 0:
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_PUT = do_GET = _any

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@dataclass
class SmtpReceiver:
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int, timeout: float = 20.0) -> list[EmailMessage]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    """aiosmtpd's Controller on a free port: every message it is handed, parsed."""
    from aiosmtpd.controller import Controller

    receiver = SmtpReceiver()

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            data: bytes = envelope.original_content or envelope.content  # type: ignore[attr-defined]
            message = email.message_from_bytes(data, policy=email.policy.default)
            with receiver.changed:
                receiver.raw.append(data)
                receiver.messages.append(message)  # type: ignore[arg-type]
                receiver.changed.notify_all()
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd checks its server by connecting to the port: it needs a number
        probe.bind(("127.0.0.1", 0))
        receiver.port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=receiver.port)
    controller.start()
    yield receiver
    controller.stop()


def eventually(check: Callable[[], object], timeout: float = 20.0, every: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)
