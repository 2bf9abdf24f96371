"""Notifier: JSON POSTs from one thread, retried with backoff, never blocking the sender."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from suture.sidecar.notify import Notifier, NotifierStats


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Webhook:
    """A real HTTP server in a thread, answering from a script: statuses in order, then ``then``.

    A status of ``None`` means hang: hold the request open until the test ends.
    """

    script: list[int | None] = field(default_factory=list)
    then: int | None = 200
    requests: list[Request] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def answer(self) -> int | None:
        return self.script.pop(0) if self.script else self.then

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Request]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= n, timeout)
        return list(self.requests)


def _handler(hook: Webhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook.arrived:
                hook.requests.append(Request(self.path, dict(self.headers), body, time.monotonic()))
                status = hook.answer()
                hook.arrived.notify_all()
            if status is None:
                hook.release.wait(30)
                return
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", f"{hook.url}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A live webhook on 127.0.0.1; set ``script``/``then`` to choose its answers."""
    hook = Webhook()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hook))
    server.daemon_threads = True
    hook.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield hook
    hook.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    """Notifiers a test makes; stopped at its end."""
    made: list[Notifier] = []
    yield made
    for notifier in made:
        notifier.stop(0.2)


def started(notifiers: list[Notifier], url: str, **kwargs: float) -> Notifier:
    options: dict[str, float] = {"backoff": 0.05, "timeout": 2.0, **kwargs}
    notifier = Notifier(url, **options)  # type: ignore[arg-type]
    notifier.start()
    notifiers.append(notifier)
    return notifier


def wait_settled(notifier: Notifier, total: int, timeout: float = 5.0) -> NotifierStats:
    """The stats once ``total`` events were sent or failed (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = notifier.stats()
        if stats.sent + stats.failed >= total or time.monotonic() >= deadline:
            return stats
        time.sleep(0.01)


def test_event_is_posted_as_json(webhook: Webhook, notifiers: list[Notifier]) -> None:
    """An event arrives as a JSON body with Content-Type application/json and User-Agent suture."""
    notifier = started(notifiers, f"{webhook.url}/hook")
    assert notifier.send({"fix_id": "f-1", "status": "succeeded"}) is True
    (request,) = webhook.wait_for(1)
    assert request.json() == {"fix_id": "f-1", "status": "succeeded"}
    assert (request.path, request.headers["Content-Type"], request.headers["User-Agent"]) == (
        "/hook",
        "application/json",
        "suture",
    )


def test_server_errors_are_retried_until_accepted(webhook: Webhook, notifiers: list[Notifier]) -> None:
    """Two 500s then a 200: sent once, after two retries."""
    webhook.script = [500, 500]
    notifier = started(notifiers, webhook.url, attempts=4)
    notifier.send({"n": 1})
    stats = wait_settled(notifier, 1)
    assert (stats.sent, stats.failed, stats.retries) == (1, 0, 2)
    assert len(webhook.requests) == 3


def test_backoff_doubles_between_attempts(webhook: Webhook, notifiers: list[Notifier]) -> None:
    """Waits between attempts grow 0.1 s, 0.2 s: exponential backoff."""
    webhook.then = 503
    notifier = started(notifiers, webhook.url, attempts=3, backoff=0.1)
    notifier.send({"n": 1})
    first, second, third = webhook.wait_for(3)
    assert second.at - first.at >= 0.1
    assert third.at - second.at >= 0.2


def test_gives_up_after_the_last_attempt(webhook: Webhook, notifiers: list[Notifier]) -> None:
    """A webhook that keeps failing: the event fails after ``attempts`` tries."""
    webhook.then = 500
    notifier = started(notifiers, webhook.url, attempts=3)
    notifier.send({"n": 1})
    stats = wait_settled(notifier, 1)
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 2)
    assert len(webhook.requests) == 3


@pytest.mark.parametrize("status", [400, 404, 302])
def test_client_errors_and_redirects_are_not_retried(webhook: Webhook, notifiers: list[Notifier], status: int) -> None:
    """4xx (but 429) and 3xx will not get better: one attempt, failed, redirect not followed."""
    webhook.then = status
    notifier = started(notifiers, webhook.url, attempts=4)
    notifier.send({"n": 1})
    stats = wait_settled(notifier, 1)
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 0)
    assert [r.path for r in webhook.requests] == ["/"]


def test_a_hanging_webhook_times_out(webhook: Webhook, notifiers: list[Notifier]) -> None:
    """A webhook that never answers fails after the timeout, per attempt."""
    webhook.then = None
    notifier = started(notifiers, webhook.url, attempts=1, timeout=0.3)
    start = time.monotonic()
    notifier.send({"n": 1})
    stats = wait_settled(notifier, 1)
    assert stats.failed == 1
    assert time.monotonic() - start < 2.0


def test_send_returns_at_once_while_the_webhook_hangs(webhook: Webhook, notifiers: list[Notifier]) -> None:
    """send() never waits on the network, even with a request stuck in flight."""
    webhook.then = None
    notifier = started(notifiers, webhook.url, timeout=30)
    notifier.send({"n": 0})
    webhook.wait_for(1)
    start = time.monotonic()
    results = [notifier.send({"n": n}) for n in range(1, 21)]
    assert time.monotonic() - start < 0.5
    assert all(results)


def test_a_full_queue_drops_and_counts(webhook: Webhook) -> None:
    """With the queue full, send() returns False and the drop is counted."""
    notifier = Notifier(webhook.url, max_queue=2)  # not started: nothing drains the queue
    assert [notifier.send({"n": n}) for n in range(3)] == [True, True, False]
    assert (notifier.stats().dropped, notifier.stats().queued) == (1, 2)


def test_each_event_may_name_its_own_webhook(webhook: Webhook, notifiers: list[Notifier]) -> None:
    """A per-event webhook (a playbook's notify action) overrides the configured one."""
    notifier = started(notifiers, f"{webhook.url}/default")
    notifier.send({"n": 1}, webhook=f"{webhook.url}/playbook?channel=ops")
    notifier.send({"n": 2})
    assert [r.path for r in webhook.wait_for(2)] == ["/playbook?channel=ops", "/default"]


def test_stop_delivers_what_is_queued(webhook: Webhook) -> None:
    """Events still queued when stop() is called are delivered before it returns."""
    notifier = Notifier(webhook.url)
    for n in range(5):
        notifier.send({"n": n})
    notifier.start()
    assert notifier.stop(5.0) is True
    assert notifier.stats().sent == 5
    assert [r.json()["n"] for r in webhook.requests] == [0, 1, 2, 3, 4]  # type: ignore[index]


def test_stop_interrupts_a_backoff_wait(webhook: Webhook) -> None:
    """A retry waiting out a long backoff ends as soon as stop() is called."""
    webhook.then = 500
    notifier = Notifier(webhook.url, backoff=30, attempts=5)
    notifier.start()
    notifier.send({"n": 1})
    webhook.wait_for(1)
    start = time.monotonic()
    assert notifier.stop(2.0) is True
    assert time.monotonic() - start < 1.0
    assert notifier.stats().failed == 1


def test_stop_ends_within_its_timeout_despite_a_hanging_webhook(webhook: Webhook) -> None:
    """A request stuck in flight is cut at the stop deadline; the events left are counted as dropped."""
    webhook.then = None
    notifier = Notifier(webhook.url, timeout=30)
    notifier.start()
    for n in range(3):
        notifier.send({"n": n})
    webhook.wait_for(1)
    start = time.monotonic()
    assert notifier.stop(0.3) is True
    assert time.monotonic() - start < 2.0
    stats = notifier.stats()
    assert (stats.sent, stats.failed + stats.dropped) == (0, 3)


def test_send_after_stop_is_dropped(webhook: Webhook) -> None:
    """A stopped notifier queues nothing more."""
    notifier = Notifier(webhook.url)
    notifier.start()
    notifier.stop(1.0)
    assert notifier.send({"n": 1}) is False
    assert notifier.stats().dropped == 1


def test_an_event_needs_a_webhook() -> None:
    """Without a configured webhook and without one on the event, send() is a programming error."""
    with pytest.raises(ValueError, match="no webhook"):
        Notifier().send({"n": 1})


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "http://", "hooks.example.com/x"])
def test_only_http_webhooks_are_accepted(url: str) -> None:
    """A webhook must be an http:// or https:// URL with a host."""
    with pytest.raises(ValueError, match="not an http"):
        Notifier(url)
