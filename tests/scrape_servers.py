"""HTTP servers for the scrape tests and the scrape benchmark: real exporters and hostile ones, in threads.

    with exporter(registry) as url: ...              # prometheus_client's own server: OpenMetrics on our Accept
    with exporter(registry, text=True) as url: ...   # its WSGI app, Accept hidden from it: the text format 0.0.4
    with hostile({"/x": answer(500, b"")}) as base: ...  # http.server; each route writes what it likes

A route is a callable given the request handler; :func:`answer`, :func:`stream` and :func:`drip`
build the usual ones. Servers bind 127.0.0.1 on a port the kernel picks and stop at the end of
the block; a client that hangs up mid-body is normal here (the scraper stops at its cap).
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app, start_http_server
from prometheus_client.exposition import ThreadingWSGIServer

Route = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextlib.contextmanager
def exporter(registry: CollectorRegistry, *, text: bool = False) -> Iterator[str]:
    """The URL of ``registry`` served by prometheus_client (``text``: in the text format whatever is asked)."""
    if text:
        app = make_wsgi_app(registry)

        def plain(environ: dict[str, Any], start: Any) -> Any:
            return app({k: v for k, v in environ.items() if k != "HTTP_ACCEPT"}, start)

        server = make_server("127.0.0.1", 0, plain, ThreadingWSGIServer, handler_class=_QuietWSGI)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="text-exporter", daemon=True)
        thread.start()
    else:
        server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietWSGI(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def hostile(routes: Mapping[str, Route]) -> Iterator[str]:
    """``http://127.0.0.1:PORT``: GET of a path in ``routes`` runs it; any other path is a 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            route = routes.get(self.path, answer(404, b"not here"))
            with contextlib.suppress(OSError):  # the scraper hung up: expected past its cap or timeout
                route(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="hostile-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def answer(status: int, body: bytes, content_type: str = "text/plain; version=0.0.4",
           headers: Mapping[str, str] | None = None) -> Route:
    """A whole answer with its Content-Length."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(body)

    return route


def stream(total: int, *, chunk: int = 1 << 16, length: bool = False, sent: list[int] | None = None) -> Route:
    """``total`` bytes of ``a 1\\n`` lines, written a chunk at a time (no Content-Length unless ``length``);
    ``sent`` gets the bytes written before the client hung up."""
    block = (b"a 1\n" * (chunk // 4 + 1))[:chunk]

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/plain; version=0.0.4")
        if length:
            h.send_header("Content-Length", str(total))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        written = 0
        try:
            while written < total:
                piece = block[: total - written]
                h.wfile.write(piece)
                written += len(piece)
        finally:
            if sent is not None:
                sent.append(written)

    return route


def drip(every: float, *, stop: threading.Event) -> Route:
    """Headers at once, then one byte of the body every ``every`` seconds (never the whole of it)."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/plain; version=0.0.4")
        h.send_header("Content-Length", "1000000")
        h.end_headers()
        while not stop.wait(every):
            h.wfile.write(b"#")
            h.wfile.flush()

    return route


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()
