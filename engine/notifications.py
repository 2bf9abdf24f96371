"""The outbox's write side: which notifications a journal step queues, in the step's own transaction.

The store calls :func:`enqueue` inside the transaction that writes a fix's final status (or a
playbook's suspension), so a notification exists exactly when the fact it tells of does: a
crash before the commit loses both, a crash after it keeps both, and the sidecar's delivery
worker (:mod:`suture.sidecar.notify_outbox`) finds the row after a restart. One row per
(fix, event, channel), ``ON CONFLICT DO NOTHING``: the same event is never queued twice for
a channel. Nothing here touches the network; the row holds facts of the journal only (the
message is rendered from the journal at delivery).

States: ``queued`` (``next_at`` says when it is due), ``sent`` (``sent_at``), ``failed``
(given up on after the last attempt, or undeliverable; ``last_error`` says why).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb

from .config_notify import WEBHOOK_CHANNEL

STATES = ("queued", "sent", "failed")

INSERT_SQL = """INSERT INTO notifications (fix_id, playbook_id, event, channel, target, state, next_at, created_at, body)
                VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?) ON CONFLICT DO NOTHING"""


class _Notified(Protocol):
    @property
    def notify_webhook(self) -> str | None: ...
    @property
    def notify_urls(self) -> Sequence[Any]: ...
    @property
    def notify_events(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Routes:
    """What is queued: the events notified, and each channel as (key, what may be shown of it)."""

    events: frozenset[str] = frozenset()
    channels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, config: _Notified) -> Routes:
        channels = [(WEBHOOK_CHANNEL, redact_webhook(config.notify_webhook))] if config.notify_webhook else []
        channels += [(c.channel, c.target) for c in config.notify_urls]
        return cls(events=frozenset(config.notify_events), channels=tuple(channels))

    def wants(self, event: str) -> bool:
        return bool(self.channels) and event in self.events


def redact_webhook(url: str) -> str:
    """The webhook's scheme, host and port only: webhook URLs often carry a secret in the path or query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


def enqueue(con: duckdb.DuckDBPyConnection, routes: Routes, *, fix_id: str | None, playbook_id: str | None,
            event: str, at: Any, facts: Mapping[str, Any]) -> None:
    """Queue ``event`` for every channel (inside the caller's transaction); a row already there stays as it is."""
    if not routes.wants(event):
        return
    body = json.dumps(dict(facts), default=str, sort_keys=True)
    for channel, target in routes.channels:
        con.execute(INSERT_SQL, [fix_id, playbook_id, event, channel, target, at, at, body])
