"""What a diagnosis saw, kept for the fix's journal: the matching lines with the lines before them, and the
probe, metric and alert values at the time.

The core feeds every line it reads (:meth:`Evidence.line`) and, for the bulk path, each matching line with
the lines before it in its block (:meth:`Evidence.block_line`); a firing asks :meth:`Evidence.of` for the
``evidence`` of its ``matched`` step. Bounded: the last :data:`KEEP` lines per source, each cut to
:data:`MAX_TEXT` characters, and at most :data:`MAX_SOURCES` sources.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from suture.engine.alerts import AlertState
from suture.engine.playbook import AlertCondition, Leaf, LogCondition, MetricCondition, ProbeCondition

from .signals import SeriesEval, SignalBoard
from .sources.base import ProbeResult

KEEP = 64  # lines per source
CONTEXT = 3  # lines shown before a matched one
MAX_MATCHED = 10  # matched lines per source in one excerpt list (the newest)
MAX_TEXT = 2000  # characters of a line kept
MAX_SOURCES = 64
_NONE: frozenset[str] = frozenset()  # the signals of a line of context (shared: most lines match nothing)


@dataclass(frozen=True, slots=True)
class _Seen:
    at: float
    text: str
    signals: frozenset[str]  # the log conditions it matched (none: a line of context)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"... [{len(text) - MAX_TEXT} more characters]"


def lines_before(data: bytes, start: int, n: int = CONTEXT, floor: int = 0) -> list[str]:
    """The up to ``n`` whole lines of ``data`` that end just before offset ``start`` (none before ``floor``)."""
    out: list[str] = []
    end = start
    while len(out) < n and end > floor:
        begin = max(floor, data.rfind(b"\n", 0, end - 1) + 1)  # end - 1: the newline ending the line before
        out.append(data[begin:end].rstrip(b"\r\n").decode("utf-8", "replace"))
        end = begin
    return out[::-1]


class Evidence:
    def __init__(self) -> None:
        self._recent: dict[str, deque[_Seen]] = {}
        self._block: dict[str, tuple[bytes, int]] = {}  # per source: the block read last, and where its kept part ends

    def _ring(self, source: str) -> deque[_Seen] | None:
        ring = self._recent.get(source)
        if ring is None:
            if len(self._recent) >= MAX_SOURCES:
                return None
            ring = self._recent[source] = deque(maxlen=KEEP)
        return ring

    def line(self, source: str, text: str, at: float, signals: Iterable[str] = ()) -> None:
        self._block.pop(source, None)
        ring = self._ring(source)
        if ring is not None:
            ring.append(_Seen(at, _cut(text), frozenset(signals) if signals else _NONE))

    def block_line(self, source: str, data: bytes, start: int, text: str, at: float, signals: Iterable[str]) -> None:
        """A matching line of a block (at offset ``start``), after the lines before it in the block that are
        not kept yet (the block's other lines are not kept)."""
        ring = self._ring(source)
        if ring is None:
            return
        last = self._block.get(source)
        floor = last[1] if last is not None and last[0] is data else 0
        for context in lines_before(data, start, floor=floor):
            ring.append(_Seen(at, _cut(context), _NONE))
        ring.append(_Seen(at, _cut(text), frozenset(signals)))
        end = data.find(b"\n", start)
        self._block[source] = (data, len(data) if end < 0 else end + 1)

    def excerpts(self, conditions: Iterable[LogCondition]) -> list[dict[str, Any]]:
        """Per source of ``conditions``: its newest matched lines, each after up to CONTEXT lines, runs merged."""
        wanted: dict[str, set[str]] = {}
        for leaf in conditions:
            wanted.setdefault(leaf.source, set()).add(leaf.signal)
        out = []
        for source, signals in sorted(wanted.items()):
            ring = list(self._recent.get(source, ()))
            hits = [i for i, seen in enumerate(ring) if seen.signals & signals][-MAX_MATCHED:]
            shown = sorted({j for i in hits for j in range(max(0, i - CONTEXT), i + 1)})
            if shown:
                out.append({"source": source, "lines": [
                    {"at": ring[j].at, "text": ring[j].text, "matched": bool(ring[j].signals & signals)}
                    for j in shown]})
        return out

    def of(self, when: Iterable[Leaf], board: SignalBoard, probes: Mapping[str, ProbeResult],
           alerts: Mapping[str, AlertState]) -> dict[str, Any]:
        """The ``evidence`` of a firing: what the playbook's conditions looked at, as it was."""
        conditions = list(when)
        out: dict[str, Any] = {"lines": self.excerpts(c for c in conditions if isinstance(c, LogCondition))}
        probe_names = {c.name for c in conditions if isinstance(c, ProbeCondition)}
        out["probes"] = {name: {"healthy": r.healthy, "latency_ms": r.latency_ms, "detail": r.detail, "at": r.at}
                         for name, r in sorted(probes.items()) if name in probe_names}
        out["metrics"] = _metrics(board, [c for c in conditions if isinstance(c, MetricCondition)])
        alert_names = {c.name for c in conditions if isinstance(c, AlertCondition)}
        out["alerts"] = [{"name": a.name, "labels": dict(a.labels), "state": a.state, "fingerprint": a.fingerprint,
                          "at": a.at} for a in alerts.values() if a.name in alert_names][:MAX_MATCHED]
        return out


def _metrics(board: SignalBoard, conditions: list[MetricCondition]) -> dict[str, float]:
    """What each metric condition last judged, per series (the value, or the rate or quantile it computes),
    keyed by the condition's series and the series' own labels; at most 32."""
    out: dict[str, float] = {}
    for leaf in conditions:
        evaluator = board.sustained.get(leaf.signal)
        if not isinstance(evaluator, SeriesEval):
            continue
        for labels, said in evaluator.last.items():
            if said.value is not None and len(out) < 32:
                concrete = ",".join(f'{k}="{v}"' for k, v in labels)
                out[leaf.series() + (" {" + concrete + "}" if concrete else "")] = said.value
    return out
