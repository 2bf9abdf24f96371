"""What a replay found, and how it is shown: firings, timelines, the summary; text for people, JSON lines for tools."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .evaluable import Assume
from .replay_read import HEAD_LINES

PROGRESS_EVERY = 0.1  # seconds between progress bar updates
NOT_SIMULATED = ("validation windows and rollbacks (the recorded log was written without these fixes), "
                 "so history never changes confidence; each planned edit is computed from the target files as they are now")


@dataclass(frozen=True, slots=True, kw_only=True)
class Firing:
    """One playbook match during the replay: what, when, the decision, the fix it would make."""

    at: float
    playbook_id: str
    key: str
    labels: Mapping[str, str]
    detected: tuple[str, ...]
    count: int  # matching lines in the matched windows at that moment
    verdict: str  # apply | propose | shadow | skip
    reason: str
    adjusted: float
    threshold: float
    changes: tuple[Mapping[str, Any], ...] = ()
    effects: tuple[str, ...] = ()
    problem: str | None = None  # why no fix could be planned
    fix_id: str | None = None
    assumed: tuple[str, ...] = ()  # the conditions a log cannot show that this firing took as holding (or not)
    from_logs: bool = True  # False: it rests on assumed conditions alone (--assume hold)

    def as_json(self) -> dict[str, Any]:
        return {"type": "firing", "at": iso(self.at), "time": self.at, "playbook": self.playbook_id,
                "key": self.key, "labels": dict(self.labels), "detected": list(self.detected), "count": self.count,
                "verdict": self.verdict, "reason": self.reason, "adjusted_confidence": self.adjusted,
                "threshold": self.threshold, "changes": [dict(c) for c in self.changes],
                "effects": list(self.effects), "problem": self.problem, "fix_id": self.fix_id,
                "assumed": list(self.assumed), "from_logs": self.from_logs}


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """Where one file's times came from, and the span they cover."""

    path: Path
    format: str  # the timestamp format read (the last one that worked), or "file order"
    placed: bool  # times without a year (or date) were placed by the file's mtime
    first_at: float | None
    last_at: float | None

    @property
    def order(self) -> bool:
        return self.format == "file order"

    def describe(self) -> str:
        how = self.format
        if self.order:
            how += f" (no readable time in its first {HEAD_LINES:,} lines: 1 line per ms, ending at its mtime)"
        elif self.placed:
            how += " (no year or date written: placed by the file's mtime)"
        return f"{self.path}: {how}, {iso(self.first_at) or '-'} to {iso(self.last_at) or '-'}"

    def as_json(self) -> dict[str, Any]:
        return {"file": str(self.path), "format": self.format, "file_order": self.order,
                "placed_by_mtime": self.placed, "from": iso(self.first_at), "to": iso(self.last_at)}


@dataclass(slots=True)
class Summary:
    files: int = 0
    lines: int = 0
    bytes: int = 0
    matched_lines: int = 0
    elapsed: float = 0.0
    first_at: float | None = None
    last_at: float | None = None
    firings: dict[str, Counter[str]] = field(default_factory=dict)
    assumed_only: Counter[str] = field(default_factory=Counter)  # firings per playbook on assumptions alone
    assume: Assume = "logs"
    assumed: tuple[str, ...] = ()  # non-log conditions beside log conditions, assumed to hold (or to fail)
    not_evaluable: dict[str, tuple[str, ...]] = field(default_factory=dict)  # playbook -> alternatives without logs
    not_replayed: tuple[str, ...] = ()  # playbooks left with nothing to replay (no log condition, no --assume hold)
    no_logs: tuple[str, ...] = ()  # playbooks without any log condition
    timelines: list[Timeline] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    patterns: Counter[str] = field(default_factory=Counter)

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.elapsed if self.elapsed > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"type": "summary", "files": self.files, "lines": self.lines, "bytes": self.bytes,
                "matched_lines": self.matched_lines, "elapsed_s": round(self.elapsed, 3),
                "lines_per_s": round(self.lines_per_s), "from": iso(self.first_at), "to": iso(self.last_at),
                "firings": {pb: dict(c) for pb, c in sorted(self.firings.items())},
                "assumed_only": dict(sorted(self.assumed_only.items())),
                "not_simulated": NOT_SIMULATED, "assume": self.assume, "assumed": list(self.assumed),
                "not_evaluable": [{"playbook": pb, "alternatives": list(alts),
                                   "replayed_as_holding": self.assume == "hold",
                                   "has_log_condition": pb not in self.no_logs}
                                  for pb, alts in sorted(self.not_evaluable.items())],
                "timelines": [t.as_json() for t in self.timelines],
                "warnings": self.warnings, "patterns": dict(self.patterns)}


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    stamp = datetime.fromtimestamp(at, UTC)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{stamp.microsecond // 1000:03d}Z" if stamp.microsecond else f"{text}Z"


# --- showing it ------------------------------------------------------------------------


class Progress:
    """Bytes done / total and lines/s on one self-rewriting stderr line (only on a terminal)."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total, self.stream = max(total, 1), stream
        self.began = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def update(self, done: int, lines: int) -> None:
        now = time.perf_counter()
        if now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        rate = lines / max(now - self.began, 1e-9)
        self.stream.write(f"\r\033[K{done / 2**20:,.1f} / {self.total / 2**20:,.1f} MiB "
                          f"({100 * done / self.total:.0f}%)  {rate:,.0f} lines/s")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False

    def done(self) -> None:
        self.clear()


class Printer:
    """The timeline and summary, as text for people or JSON lines for tools."""

    def __init__(self, out: IO[str], *, as_json: bool, color: bool, progress: Progress | None = None) -> None:
        self.out, self.as_json, self.color, self.progress = out, as_json, color, progress

    def firing(self, f: Firing) -> None:
        if self.progress is not None:
            self.progress.clear()
        if self.as_json:
            print(json.dumps(f.as_json()), file=self.out)
            return
        key = f" [{f.key}]" if f.key else ""
        what = _describe_cause(f)
        why = f.reason if f.reason.startswith("confidence") else (
            f"{f.reason}; confidence {f.adjusted:.1f}, threshold {f.threshold:g}")
        line = f"{iso(f.at)}  {f.verdict.upper():<7}  {f.playbook_id}{key}: {what} -> {why}"
        fix = _describe_fix(f)
        if fix:
            line += f" -> {fix}"
        if f.verdict == "skip" and self.color:
            line = f"\033[2m{line}\033[0m"
        print(line, file=self.out, flush=True)

    def warning(self, message: str) -> None:
        """A warning, on stderr at once (so it is seen even when the timeline goes to a file)."""
        if self.progress is not None:
            self.progress.clear()
        print(f"suture replay: warning: {message}", file=sys.stderr, flush=True)

    def summary(self, s: Summary) -> None:
        if self.as_json:
            print(json.dumps(s.as_json()), file=self.out)
            return
        print(f"-- replayed {s.files} file(s): {s.lines:,} lines, {s.bytes / 2**20:,.1f} MiB, "
              f"{s.matched_lines:,} matched, from {iso(s.first_at) or '-'} to {iso(s.last_at) or '-'}, "
              f"in {s.elapsed:.2f} s ({s.lines_per_s:,.0f} lines/s)", file=self.out)
        for timeline in s.timelines:
            print(f"-- time: {timeline.describe()}", file=self.out)
        if s.firings:
            parts = []
            for pb, counts in sorted(s.firings.items()):
                detail = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
                if s.assumed_only[pb]:
                    detail += f"; {s.assumed_only[pb]} on assumed conditions alone"
                parts.append(f"{pb} {sum(counts.values())} ({detail})")
            print("-- firings: " + "; ".join(parts), file=self.out)
        else:
            print("-- no playbook fired", file=self.out)
        if s.not_evaluable:
            how = ("replayed as holding from the first line, --assume hold" if s.assume == "hold"
                   else "not replayed; --assume hold to take them as holding")
            parts = [f"{pb}: {' | '.join(alts)}" + (" (no log condition at all)" if pb in s.no_logs else "")
                     for pb, alts in sorted(s.not_evaluable.items())]
            print(f"-- not evaluable from logs ({how}): " + "; ".join(parts), file=self.out)
        if s.assumed:
            how = ("assumed to fail (not in a log; --assume fail)" if s.assume == "fail"
                   else "assumed to hold (not in a log; --assume fail to take them as failing)")
            print(f"-- {how}: " + "; ".join(s.assumed), file=self.out)
        print(f"-- not simulated: {NOT_SIMULATED}", file=self.out)
        if s.warnings:
            print(f"-- {len(s.warnings)} warning(s), printed on stderr", file=self.out)


def _describe_cause(f: Firing) -> str:
    """What made a firing: the log conditions and their count, then what it assumed."""
    logs = "; ".join(d for d in f.detected if not d.endswith(" (assumed)"))
    parts = [f"{logs} ({f.count} in window)"] if f.from_logs else ["no log condition"]
    if f.assumed:
        parts.append("assumed: " + ", ".join(f.assumed))
    return "; ".join(parts)


def _describe_fix(f: Firing) -> str:
    if f.verdict == "skip":
        return ""
    if f.problem is not None:
        return f"no fix possible now: {f.problem}"
    parts = [f"would change {c['file']} {c['target']}: {c['old']} -> {c['new']}" for c in f.changes]
    parts += [f"would {e}" for e in f.effects]
    return "; ".join(parts) or "would change nothing"


