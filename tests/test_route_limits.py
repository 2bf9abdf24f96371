"""Each route's own body limit (Route.max_body), enforced by the transport before a byte of the body is read:
the Alertmanager route takes alerts.alertmanager.max_bytes (above or below the API's 256 KiB), every other
route keeps 256 KiB, and a Content-Length that lies neither hangs the server nor makes it read more.
Raw sockets and http.client against a running sidecar and its API."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from pathlib import Path

import pytest
from suture.engine.config import load_config
from suture.sidecar.admission import Limits
from suture.sidecar.alerts_api import PATH
from suture.sidecar.routes import MAX_BODY
from suture.sidecar.transport import serve

from .conftest import SETTINGS, Running, write_config
from .test_api_hostile import read_all, statuses

pytestmark = pytest.mark.slow
ALERT_TOKEN = "alert-token-route-limits"
API_TOKEN = "api-token-route-limits"
KiB = 1024
READ_TIMEOUT = 1.5  # the API's deadline for a request's line, headers and body, here


def notification(size: int) -> bytes:
    """A valid webhook body of about ``size`` bytes (one firing alert; the bulk in commonAnnotations, 60 KiB each)."""
    pad, annotations = size - 200, {}
    while pad > 0:
        annotations[f"a{len(annotations)}"] = "x" * min(pad, 60 * KiB)
        pad -= 60 * KiB
    return json.dumps({"version": "4", "commonAnnotations": annotations, "alerts": [
        {"status": "firing", "labels": {"alertname": "Big"}, "fingerprint": "00000000000000bb"}]}).encode()


class Api:
    """A sidecar receiving alerts with ``max_bytes``, its API under a short read deadline."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        target = root / "target"
        (target / "config").mkdir(parents=True)
        (target / "logs").mkdir()
        (target / "config" / "settings.yaml").write_text(SETTINGS)
        write_config(root, target, extra=f"alerts:\n  alertmanager: {{max_bytes: {max_bytes}}}\n")
        env = {"SUTURE_TOKEN": API_TOKEN, "SUTURE_ALERT_TOKEN": ALERT_TOKEN}
        self.running = Running(load_config(root / "suture.yaml", env=env)).start()
        self.server = serve(self.running.sidecar, Limits(read_timeout=READ_TIMEOUT))
        self.port = int(str(self.running.sidecar.api_url).rsplit(":", 1)[1])

    def post(self, path: str, body: bytes, token: str | None) -> tuple[int, dict[str, str]]:
        """Status and JSON answer of a POST sent whole by http.client (as Alertmanager sends it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def raw(self, head: bytes, body: bytes = b"", *, wait: bool = False) -> tuple[bytes, float]:
        """What the server sends back for ``head`` + ``body`` until it closes, and how long that took; ``wait``:
        keep our side open (a client that promised more and stalls) instead of ending it."""
        with closing(socket.create_connection(("127.0.0.1", self.port), timeout=15)) as sock:
            began = time.monotonic()
            with suppress(OSError):
                sock.sendall(head + body)
                if not wait:
                    sock.shutdown(socket.SHUT_WR)
            return read_all(sock), time.monotonic() - began

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.running.stop()


def head(path: str, length: int | str, token: str = ALERT_TOKEN) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """max_bytes 1 MiB: over the API's 256 KiB."""
    api = Api(tmp_path_factory.mktemp("large"), 1024 * KiB)
    yield api
    api.stop()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """max_bytes 64 KiB: under it."""
    api = Api(tmp_path_factory.mktemp("small"), 64 * KiB)
    yield api
    api.stop()


def test_a_300_kib_notification_is_taken_when_max_bytes_is_1_mib(large: Api) -> None:
    body = notification(300 * KiB)
    assert len(body) > MAX_BODY
    assert large.post(PATH, body, ALERT_TOKEN) == (200, {"received": 1, "firing": 1, "resolved": 0})


def test_a_300_kib_notification_is_413_when_max_bytes_is_64_kib(small: Api) -> None:
    """Refused from its Content-Length, naming the limit; the client sending it whole still gets the answer
    (what it sends after is read and dropped, not reset), and the connection is closed."""
    body = notification(300 * KiB)
    assert small.post(PATH, body, ALERT_TOKEN) == (
        413, {"error": f"the body is {len(body)} bytes; alerts.alertmanager.max_bytes is {64 * KiB}"})
    answer, _ = small.raw(head(PATH, len(body)), body)
    assert statuses(answer) == [413] and b"Connection: close" in answer


def test_the_token_is_checked_before_the_limit(small: Api) -> None:
    """Without the alert token (or with the API's), 401 before a byte of the body is read, whatever its size."""
    body = notification(300 * KiB)
    assert small.post(PATH, body, None)[0] == 401
    status, answer = small.post(PATH, body, API_TOKEN)
    assert (status, answer["error"]) == (401, "wrong bearer token (alerts.alertmanager.token_env)")


def test_other_routes_keep_the_api_s_256_kib(large: Api) -> None:
    """/api/sql (with the API's token) and a path no route has: 413 past 256 KiB, as before."""
    status, answer = large.post("/api/sql", b" " * (MAX_BODY + 1), API_TOKEN)
    assert (status, answer["error"]) == (413, f"the body is {MAX_BODY + 1} bytes; the body limit of POST /api/sql"
                                              f" is {MAX_BODY}")
    assert large.post("/api/sql", json.dumps({"sql": "SELECT 1"}).encode(), API_TOKEN)[0] == 200
    status, answer = large.post("/nowhere", b" " * (MAX_BODY + 1), API_TOKEN)
    assert (status, answer["error"]) == (413, f"the body is {MAX_BODY + 1} bytes; the API's body limit is {MAX_BODY}")


def test_a_length_over_the_limit_is_refused_at_once(large: Api) -> None:
    """4 MiB announced, nothing sent: 413 at once, without waiting for the body."""
    answer, took = large.raw(head(PATH, 4 * 1024 * KiB), wait=True)
    assert statuses(answer) == [413] and b"alerts.alertmanager.max_bytes is 1048576" in answer
    assert took < READ_TIMEOUT


def test_a_length_that_promises_more_than_comes_ends_at_the_deadline(large: Api) -> None:
    """1 MiB announced (within max_bytes), 10 bytes sent, the connection kept open: 408 at the read deadline."""
    answer, took = large.raw(head(PATH, 1024 * KiB), b'{"version"', wait=True)
    assert statuses(answer) == [408] and READ_TIMEOUT - 0.2 < took < READ_TIMEOUT + 2


def test_the_body_is_its_content_length_and_no_more(large: Api) -> None:
    """A valid notification followed by 2 MiB more on the same connection: the body is the announced bytes
    (200, one alert), the rest is read as the next request (414: a request line without an end) and closed."""
    body = notification(1000)
    answer, took = large.raw(head(PATH, len(body)), body + b"y" * (2 * 1024 * KiB))
    assert statuses(answer) == [200, 414] and b'"received": 1' in answer
    assert took < READ_TIMEOUT
