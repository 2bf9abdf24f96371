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

The path of a line is the sidecar's own: the :class:`~.core.Core` that ``suture run``
drives, here fed with each line at its own time, a dry-run executor (every decision is
recorded as *shadow*, so cooldowns hold against earlier firings and nothing is applied) and a
:class:`~.history.DryRunHistory` (the hourly cap counts what would have been applied). Each
firing is the core's :class:`~.core.Decided` record. Windows age with the lines' times (a tick
before every matched line and at the end of every chunk). Not simulated: validation windows
and rollbacks (the recorded log was written without these fixes), so history never changes
confidence, and no fix is ever "in flight".

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
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from suture.engine.actions import Plan
from suture.engine.backup import BackupStore
from suture.engine.config import Config, load_config
from suture.engine.decide import Decision
from suture.engine.errors import ActionError
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.loader import PlaybookSet, load_playbooks
from suture.engine.playbook import FILE_ACTIONS, LogCondition, Playbook
from suture.engine.rules import Fact
from suture.engine.steps import Steps
from suture.engine.store import Store

from .core import Core, Decided
from .evaluable import Assume, LogView, log_views
from .history import DryRunHistory
from .observations import Line, Lines, Playbooks
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
from .replay_report import Firing, Printer, Progress, Summary, Timeline, iso
from .signals import MatcherCache, SignalBoard
from .timestamps import SLACK, Timestamps

_ROTATED = re.compile(r"(\.gz|\.\d+|-\d{8}(\d{2})?)$")


@dataclass(frozen=True, slots=True)
class LogFile:
    path: Path
    source: str


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
    """The dry-run executor: every decision is recorded as shadow, and each playbook's fix is planned once
    (a replay applies nothing, so files never change)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plans: dict[str, Plan | ActionError] = {}

    def begin(self, pb: Playbook, decision: Decision, **record: Any) -> Steps[FixRun | Outcome]:
        return super().begin(pb, dataclasses.replace(decision, verdict="shadow"), **record)

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
        self.matchers = MatcherCache()
        self.board = SignalBoard(replayed, matchers=self.matchers)  # which sources and patterns to scan for
        self.store = Store(duckdb.connect(":memory:"), None)
        self.store.migrate()
        self.executor: _ShadowExecutor | None = None
        self.core: Core | None = None
        self._now = 0.0
        self._ticked = float("-inf")
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
            if self.core is not None:
                self.core.shutdown()
            self.store.close()
            if self.progress is not None:
                self.progress.done()
        self.summary.elapsed = time.perf_counter() - began
        self.summary.timelines.sort(key=lambda t: (t.first_at is None, t.first_at or 0.0, str(t.path)))
        board = self.core.board if self.core is not None else self.board
        for patterns in board.patterns.values():
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

    # -- the core: the sidecar's own (sidecar/core.py), on the lines' clock --

    def _feed(self, event: Event) -> None:
        at, _index, _seq, kind, source, text = event
        self._now = at
        if self.core is None:
            self.core = self._start()
        self.summary.first_at = at if self.summary.first_at is None else self.summary.first_at
        self.summary.last_at = at
        if at > self._ticked:  # windows age with the lines' times
            self._ticked = at
            self.core.tick(at)
        if kind == LINE:
            self.core.observe(Lines(source, (Line(source=source, text=text, at=at),)))

    def _start(self) -> Core:
        """The core, at the time of the first line, with the conditions a log cannot show held if assumed."""
        assert self.executor is not None
        needs = {leaf.signal: leaf for view in self.views.values() for leaf in view.needs}
        holds = sorted({leaf.signal for view in self.views.values() for leaf in view.holds})
        self.summary.assumed = tuple(leaf.describe() for leaf in needs.values())
        core = Core(self.config, executor=self.executor, history=DryRunHistory(self.store), clock=lambda: self._now,
                    decisions=self._decided, assumed=[Fact(signal=signal) for signal in holds],
                    matchers=self.matchers)
        core.install(Playbooks(PlaybookSet(playbooks=tuple(self.playbooks.values()), problems=())))
        return core

    def _decided(self, d: Decided) -> None:
        """One firing, as the core decided it (the verdict before the dry run made it shadow)."""
        pb, match, decision = d.playbook, d.match, d.decision
        detected = tuple(leaf.describe() + ("" if isinstance(leaf, LogCondition) else " (assumed)")
                         for leaf in d.detected)
        alternative = self.views[pb.id].alternative(match.rule)
        from_logs = alternative.from_logs if alternative is not None else True
        firing = Firing(at=d.at, playbook_id=pb.id, key=match.key, labels=dict(match.labels), detected=detected,
                        count=d.errors_before, verdict=decision.verdict, reason=decision.reason,
                        adjusted=decision.adjusted_confidence, threshold=decision.threshold,
                        assumed=alternative.assumed if alternative is not None else (), from_logs=from_logs)
        if isinstance(d.result, Outcome):  # a shadow fix is recorded, never applied
            firing = self._planned(firing, pb, d.result, decision.reason)
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
