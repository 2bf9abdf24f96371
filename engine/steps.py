"""A fix's work as a generator of effect requests: the executor decides, someone else waits.

Restart, stop, exec and notify take seconds (a container restart) to minutes (an exec with
its timeout). The executor never runs them itself: where a step needs one, it *yields* an
:class:`EffectRequest` and resumes with the effect's result (``send``) or its error
(``throw``), exactly where a direct call would have returned or raised. So the journal is
written in the same order, and every ``except`` around an effect means what it did:

    reply = yield EffectRequest(fix_id, action, context)   # instead of effects.run(action, context)

The sidecar's core hands each request to a worker and resumes the generator when the result
comes back as an observation; tests, start-up recovery and shutdown :func:`drive` it inline.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .actions import EffectRunner
from .errors import ActionError
from .playbook import Action

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EffectRequest:
    """Run ``action`` (restart, stop, exec, notify) for a fix; the answer is its result text."""

    fix_id: str
    action: Action
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """What the effect acts on: effects on one target run one after the other."""
        return target_of(self.action)


@dataclass(frozen=True, slots=True)
class Reply:
    """What an effect answered, and when (None: inline, at the step's own time)."""

    result: str
    at: float | None = None


Steps = Generator[EffectRequest, Reply, T]


def target_of(action: Action) -> str:
    """``container:NAME`` for restart/stop of a container, ``pidfile:PATH``, ``exec``, ``notify``."""
    container = getattr(action, "container", None)
    if container:
        return f"container:{container}"
    pidfile = getattr(action, "pidfile", None)
    if pidfile:
        return f"pidfile:{pidfile}"
    return type(action).__name__.lower()


def run_effect(runner: EffectRunner | None, request: EffectRequest) -> str:
    """One effect, here and now (raises what the runner raises)."""
    if runner is None:
        raise ActionError(f"cannot {request.action.describe()}: no effect runner in this context")
    return runner.run(request.action, request.context)


def drive(steps: Steps[T], runner: EffectRunner | None, clock: Callable[[], float] | None = None) -> T:
    """Run ``steps`` to the end, carrying out each effect inline with ``runner``."""
    try:
        request = next(steps)
        while True:
            try:
                result = run_effect(runner, request)
            except Exception as exc:
                request = steps.throw(exc)
            else:
                request = steps.send(Reply(result, clock() if clock is not None else None))
    except StopIteration as stop:
        value: T = stop.value
        return value
