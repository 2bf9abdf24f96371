"""`suture replay LOG...`: run the playbooks over recorded logs, offline.

Prints a timeline of what would have fired, the decision and the exact fix,
and touches nothing: the history is an in-memory DuckDB, every decision is
recorded as shadow (no fix is applied, so no backup is written), the sidecar's
backups are only read (a ``restore`` plans from them), target files are only
read to plan the edit.

Time comes from the lines themselves (:mod:`.timestamps` reads some twenty
formats without configuration; :mod:`.replay_read` gives each line its time,
or replays a file without readable times in file order, 1 line per ms, and
says so). Times without a year or date are placed by the file's mtime
(``--year`` overrides the year). Several files are merged in time order, so
rotated files and concurrent sources both replay as they happened.

What a log cannot show is decided by :mod:`.evaluable`: alternatives of a
``when`` with no log condition are not evaluable from logs and are listed,
not replayed (``--assume hold`` replays them, holding from the first line);
the probe, metric and container conditions beside a log condition are
assumed to hold (``--assume fail``: to fail), and each firing names what it
assumed.

The path of a line is the sidecar's (:mod:`.runtime`): matched line ->
``SignalBoard.line`` -> transitions -> rules -> ``decide`` with the history
of this replay -> ``Executor.start`` as a *shadow* fix, so cooldowns hold
against earlier firings. Windows age with the lines' times (checked before
every matched line and at the end of every chunk). Not simulated: validation
windows and rollbacks (the recorded log was written without these fixes),
so history never changes confidence, and no fix is ever "in flight".

Speed: a file is read in 4 MiB chunks (gzip transparently); hyperscan scans
each chunk for every pattern of its source at once, and only matched lines,
plus the last line of each chunk, reach Python.

Skipped firings (cooldown) are shown too, dimmed on a terminal, and counted.
Warnings (a file in file order, times placed past the file's mtime, a source
no playbook reads) go to stderr as they happen, and into the summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import heapq
import json
import os
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import duckdb
from suture.engine.actions import Plan
from suture.engine.backup import BackupStore
from suture.engine.config import Config, load_config
from suture.engine.decide import Gate, Outcomes, decide
from suture.engine.errors import ActionError
from suture.engine.executor import Executor, Outcome
from suture.engine.loader import load_playbooks
from suture.engine.playbook import FILE_ACTIONS, LogCondition, Playbook, leaves
from suture.engine.rules import Fact, Match, Rules
from suture.engine.store import Store

from .evaluable import Assume, LogView, log_views
from .replay_read import (
    CHUNK_BYTES,
    HEAD_LINES,
    ORDER_STEP,
    DenseClock,
    OrderClock,
    ReplayError,
    StampClock,
    count_lines,
    head_time,
    read_chunks,
)
from .signals import SignalBoard, Transition
from .timestamps import SLACK, Timestamps

PROGRESS_EVERY = 0.1  # seconds between progress bar updates
NOT_SIMULATED = ("validation windows and rollbacks (the recorded log was written without these fixes), "
                 "so history never changes confidence; each planned edit is computed from the target files as they are now")
_ROTATED = re.compile(r"(\.gz|\.\d+|-\d{8}(\d{2})?)$")


@dataclass(frozen=True, slots=True)
class LogFile:
    path: Path
    source: str


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


# --- which source a file belongs to ----------------------------------------------------


def assign_sources(paths: Sequence[Path], config: Config, source: str | None = None) -> list[LogFile]:
    """Each file's source: ``source`` if given, else the file source whose glob matches it."""
    files = {name: s.file for name, s in config.sources.items() if s.file}
    out = []
    for path in paths:
        if not path.is_file():
            raise ReplayError(f"{path}: no such file")
        out.append(LogFile(path, source or _source_of(path, files)))
    return out


def _source_of(path: Path, globs: Mapping[str, str]) -> str:
    name = os.path.abspath(path)
    variants = [name]
    while (stripped := _ROTATED.sub("", variants[-1])) != variants[-1]:
        variants.append(stripped)  # app.log.2.gz -> app.log.2 -> app.log
    for variant in variants:
        hits = [n for n, glob in globs.items() if fnmatch.fnmatchcase(variant, glob)]
        if len(hits) > 1:
            raise ReplayError(f"{path} matches several sources ({', '.join(hits)}); name one with --source NAME")
        if hits:
            return hits[0]
    if len(globs) == 1:
        return next(iter(globs))
    listing = ", ".join(f"{n}: {g}" for n, g in globs.items()) or "none configured"
    raise ReplayError(f"cannot tell which source {path} belongs to: it matches no file source ({listing}); "
                      "name one with --source NAME")


# --- the replay ------------------------------------------------------------------------


class _ShadowExecutor(Executor):
    """An Executor that plans each playbook's fix once: a replay applies nothing, so files never change."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plans: dict[str, Plan | ActionError] = {}

    def _plan(self, pb: Playbook) -> Plan:
        plan = self.plans.get(pb.id)
        if plan is None:
            try:
                plan = super()._plan(pb)
            except ActionError as exc:
                plan = exc
            self.plans[pb.id] = plan
        if isinstance(plan, ActionError):
            raise plan.with_traceback(None)
        return plan


Clock = StampClock | DenseClock | OrderClock
Event = tuple[float, int, int, int, str, str]  # time, file index, sequence, kind, source, text
LINE, TICK = 0, 1


class Replay:
    """One replay of a set of files through a fresh, in-memory sidecar core."""

    def __init__(
        self,
        config: Config,
        playbooks: Sequence[Playbook],
        *,
        year: int | None = None,
        assume: Assume = "logs",
        on_firing: Callable[[Firing], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        progress: Progress | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.config = config
        self.views: dict[str, LogView] = {v.playbook_id: v for v in log_views(playbooks, assume)}
        replayed = [v.replayed for v in self.views.values() if v.replayed is not None]
        self.playbooks = {pb.id: pb for pb in replayed}
        self.year = year
        self.assume = assume
        self.on_firing = on_firing
        self.on_warning = on_warning
        self.progress = progress
        self.chunk_bytes = chunk_bytes
        self.summary = Summary(assume=assume)
        self.summary.not_evaluable = {v.playbook_id: v.blind for v in self.views.values() if v.blind}
        self.summary.not_replayed = tuple(v.playbook_id for v in self.views.values() if v.replayed is None)
        self.summary.no_logs = tuple(v.playbook_id for v in self.views.values() if not v.has_logs)
        self.board = SignalBoard(replayed)
        self.rules = Rules()
        self.store = Store(duckdb.connect(":memory:"), None)
        self.store.migrate()
        self.executor: _ShadowExecutor | None = None
        # what the history says, fetched once per playbook (and key): shadow rows never change
        # outcomes, and change a gate only by starting its cooldown (see _fire)
        self._gates: dict[tuple[str, str], Gate] = {}
        self._outcomes: dict[str, Outcomes] = {}
        self._started = False
        self._ticked = float("-inf")
        self._applies: deque[float] = deque()  # times of APPLY decisions (the hourly cap)
        self._warned: set[str] = set()
        self._read: dict[int, int] = {}

    def run(self, files: Sequence[LogFile]) -> Summary:
        """Replay ``files`` (merged in time order); return the summary (firings went to ``on_firing``)."""
        began = time.perf_counter()
        self.summary.files = len(files)
        used = self.board.sources()
        for f in files:
            if f.source not in used:
                self._warn(f"{f.path}: no playbook watches source {f.source!r}; its lines are only counted")
        try:
            # the sidecar's own backups, only read: a `restore` plans from the versions suture knows (a replay
            # records shadow decisions only, so nothing is ever written there)
            self.executor = _ShadowExecutor(config=self.config, store=self.store,
                                            backups=BackupStore(self.config.state_dir / "backups"))
            streams = [self._events(i, f) for i, f in enumerate(files)]
            for event in heapq.merge(*streams):
                self._feed(event)
        finally:
            self.rules.close()
            self.store.close()
            if self.progress is not None:
                self.progress.done()
        self.summary.elapsed = time.perf_counter() - began
        self.summary.timelines.sort(key=lambda t: (t.first_at is None, t.first_at or 0.0, str(t.path)))
        for patterns in self.board.patterns.values():
            self.summary.patterns.update(patterns.stats)
        return self.summary

    # -- reading --

    def _clock(self, f: LogFile) -> tuple[Clock, Timestamps]:
        """The file's clock: its own times, or file order when none of its first lines has one."""
        spec = self.config.sources.get(f.source)
        mtime = f.path.stat().st_mtime
        stamps = Timestamps(format=spec.timestamp_format if spec else None,
                            regex=spec.timestamp_regex if spec else None, year=self.year, reference=mtime)
        first, looked, partial = head_time(f.path, stamps, max_line=self.config.max_line_bytes)
        if first is not None:
            return (DenseClock if partial else StampClock)(stamps, first), stamps
        lines = count_lines(f.path, max_line=self.config.max_line_bytes)
        clock = OrderClock(mtime, lines)
        which = f"its first {looked:,} lines" if looked >= HEAD_LINES else f"its {looked:,} line(s)"
        self._warn(f"{f.path}: none of {which} has a time suture can read; replaying it in file order, "
                   f"1 line per {ORDER_STEP * 1000:g} ms, from {iso(clock.first)} to its mtime {iso(mtime)} "
                   f"(set sources.{f.source}.timestamp to read its times)")
        return clock, stamps

    def _events(self, index: int, f: LogFile) -> Iterator[Event]:
        patterns = self.board.patterns.get(f.source)
        clock, stamps = self._clock(f)
        yield (clock.now, index, 0, TICK, f.source, "")
        seq = 1
        for chunk in read_chunks(f.path, max_line=self.config.max_line_bytes, chunk_bytes=self.chunk_bytes,
                                 on_read=lambda n: self._on_read(index, n)):
            lines = chunk.count(b"\n")
            self.summary.lines += lines
            self.summary.bytes += len(chunk)
            clock.new_chunk(chunk, lines)
            for start, end, _hits in patterns.scan(chunk) if patterns is not None else ():
                text = chunk[start:end].decode("utf-8", errors="replace")
                self.summary.matched_lines += 1
                yield (clock.line(chunk, start, text), index, seq, LINE, f.source, text)
                seq += 1
            yield (clock.chunk_end(chunk), index, seq, TICK, f.source, "")
            seq += 1
        self._timeline(f, clock, stamps)

    def _timeline(self, f: LogFile, clock: Clock, stamps: Timestamps) -> None:
        self.summary.timelines.append(Timeline(path=f.path, format="file order" if clock.order else stamps.format,
                                               placed=stamps.placed and not clock.order,
                                               first_at=clock.first, last_at=clock.now))
        reference = stamps.reference
        if stamps.placed and not clock.order and reference is not None and clock.now > reference + SLACK:
            self._warn(f"{f.path}: its times have no year (or no date) and were placed by the file's mtime "
                       f"{iso(reference)}, yet they run on to {iso(clock.now)}: the file spans more than a year "
                       "(a day), or its mtime is older than its last line; give the year with --year, "
                       f"or set sources.{f.source}.timestamp")

    def _on_read(self, index: int, done: int) -> None:
        self._read[index] = done
        if self.progress is not None:
            self.progress.update(sum(self._read.values()), self.summary.lines)

    # -- the core, as sidecar/runtime.py runs it --

    def _feed(self, event: Event) -> None:
        at, _index, _seq, kind, source, text = event
        if not self._started:
            self._start(at)
        self.summary.first_at = at if self.summary.first_at is None else self.summary.first_at
        self.summary.last_at = at
        self._tick(at)
        if kind == LINE:
            transitions, _matched = self.board.line(source, text, at)
            for t in transitions:
                self._transition(t, at)

    def _start(self, at: float) -> None:
        """What Sidecar.install does, at the time of the first line (plus the assumed conditions)."""
        self._started = True
        self.board.start(at)
        needs = {leaf.signal: leaf for view in self.views.values() for leaf in view.needs}
        holds = {leaf.signal for view in self.views.values() for leaf in view.holds}
        self.summary.assumed = tuple(leaf.describe() for leaf in needs.values())
        facts = [*self.board.holding(), *(Fact(signal=signal) for signal in holds)]
        self._handle(self.rules.load(list(self.playbooks.values()), facts=facts), at)

    def _tick(self, now: float) -> None:
        """``board.tick(now)``, for the windows whose state can change by time alone.

        An at_least window that holds for no key cannot start holding without a
        new line (which updates it), so it is skipped; sustained conditions get no
        readings in a replay. Same transitions as board.tick, a fraction of the work.
        """
        if now <= self._ticked:
            return
        self._ticked = now
        for window in self.board.logs.values():
            if window.holding or window.leaf.at_most is not None:
                for t in window.tick(now):
                    self._transition(t, now)

    def _transition(self, t: Transition, at: float) -> None:
        found = self.rules.assert_fact(t.fact) if t.holds else self.rules.retract_fact(t.fact)
        self._handle(found, at)

    def _handle(self, matches: list[Match], at: float) -> None:
        for match in matches:
            pb = self.playbooks.get(match.playbook_id)
            if pb is not None:
                self._fire(pb, match, at)

    def _fire(self, pb: Playbook, match: Match, now: float) -> None:
        assert self.executor is not None
        count = sum(self.board.count(signal, key, now)
                    for signal, _, key in (f.partition("|") for f in match.facts) if signal.startswith("log-"))
        detected = tuple(
            leaf.describe() + ("" if isinstance(leaf, LogCondition) else " (assumed)")
            for leaf in leaves(pb.when) if any(f.startswith(leaf.signal + "|") for f in match.facts)
        )
        while self._applies and self._applies[0] < now - 3600:
            self._applies.popleft()
        gate = self._gates.get((pb.id, match.key))
        if gate is None:
            gate = self._gates[(pb.id, match.key)] = self.store.gate(pb.id, match.key, now)
        outcomes = self._outcomes.get(pb.id)
        if outcomes is None:
            outcomes = self._outcomes[pb.id] = self.store.outcomes(pb.id)
        # shadow rows do not count toward the hourly cap: count what would have been applied
        gate = dataclasses.replace(gate, fixes_last_hour=len(self._applies))
        decision = decide(pb, key=match.key, labels=match.labels, outcomes=outcomes, gate=gate,
                          threshold=self.config.threshold, learning=self.config.learning,
                          fixes_per_hour=self.config.fixes_per_hour, now=now)
        alternative = self.views[pb.id].alternative(match.rule)
        from_logs = alternative.from_logs if alternative is not None else True
        firing = Firing(at=now, playbook_id=pb.id, key=match.key, labels=dict(match.labels), detected=detected,
                        count=count, verdict=decision.verdict, reason=decision.reason,
                        adjusted=decision.adjusted_confidence, threshold=decision.threshold,
                        assumed=alternative.assumed if alternative is not None else (), from_logs=from_logs)
        if decision.verdict != "skip":
            if decision.verdict == "apply":
                self._applies.append(now)
            result = self.executor.start(pb, dataclasses.replace(decision, verdict="shadow"), now=now,
                                         facts=match.facts, errors_before=count)
            assert isinstance(result, Outcome)  # a shadow fix is recorded, never applied
            # what store.gate now answers for this key: its cooldown starts here (the row is final,
            # so nothing is in flight, and shadow rows change neither failures nor suspensions)
            self._gates[(pb.id, match.key)] = dataclasses.replace(gate, last_started_at=now, fixes_last_hour=0)
            firing = self._planned(firing, pb, result, decision.reason)
        self.summary.firings.setdefault(pb.id, Counter())[decision.verdict] += 1
        if not from_logs:
            self.summary.assumed_only[pb.id] += 1
        if self.on_firing is not None:
            self.on_firing(firing)

    def _planned(self, firing: Firing, pb: Playbook, result: Outcome, reason: str) -> Firing:
        assert self.executor is not None
        plan = self.executor.plans.get(pb.id)
        changes = tuple(c.as_json() for c in plan.changes) if isinstance(plan, Plan) else ()
        marker = f"{reason}; no fix possible now: "
        problem = result.detail[len(marker):] if result.detail.startswith(marker) else None
        effects = tuple(a.describe() for a in pb.fix if not isinstance(a, FILE_ACTIONS))
        return dataclasses.replace(firing, changes=changes, effects=effects, problem=problem, fix_id=result.fix_id)

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.summary.warnings.append(message)
            if self.on_warning is not None:
                self.on_warning(message)


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


# --- the command -----------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    """`suture replay` (options in cli.build_parser): 0 ok, 1 no playbook, 2 a file or source problem."""
    config = load_config(Path(args.config))
    loaded = load_playbooks([config.playbooks], config)
    for problem in loaded.problems:
        print(problem.render(), file=sys.stderr)
    if not loaded.playbooks:
        print(f"suture replay: no valid playbook in {config.playbooks}", file=sys.stderr)
        return 1
    try:
        files = assign_sources([Path(p) for p in args.logs], config, args.source)
    except ReplayError as exc:
        print(f"suture replay: {exc}", file=sys.stderr)
        return 2
    progress = Progress(sum(f.path.stat().st_size for f in files), sys.stderr) if sys.stderr.isatty() else None
    printer = Printer(sys.stdout, as_json=args.json, color=sys.stdout.isatty(), progress=progress)
    # --assume given or not: without it, conditions a log cannot show are assumed only beside a log condition
    assume: Assume = args.assume if args.assume in ("hold", "fail") else "logs"
    replay = Replay(config, loaded.playbooks, year=args.year, assume=assume,
                    on_firing=printer.firing, on_warning=printer.warning, progress=progress)
    try:
        printer.summary(replay.run(files))
    except BrokenPipeError:  # `suture replay ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0
