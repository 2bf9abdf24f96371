"""The values of fleet mode on PostgreSQL, and the pure decisions over them.

The PostgreSQL client lives in ``sidecar/fleet_*.py`` (it waits on sockets); what it hands
back is here, frozen: a :class:`Lease` held, a lease :class:`Held` by another sidecar, a
:class:`Busy` playbook (``max_concurrent`` reached), the connection's :class:`FleetState`,
and the :class:`Backoff` between reconnection attempts.

Rows read from the group's tables were written by other sidecars, which may be older,
buggy or hostile: every value read back goes through :func:`clean_text` / :func:`as_count` /
:func:`fence_of`, which never raise and bound what they return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TEXT_LIMIT = 256  # characters kept of a name, holder or reason read from the group's tables


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """This sidecar holds (group, playbook, key) until ``expires_at`` (server time, epoch seconds)."""

    group: str
    playbook_id: str
    key: str
    holder: str
    token: int  # the fencing token: larger than every token given for this target before
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """Another sidecar holds the lease: record ``skip`` with who and until when."""

    by: str
    until: float | None  # None: the row's expiry was unreadable (treated as held)
    token: int | None

    def reason(self) -> str:
        until = f" until {self.until:.0f}" if self.until is not None else ""
        return f"lease held by {self.by}{until}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Busy:
    """``max_concurrent`` fixes of this playbook are in flight across the group already."""

    held: int
    limit: int

    def reason(self) -> str:
        return f"{self.held} of at most {self.limit} fixes of this playbook in flight across the group"


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetState:
    """What /metrics and the dashboard show of the fleet connection."""

    connected: bool
    since: float | None  # when it became connected or disconnected (None: never tried)
    last_error: str = ""
    failures: int = 0  # consecutive failed attempts
    next_attempt_at: float | None = None  # while disconnected: no attempt before this

    def describe(self) -> str:
        if self.connected:
            return "connected"
        if self.since is None:
            return "not connected yet"
        return f"disconnected since {self.since:.0f}: {self.last_error}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff between reconnection attempts, capped, with jitter."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.2  # each delay is shortened by up to this fraction (replicas do not retry in step)

    def delay(self, failures: int, u: float = 0.0) -> float:
        """Seconds to wait after ``failures`` consecutive failures; ``u`` in [0, 1) draws the jitter."""
        if failures <= 0:
            return 0.0
        raw = min(self.cap, self.base * math.pow(2.0, min(failures - 1, 60)))
        return raw * (1.0 - self.jitter * min(max(u, 0.0), 1.0))


def clean_text(value: Any, limit: int = TEXT_LIMIT) -> str:
    """A printable string of at most ``limit`` characters from whatever a row holds (never raises)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pg_text(value: str) -> str:
    """Text PostgreSQL accepts, from any Python string: NUL (which it refuses) and lone surrogates (which
    UTF-8 cannot encode: JSON's ``\\udc36`` decodes to one) become U+FFFD."""
    text = value.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def as_count(value: Any) -> int:
    """A non-negative count from a row (NULL, negative or not a number: 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(0, int(value))


def as_epoch(value: Any) -> float | None:
    """Epoch seconds from a datetime or a number a row holds; None when it is neither."""
    stamp = getattr(value, "timestamp", None)
    if callable(stamp):
        try:
            result = float(stamp())
        except (OverflowError, OSError, ValueError):
            return None
        return result if math.isfinite(result) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def fence_of(detail: Any) -> int | None:
    """The fencing token a journal step's detail carries (``{"fence": N}``), if it is a sane integer."""
    if not isinstance(detail, dict):
        return None
    token = detail.get("fence")
    if isinstance(token, bool) or not isinstance(token, int) or not 0 < token < 2**63:
        return None
    return token
