"""The HTTP API against hostile and slow clients, over raw sockets: malformed requests get a 4xx, never
a 5xx; slow clients are cut off; the connection cap keeps the API answering."""

from __future__ import annotations

import re
import socket
import time
from contextlib import closing, suppress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suture.engine.config import load_config
from suture.sidecar.admission import Limits
from suture.sidecar.transport import MAX_BODY, serve

from .conftest import Running, write_config

pytestmark = pytest.mark.slow
HOST = b"Host: 127.0.0.1\r\n"
TOKEN = "hostile-test-token"


class Api:
    """A real sidecar with its API, and raw sockets to it."""

    def __init__(self, tmp_path, limits: Limits | None = None) -> None:
        target = tmp_path / "target"
        (target / "config").mkdir(parents=True)
        (target / "logs").mkdir()
        (target / "config" / "settings.yaml").write_text("upstream:\n  timeout_s: 5\n")
        write_config(tmp_path, target)
        self.playbooks = tmp_path / "playbooks"
        self.running = Running(load_config(tmp_path / "suture.yaml", env={"SUTURE_TOKEN": TOKEN})).start()
        self.server = serve(self.running.sidecar, limits)
        self.port = int(self.running.sidecar.api_url.rsplit(":", 1)[1])

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def exchange(self, data: bytes) -> bytes:
        """Send ``data``, end the sending side, read until the server closes."""
        with closing(self.connect()) as sock:
            with suppress(OSError):  # the server may have answered and closed already (at the cap)
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            return read_all(sock)

    def status(self, data: bytes) -> int | None:
        found = statuses(self.exchange(data))
        return found[0] if found else None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.running.stop()


def statuses(data: bytes) -> list[int]:
    """The status of each answer in what a connection received."""
    found = []
    while m := re.match(rb"HTTP/1\.1 ([0-9]{3}) [^\r\n]*\r\n(.*?)\r\n\r\n", data, re.S):
        found.append(int(m[1]))
        length = re.search(rb"(?im)^content-length: ([0-9]+)\r?$", m[2])
        data = data[m.end() + int(length[1]):] if length else b""
    return found


def read_all(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def read_head(sock: socket.socket) -> bytes:
    """Read one answer's status line and headers."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = sock.recv(4096)
        if not chunk:
            break
        out += chunk
    return out


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed (or answered and closed) the connection."""
    try:
        data = read_all(sock)
    except TimeoutError:
        return False
    return data == b"" or data.startswith(b"HTTP/1.1 408 ")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One sidecar with the default limits, for the checks that leave nothing behind."""
    a = Api(tmp_path_factory.mktemp("hostile"))
    yield a
    a.stop()


@pytest.fixture
def api_with(tmp_path):
    """A sidecar of its own with the limits a test asks for."""
    started: list[Api] = []

    def start(**limits) -> Api:
        started.append(Api(tmp_path, Limits(**limits)))
        return started[-1]

    yield start
    for a in started:
        a.stop()


def post(length: bytes, extra: bytes = b"") -> bytes:
    return b"POST /api/sql HTTP/1.1\r\n" + HOST + b"Content-Length: " + length + b"\r\n" + extra + b"\r\n{}"


@pytest.mark.parametrize("request_bytes, status", [
    (post(b"\xb2"), 400),  # '²': str.isdigit() says yes, int() says no
    (post("١٢".encode()), 400),  # Arabic-Indic digits
    (post(b"-1"), 400),
    (post(b"+2"), 400),
    (post(b"0x2"), 400),
    (post(b"2e0"), 400),
    (post(b"2, 2"), 400),
    (post(b"2", b"Content-Length: 2\r\n"), 400),
    (post(b"99999999999999999999999"), 400),
    (post(str(MAX_BODY + 1).encode()), 413),
    (b"POST /api/sql HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 411),
    (post(b"2", b"Transfer-Encoding: chunked\r\n"), 411),
], ids=["superscript-two", "arabic-digits", "negative", "signed", "hex", "exponent", "list", "duplicate", "huge",
        "over-max-body", "chunked", "chunked-and-length"])
def test_the_body_length_is_parsed_strictly(api, request_bytes, status):
    """One Content-Length of ASCII digits within the limit; anything else (or Transfer-Encoding) is a 4xx."""
    assert api.status(request_bytes) == status


@pytest.mark.parametrize("request_bytes, status", [
    (b"G\x00T /api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GE(T /api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"BREW /api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n", 405),
    (b"GET /api/monitoring/he\x00alth HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GET /api/fixes/%zz HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GET /api/fixes/%ff%fe HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GET /api/fixes/\xff\xfe HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GET /api/fixes/%00 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GET api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GET ftp://127.0.0.1/api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    (b"GET http://attacker.example/api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n", 421),
    (b"GET /api/monitoring/health HTTP/2.0\r\n" + HOST + b"\r\n", 400),
    (b"GET /api/monitoring/health HTTP/1.x\r\n" + HOST + b"\r\n", 400),
    (b"GET /api/monitoring/health\r\n", 400),  # HTTP/0.9: no status line, no headers, no Host
    (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414),
    (b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"X-Many: 1\r\n" * 200 + b"\r\n", 431),
    (b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"X-Bytes: \xff\x00\xfe\r\n\r\n", 200),
    (b"GET /api/monitoring/health HTTP/1.1\r\nHost: 127.0.0.1\x00.attacker.example\r\n\r\n", 421),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) + b"\r\n\r\n", 400),  # a TLS hello
    (b"GARBAGE\r\n\r\n", 400),
], ids=["nul-in-method", "bad-method", "unknown-method", "nul-in-path", "bad-escape", "not-utf8-escaped",
        "not-ascii", "escaped-nul", "no-slash", "other-scheme", "connect", "absolute-foreign-host", "http2",
        "bad-version", "http0.9", "long-line", "huge-header", "many-headers", "binary-header-value",
        "nul-in-host", "tls", "garbage"])
def test_a_malformed_request_gets_a_4xx(api, request_bytes, status):
    """Hostile request lines and headers are answered with a 4xx in JSON; none reaches a 5xx."""
    assert api.status(request_bytes) == status


def test_pipelined_garbage_after_a_request_gets_400_after_its_answer(api):
    """The good request is answered; the garbage after it gets 400 and the connection closes."""
    answer = api.exchange(b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\nNOT HTTP AT ALL\r\n\r\n")
    assert statuses(answer) == [200, 400]


def test_a_deeply_nested_body_is_a_400(api):
    """JSON nested past the parser's recursion limit is the client's fault, not a 500."""
    body = b"[" * 100_000 + b"]" * 100_000
    assert api.status(b"POST /api/sql HTTP/1.1\r\n" + HOST + f"Authorization: Bearer {TOKEN}\r\n".encode()
                      + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body) == 400


PIECES = [b"GET ", b"POST ", b"HEAD ", b"OPTIONS ", b"/api/sql", b"/api/monitoring/health", b"/", b"*", b"?a=%",
          b"%ff", b" HTTP/1.1", b" HTTP/1.0", b" HTTP/9", b"\r\n", b"\n", b"\r\n\r\n", b"Host: 127.0.0.1\r\n",
          b"Host: evil\r\n", b"Content-Length: ", b"Transfer-Encoding: chunked\r\n", b"Expect: 100-continue\r\n",
          b"Connection: keep-alive\r\n", b":", b" ", b"\t", b"\x00", b"\xff", b"7", b"-", b"{}"]


@given(st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=24)), max_size=14).map(b"".join))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_sequence_of_bytes_gets_a_server_error(api, data):
    """Any bytes, however they end: every answer on the connection is below 500 (or there is none)."""
    answer = api.exchange(data + b"\r\n\r\n")
    assert all(status < 500 for status in statuses(answer)), answer[:300]


def test_a_connection_that_sends_nothing_is_closed(api_with):
    """Connected and silent: closed once the read timeout has passed, with no thread left waiting."""
    a = api_with(read_timeout=1.0)
    with closing(a.connect()) as sock:
        assert closed_by_server(sock)


def test_a_trickled_request_is_cut_with_408(api_with):
    """Headers sent a byte at a time: the deadline is not extended by each byte; 408, then closed."""
    a = api_with(read_timeout=1.0)
    request = b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"X-Slow: " + b"a" * 100 + b"\r\n\r\n"
    with closing(a.connect()) as sock:
        sent = 0
        with pytest.raises(OSError):  # the server hangs up long before the request is complete
            for byte in request:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        assert sent < len(request)
    with closing(a.connect()) as sock:
        sock.sendall(request[:60])
        time.sleep(1.5)
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_a_trickled_body_is_cut_with_408(api_with):
    """Headers whole, body short of its Content-Length: 408 once the read timeout has passed."""
    a = api_with(read_timeout=1.0)
    with closing(a.connect()) as sock:
        sock.sendall(b"POST /api/sql HTTP/1.1\r\n" + HOST + b"Content-Length: 50\r\n\r\n{\"sql\": ")
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_an_event_stream_outlives_the_read_timeout(api_with):
    """A live stream is an answer, not a read: an event long after the read timeout still arrives."""
    a = api_with(read_timeout=0.5)
    with closing(a.connect()) as sock:
        sock.sendall(b"GET /api/dashboard/events HTTP/1.1\r\n" + HOST + b"Accept: text/event-stream\r\n\r\n")
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(1.5)
        (a.playbooks / "late.yaml").write_text(
            "id: late\nwhen: {log: {source: app, pattern: BOOM}}\nconfidence: 40\n"
            "fix: [{adjust: {file: config/settings.yaml, key: upstream.timeout_s, add: 1}}]\n"
            "validate: {window: 5s, expect: [{log: {source: app, pattern: BOOM, at_most: 0}}]}\n")
        seen = b""
        while b'"kind":"reloaded"' not in seen:
            chunk = sock.recv(65536)
            assert chunk, f"the stream ended: {seen[-300:]!r}"
            seen += chunk


def test_at_the_cap_a_new_connection_takes_the_slot_of_the_longest_waiting(api_with):
    """Slots all held by silent clients: a new request is answered and the oldest silent one is cut."""
    a = api_with(connections=4)
    silent = [a.connect() for _ in range(4)]
    time.sleep(0.2)
    try:
        assert a.status(b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n") == 200
        assert closed_by_server(silent[0])
        for sock in silent[1:]:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open, still waited for
                sock.recv(1)
    finally:
        for sock in silent:
            sock.close()


def test_at_the_cap_with_every_connection_answering_a_new_one_gets_503(api_with):
    """Slots all held by live streams: a new connection gets 503 at once, counted in /metrics."""
    a = api_with(connections=3)
    streams = [a.connect() for _ in range(3)]
    try:
        for sock in streams:
            sock.sendall(b"GET /api/dashboard/events HTTP/1.1\r\n" + HOST + b"Accept: text/event-stream\r\n\r\n")
            assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        answer = a.exchange(b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
    finally:
        for sock in streams:
            sock.close()
    for _ in range(50):  # a stream notices its client has gone within a second
        metrics = a.exchange(b"GET /metrics HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
        if metrics.startswith(b"HTTP/1.1 200 "):
            break
        time.sleep(0.1)
    refused = re.search(rb"\nsuture_api_connections_refused_total ([0-9.]+)\n", metrics)
    assert refused and float(refused[1]) >= 1  # this one, and any of the scrapes above made while still full


def test_the_api_answers_within_a_second_while_200_slow_clients_hang_on(api):
    """200 clients each send part of a request and stall; a normal GET is answered within 1 s; then
    every slow one is cut off (taken over at the cap, or timed out)."""
    slow = []
    try:
        for _ in range(200):
            sock = api.connect(timeout=15)
            sock.sendall(b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"X-Slow: ")
            slow.append(sock)
        began = time.monotonic()
        status = api.status(b"GET /api/monitoring/health HTTP/1.1\r\n" + HOST + b"\r\n")
        took = time.monotonic() - began
        assert (status, took < 1.0) == (200, True), f"{status} after {took:.2f} s"
        assert all(closed_by_server(sock) for sock in slow)
    finally:
        for sock in slow:
            sock.close()
