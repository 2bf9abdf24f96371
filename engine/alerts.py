"""Alerts from Alertmanager as values: what the webhook receiver hands the core.

An :class:`AlertState` is one alert of a webhook notification (version 4), keyed by its
``fingerprint`` (Alertmanager's hash of the label set): the same alert notified again is the
same key (deduplicated), and ``resolved`` retracts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AlertLabels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertState:
    fingerprint: str
    name: str  # the alertname label
    labels: AlertLabels
    state: Literal["firing", "resolved"]
    starts_at: float | None  # epoch seconds, as Alertmanager says (None: absent or unreadable)
    ends_at: float | None
    at: float  # when suture received it

    def label(self, name: str) -> str | None:
        return next((v for k, v in self.labels if k == name), None)
