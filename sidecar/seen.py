"""The numbers behind a trend condition, as a person reads them: what each series said at the last look.

A ``rate``, ``quantile``, ``predict`` or ``anomaly`` leaf is judged from a fitted line or a baseline
(engine.series); ``suture explain`` shows those numbers for the decision it would take now, and the
``matched`` step of a fix keeps them as they were when it fired (``seen``), so the history says why
a prediction or an anomaly was believed, not only that it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from suture.engine.playbook import Leaf, LogCondition, MetricCondition
from suture.engine.series import Labels, Said

from .signals import SeriesEval, SignalBoard

MAX_SERIES_SHOWN = 8  # a leaf over many series shows the ones that hold first, then the rest, up to this


def said_json(said: Said, labels: Labels = ()) -> dict[str, Any]:
    return {"labels": dict(labels), "holds": said.holds, "known": said.known, "value": said.value,
            "why": said.why, "numbers": {k: round(v, 6) for k, v in said.numbers.items()}}


def seen(board: SignalBoard, conditions: Iterable[Leaf]) -> list[dict[str, Any]]:
    """For each metric leaf and log ``anomaly`` leaf the board evaluates: its series, as last judged."""
    out: list[dict[str, Any]] = []
    done: set[str] = set()
    for leaf in conditions:
        if leaf.signal in done:
            continue
        done.add(leaf.signal)
        series = _series(board, leaf)
        if series is not None:
            out.append({"signal": leaf.signal, "condition": leaf.describe(), "series": series})
    return out


def _series(board: SignalBoard, leaf: Leaf) -> list[dict[str, Any]] | None:
    if isinstance(leaf, LogCondition) and leaf.anomaly is not None:
        anomaly = board.anomalies.get(leaf.signal)
        return [said_json(anomaly.last)] if anomaly is not None and anomaly.last is not None else []
    if isinstance(leaf, MetricCondition):
        evaluator = board.sustained.get(leaf.signal)
        if not isinstance(evaluator, SeriesEval):
            return []
        ordered = sorted(evaluator.last.items(), key=lambda item: (not item[1].holds, item[0]))
        return [said_json(said, labels) for labels, said in ordered[:MAX_SERIES_SHOWN]]
    return None


def render_seen(entries: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    """Text lines for ``suture explain``: one per series, the judgement and its numbers."""
    lines: list[str] = []
    for entry in entries:
        lines.append(f"{indent}{entry['condition']}")
        if not entry["series"]:
            lines.append(f"{indent}  no samples yet")
        for s in entry["series"]:
            labels = ",".join(f"{k}={v}" for k, v in s["labels"].items())
            mark = "holds" if s["holds"] else ("no" if s["known"] else "not yet")
            lines.append(f"{indent}  {'{' + labels + '} ' if labels else ''}{mark}: {s['why']}")
            if s["numbers"]:
                lines.append(f"{indent}    " + ", ".join(f"{k} {v:g}" for k, v in s["numbers"].items()))
    return lines
