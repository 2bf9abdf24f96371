"""The fixes that are not final yet: effects out on a worker, validation windows, fixes waiting for a file.

The executor's steps are generators (:mod:`suture.engine.steps`): where a fix needs a restart,
an exec or a notify, it yields the request. :class:`Fixes` hands each request to the
:class:`EffectPort` (a worker pool, off the core thread) and parks the generator under a job
number; the result comes back as an :class:`~.observations.EffectDone` observation and the
generator resumes exactly where it stopped. Without a port (a replay, a test), effects run
inline. So nothing here waits, and the journal is written in the same order either way.

What ends up where:

- a fix whose effects are out: ``waiting`` (by job), its playbook's files still "busy";
- a fix in its validation window: ``runs``, asked by the core on every observation;
- a fix that must wait for another fix of the same file: ``deferred`` (the core fires it again).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from suture.engine.decide import Decision
from suture.engine.errors import ActionError
from suture.engine.executor import Executor, FixRun, Outcome
from suture.engine.playbook import Playbook
from suture.engine.steps import EffectRequest, Reply, Steps, run_effect
from suture.engine.validation import Judge, Judgement

from .observations import EffectDone

Kind = Literal["start", "settle", "crashed"]


class EffectPort(Protocol):
    def submit(self, job: int, request: EffectRequest) -> bool:
        """Queue ``request``; its EffectDone(job) comes back later. False: no room (the effect fails)."""


@dataclass(slots=True)
class _Work:
    """A fix's steps, parked while one of its effects runs."""

    kind: Kind
    playbook: Playbook
    steps: Steps[Any]
    fix_id: str = ""
    started_at: float = 0.0
    request: EffectRequest | None = None


class Fixes:
    def __init__(
        self,
        executor: Executor,
        *,
        port: EffectPort | None,
        clock: Callable[[], float],
        started: Callable[[FixRun], None],
        ended: Callable[[Outcome, float | None, bool], None],
        hook: Callable[..., None],
    ) -> None:
        self.executor = executor
        self.port = port
        self.clock = clock
        self._started = started  # a fix entered its validation window
        self._ended = ended  # a fix reached its final state: (outcome, when an applied one started, whether it had been applying or validating)
        self._hook = hook
        self.runs: list[FixRun] = []
        self.waiting: dict[int, _Work] = {}
        self._jobs = itertools.count(1)

    # -- starting and ending --

    def start(self, pb: Playbook, decision: Decision, now: float, **record: Any) -> FixRun | Outcome | str:
        """Hand a decision to the executor: an Outcome, a FixRun (validating) or the fix id (effects running)."""
        work = _Work("start", pb, self.executor.begin(pb, decision, now=now, **record), started_at=now)
        return self._advance(work, None, None)

    def settle(self, run: FixRun, verdict: Judgement, now: float) -> None:
        self.runs.remove(run)
        self._advance(_Work("settle", run.playbook, self.executor.settle_steps(run, verdict, now),
                            fix_id=run.fix_id, started_at=run.started_at), None, None)

    def crashed(self, run: FixRun, stage: str, exc: Exception, now: float) -> None:
        self.runs.remove(run)
        self._advance(_Work("crashed", run.playbook, self.executor.crashed_steps(run.fix_id, run.playbook, stage,
                                                                                 exc, now), fix_id=run.fix_id), None, None)

    def effect_done(self, done: EffectDone) -> None:
        work = self.waiting.pop(done.job, None)
        if work is not None:  # else: it was ended at shutdown, after the worker took it
            self._advance(work, Reply(done.result, done.at), done.error)

    def judge(self, ask: Callable[[Judge], Judgement | None], now: float | None) -> bool:
        """``ask`` every fix in its validation window; settle the ones with a final judgement. True if any ended."""
        ended = False
        for run in list(self.runs):
            try:
                self._hook("judge", run.fix_id)
                verdict = ask(run.judge)
            except Exception as exc:  # a bug in judging says nothing about the fix: it ends failed, rolled back
                self.crashed(run, "validating the fix", exc, self.clock())
                ended = True
                continue
            if verdict is not None and verdict.final:
                self.settle(run, verdict, self.clock() if now is None else now)
                ended = True
        return ended

    # -- what is busy --

    def busy_with(self, pb: Playbook) -> tuple[str, set[str]] | None:
        """The fix (applying or validating) that touches one of ``pb``'s files, and the files they share."""
        files = set(pb.files())
        busy = [(r.fix_id, r.playbook) for r in self.runs]
        busy += [(w.fix_id, w.playbook) for w in self.waiting.values()]  # applying, or rolling back
        for fix_id, other in busy:
            shared = set(other.files()) & files
            if shared:
                return fix_id, shared
        return None

    def applying(self) -> list[_Work]:
        return [w for w in self.waiting.values() if w.kind == "start"]

    def run_of_backup(self, backup_id: str) -> FixRun | None:
        return next((r for r in self.runs if r.manifest is not None and r.manifest.id == backup_id), None)

    # -- driving the steps --

    def _advance(self, work: _Work, reply: Reply | None, error: Exception | None) -> FixRun | Outcome | str:
        try:
            while True:
                if error is not None:
                    request = work.steps.throw(error)
                elif reply is None:
                    request = next(work.steps)
                else:
                    request = work.steps.send(reply)
                work.fix_id, work.request = request.fix_id, request
                reply, error = None, None
                if self.port is None:  # inline (replay, tests): the effect runs here
                    try:
                        reply = Reply(run_effect(self.executor.effects, request), self.clock())
                    except Exception as exc:
                        error = exc
                    continue
                job = next(self._jobs)
                if self.port.submit(job, request):
                    self.waiting[job] = work
                    return work.fix_id
                error = ActionError(f"cannot {request.action.describe()}: too many effects already queued")
        except StopIteration as stop:
            return self._finished(work, stop.value)

    def _finished(self, work: _Work, value: FixRun | Outcome) -> FixRun | Outcome:
        if isinstance(value, FixRun):
            self.runs.append(value)
            self._started(value)
        else:
            applied = work.kind != "start" or work.request is not None  # it had held files (or effects) busy
            self._ended(value, work.started_at if work.kind == "settle" else None, applied)
        return value

    def shutdown(self, now: float) -> None:
        """End what is still open: windows cut short fail (rolled back); effects still out are not waited for."""
        self.port = None  # from here on, what is left (on_rollback) runs inline, with each effect's own timeout
        for run in list(self.runs):
            self.settle(run, Judgement(state="failed", reason="suture stopped during the validation window"), now)
        for job, work in sorted(self.waiting.items()):
            del self.waiting[job]
            what = work.request.action.describe() if work.request else "an effect"
            self._advance(work, None, ActionError(f"suture stopped before the result of {what} came back"))
