"""The delivery worker: takes due rows of the ``notifications`` outbox and delivers them, one at a time.

The store queues a row in the same transaction as the journal step it tells of
(:mod:`suture.engine.notifications`); this thread, owned by the sidecar (``World.spawn``), reads
and updates the rows through its own cursor of the store's connection, never the core's, so it
never waits on the core and the core never waits on the network.

Per row: the message is rendered from the journal now (:mod:`.notify_message`), sent to its
channel (notify.webhook: :func:`~.notify.post_json`; an Apprise URL: :func:`~.notify_apprise.send`),
and the row marked ``sent``; a failure that may pass is retried after ``base * 2^(attempts-1)``
seconds (capped, with +-25% jitter, so channels that failed together do not retry together);
after ``max_attempts``, or at once for what cannot succeed (a 4xx, a refused host, a channel no
longer configured), the row is ``failed`` with the error. A row queued for a channel that is no
longer in suture.yaml is failed with that reason.

Delivery is at least once: a sidecar killed after a send and before its row is marked sends
that one notification again after the restart (the window is one send). A row marked ``sent`` is
never sent again, restarts included; a (fix, event, channel) is one row (the dedup key).
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suture.engine.config import Config
from suture.engine.config_notify import WEBHOOK_CHANNEL, NotifyChannel
from suture.engine.reads import epoch, ts
from suture.engine.store import Store

from .notify import GiveUp, RetryLater, post_json

log = logging.getLogger("suture.notify")

DUE_SQL = """SELECT id, fix_id, playbook_id, event, channel, target, attempts, body, created_at FROM notifications
             WHERE state = 'queued' AND next_at <= ? ORDER BY next_at, id LIMIT ?"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    base: float = 2.0  # seconds before the first retry
    cap: float = 600.0  # no wait longer than this
    max_attempts: int = 10  # then failed for good (about 40 minutes of trying with the defaults)
    jitter: float = 0.25  # each wait is its value +- this fraction

    def delay(self, attempts: int, draw: float) -> float:
        """The wait after the ``attempts``-th failed attempt; ``draw`` in [0, 1)."""
        plain = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        return float(plain * (1 - self.jitter + 2 * self.jitter * draw))


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    """Since start, by (state, scheme): sent, retried, failed; and the rows queued at the last pass."""

    counts: dict[tuple[str, str], int]
    queued: int
    oldest_queued_seconds: float


class NotifyOutbox:
    """One per sidecar; ``run(stop)`` on a thread of its own, ``poke()`` when something was journaled."""

    def __init__(self, config: Config, store: Store, *, clock: Callable[[], float] = time.time,
                 dashboard_url: Callable[[], str | None] = lambda: None, backoff: Backoff = Backoff(),
                 timeout: float = 10.0, batch: int = 16, draw: Callable[[], float] = random.random) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.dashboard_url = dashboard_url
        self.backoff = backoff
        self.timeout = timeout
        self.batch = batch
        self.draw = draw
        self.channels: dict[str, NotifyChannel] = {c.channel: c for c in config.notify_urls}
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._queued = 0
        self._oldest = 0.0

    def poke(self) -> None:
        self._wake.set()

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(counts=dict(self._counts), queued=self._queued, oldest_queued_seconds=self._oldest)

    # -- the loop --

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: deliver what is due, then wait for a poke or the next due row (1 s at most)."""
        cursor = self.store.con.cursor()
        reads = Store(cursor, self.store.path)
        try:
            while not stop.is_set():
                handled = self.step(reads, stop)
                if handled < self.batch:
                    self._wake.wait(self._idle(reads))
                self._wake.clear()
        finally:
            cursor.close()

    def step(self, reads: Store, stop: threading.Event | None = None) -> int:
        """One pass over the due rows; the number handled."""
        rows = reads.query(DUE_SQL, [ts(self.clock()), self.batch]).dicts()
        for row in rows:
            if stop is not None and stop.is_set():
                break
            self._deliver(reads, row)
        self._measure(reads)
        return len(rows)

    def _idle(self, reads: Store) -> float:
        row = reads.query("SELECT min(next_at) FROM notifications WHERE state = 'queued'").rows
        due = row[0][0] if row else None
        if due is None:
            return 1.0
        return max(0.0, min(1.0, (epoch(due) or 0.0) - self.clock()))

    def _measure(self, reads: Store) -> None:
        (count, oldest), = reads.query(
            "SELECT count(*), min(created_at) FROM notifications WHERE state = 'queued'").rows
        with self._lock:
            self._queued = int(count)
            self._oldest = max(0.0, self.clock() - (epoch(oldest) or 0.0)) if oldest is not None else 0.0

    # -- one row --

    def _deliver(self, reads: Store, row: dict[str, Any]) -> None:
        channel = str(row["channel"])
        scheme = "webhook" if channel == WEBHOOK_CHANNEL else (
            self.channels[channel].scheme if channel in self.channels else "unknown")
        attempts = int(row["attempts"]) + 1
        try:
            self._send(reads, row, channel)
        except GiveUp as exc:
            self._mark(reads, row, "failed", attempts, str(exc), scheme)
            return
        except RetryLater as exc:
            self._retry(reads, row, attempts, str(exc), scheme)
            return
        except Exception as exc:  # rendering the message failed: a bug, or a history it cannot read
            log.exception("notification %s: cannot build or send it", row["id"])
            self._retry(reads, row, attempts, f"internal error: {type(exc).__name__}: {exc}", scheme)
            return
        self._mark(reads, row, "sent", attempts, None, scheme)

    def _send(self, reads: Store, row: dict[str, Any], channel: str) -> None:
        from .notify_message import compose, webhook_body

        if channel == WEBHOOK_CHANNEL:
            if not self.config.notify_webhook:
                raise GiveUp("notify.webhook is no longer configured")
            body = webhook_body(row, sidecar=self.config.name, dashboard_url=self.dashboard_url())
            post_json(self.config.notify_webhook,
                      json.dumps(body, default=str, ensure_ascii=True, sort_keys=True).encode("ascii"),
                      timeout=self.timeout)
            return
        target = self.channels.get(channel)
        if target is None:
            raise GiveUp(f"{row['target']} is no longer in notify.urls")
        from .notify_apprise import send

        message = compose(reads, row, dashboard_url=self.dashboard_url())
        with tempfile.TemporaryDirectory(prefix="suture-notify-") as folder:
            attachment = None
            if message.report is not None:
                attachment = Path(folder) / f"suture-report-{row['fix_id']}.md"
                attachment.write_text(message.report, encoding="utf-8")
            send(self.config, target, title=message.title, body=message.body, attachment=attachment,
                 timeout=self.timeout)

    def _retry(self, reads: Store, row: dict[str, Any], attempts: int, error: str, scheme: str) -> None:
        if attempts >= self.backoff.max_attempts:
            self._mark(reads, row, "failed", attempts, f"{error} (gave up after {attempts} attempts)", scheme)
            return
        wait = self.backoff.delay(attempts, self.draw())
        log.info("notification %s to %s: %s; retry %d in %.1fs", row["id"], row["target"], error, attempts, wait)
        reads.con.execute("UPDATE notifications SET attempts = ?, last_error = ?, next_at = ? WHERE id = ?",
                          [attempts, error[:2000], ts(self.clock() + wait), row["id"]])
        self._count("retried", scheme)

    def _mark(self, reads: Store, row: dict[str, Any], state: str, attempts: int, error: str | None,
              scheme: str) -> None:
        if state == "failed":
            log.warning("notification %s (%s of %s) to %s failed: %s", row["id"], row["event"], row["fix_id"] or
                        row["playbook_id"], row["target"], error)
        reads.con.execute(
            "UPDATE notifications SET state = ?, attempts = ?, last_error = coalesce(?, last_error), "
            "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE id = ?",
            [state, attempts, error[:2000] if error else None, state, ts(self.clock()), row["id"]])
        self._count(state, scheme)

    def _count(self, state: str, scheme: str) -> None:
        with self._lock:
            self._counts[(state, scheme)] += 1

