"""Effects off the core: a few threads that run restart / stop / exec / notify, one target at a time.

The core submits a job (an :class:`~suture.engine.steps.EffectRequest` under a number) and
goes on matching; a worker runs it with the sidecar's effect runner and hands the result (or
the error) back as an :class:`~.observations.EffectDone` observation, which resumes the fix.

- **Bounded**: ``workers`` threads, at most ``queued`` jobs waiting; a job beyond that is
  refused at once (the fix fails and rolls back, saying why) rather than queued forever.
- **Serialized per target**: two effects on one container (or one pid file) never overlap:
  a restart of ``db`` by one fix and a stop of ``db`` by another run in the order submitted.
  Effects on different targets run side by side.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from suture.engine.actions import EffectRunner
from suture.engine.errors import ActionError
from suture.engine.steps import EffectRequest, run_effect

from .observations import EffectDone

log = logging.getLogger("suture.effects")

WORKERS = 4
QUEUED = 64


class EffectWorkers:
    def __init__(self, runner: EffectRunner, deliver: Callable[[EffectDone], object], *,
                 clock: Callable[[], float], workers: int = WORKERS, queued: int = QUEUED) -> None:
        self.runner = runner
        self.deliver = deliver  # back to the core (its queue)
        self.clock = clock
        self.limit = queued
        self._lock = threading.Condition()
        self._jobs: dict[str, deque[tuple[int, EffectRequest]]] = {}  # per target, in submission order
        self._ready: deque[str] = deque()  # targets with a job and no worker on them
        self._busy: set[str] = set()
        self._waiting = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"suture-effects-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: int, request: EffectRequest) -> bool:
        target = request.target
        with self._lock:
            if self._closed or self._waiting >= self.limit:
                return False
            self._waiting += 1
            queue = self._jobs.setdefault(target, deque())
            queue.append((job, request))
            if target not in self._busy and len(queue) == 1:
                self._ready.append(target)
                self._lock.notify()
        return True

    def _next(self) -> tuple[str, int, EffectRequest] | None:
        with self._lock:
            while not self._ready and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            target = self._ready.popleft()
            job, request = self._jobs[target].popleft()
            self._busy.add(target)
            self._waiting -= 1
            return target, job, request

    def _done(self, target: str) -> None:
        with self._lock:
            self._busy.discard(target)
            if self._jobs.get(target):
                self._ready.append(target)
                self._lock.notify()
            else:
                self._jobs.pop(target, None)

    def _work(self) -> None:
        while (taken := self._next()) is not None:
            target, job, request = taken
            try:
                result = run_effect(self.runner, request)
                done = EffectDone(job=job, at=self.clock(), result=result)
            except Exception as exc:  # the fix's steps decide what an error means; the worker only carries it
                if not isinstance(exc, ActionError):
                    log.warning("effect %s of %s raised %s", request.action.describe(), request.fix_id,
                                type(exc).__name__, exc_info=exc)
                done = EffectDone(job=job, at=self.clock(), error=exc)
            finally:
                self._done(target)
            self.deliver(done)

    def close(self, timeout: float = 1.0) -> None:
        """Refuse new jobs, drop queued ones (the core ends their fixes), let running ones finish on their own."""
        with self._lock:
            self._closed = True
            self._jobs.clear()
            self._ready.clear()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout / max(1, len(self._threads)))
