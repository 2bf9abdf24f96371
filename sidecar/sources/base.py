"""What every source produces, and the registry sources are built from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One observation from a log: a newline-terminated line (or a flushed partial one)."""

    source: str
    text: str  # decoded, without the line ending; never longer than the line cap
    at: float  # wall-clock time it was read (replay: the line's own timestamp)
    path: str = ""
    partial: bool = False  # flushed after a timeout without its newline
    truncated: bool = False  # longer than the line cap; the rest was dropped


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """Many ordinary lines at once (the tailer's fast path): complete, valid UTF-8, none special.

    ``data`` holds ``lines`` newline-terminated lines, none longer than the line cap, with no
    CR, BOM or traceback in them; the core scans it whole instead of building a Line per line.
    """

    source: str
    data: bytes
    lines: int
    at: float
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """One probe run."""

    name: str
    healthy: bool
    latency_ms: float | None
    at: float
    detail: str = ""
    values: tuple[tuple[str, float], ...] = ()  # extra numbers (connections, used memory, ...)


Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSample:
    """One value of one series: ``name`` and ``labels`` as exposed (psutil and container metrics have none)."""

    name: str
    value: float
    at: float
    labels: Labels = ()


def utf8_cut(raw: bytes) -> bytes:
    """``raw`` without a multi-byte character cut in half at its end (a line cut at its cap)."""
    for back in range(1, min(4, len(raw)) + 1):
        b = raw[-back]
        if b < 0x80:
            return raw
        if b >= 0xC0:  # a lead byte: keep its sequence only if complete
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return raw if back >= need else raw[:-back]
    return raw


T = TypeVar("T")


class DuplicateName(ValueError):
    """A name registered twice."""


class Registry(Generic[T]):
    """Named factories; duplicates and unknown names are errors that list what is known."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T]) -> None:
        if name in self._items:
            raise DuplicateName(f"{self.kind} '{name}' is already registered")
        self._items[name] = factory

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} '{name}' (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)
