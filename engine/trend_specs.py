"""What a ``metric`` or ``log`` condition computes before it compares: the parts of its YAML beyond a bound.

    metric: { name: http_requests_total, labels: { code: "500" }, rate: { above: 5, over: 1m } }
    metric: { name: disk_percent, predict: { above: 95, within: 1h }, over: 30m }
    metric: { name: http_request_duration_seconds, quantile: 0.99, over: 5m, above: 0.5 }
    metric: { name: http_request_duration_seconds_p99, anomaly: { sigma: 3, baseline: 1h } }
    log:    { source: app, pattern: 'ERROR', anomaly: { sigma: 3, baseline: 1h } }

Frozen values, built by ``engine.build_conditions`` and evaluated by ``engine.series``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["above", "below", "both"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Predict:
    """The least-squares line over the last ``over`` seconds crosses a bound within ``within`` seconds."""

    within: float
    above: float | None = None
    below: float | None = None

    def describe(self) -> str:
        bound = f"above {self.above:g}" if self.above is not None else f"below {self.below:g}"
        return f"predicted {bound} within {self.within:g}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """The current value lies more than ``sigma`` robust deviations (MAD x 1.4826) from the median of the
    last ``baseline`` seconds, in ``direction``."""

    sigma: float = 3.0
    baseline: float
    direction: Direction = "above"

    def describe(self) -> str:
        side = {"above": "above", "below": "below", "both": "away from"}[self.direction]
        return f"{self.sigma:g} sigma {side} its {self.baseline:g}s baseline"
