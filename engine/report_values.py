"""The incident report of one fix, as values: what was seen, decided, changed, validated, and what is next.

Built from the journal by :func:`engine.report.build_report`, rendered as Markdown by
:mod:`engine.report_render`; :meth:`Report.as_json` is the same structure as JSON values (times in
ISO 8601 UTC), :meth:`Report.title` and :meth:`Report.summary` the plain text a notification carries.
Every value is as the journal holds it: text from the watched world is made safe where it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

from .report_text import plain

Pairs = tuple[tuple[str, str], ...]  # labels and other small maps, in order


def iso(at: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds when it has them (None stays None)."""
    if at is None:
        return None
    spec = "seconds" if float(at).is_integer() else "milliseconds"
    return datetime.fromtimestamp(at, UTC).isoformat(timespec=spec).replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    at: float | None
    text: str
    matched: bool  # a line the playbook's pattern matched (else a line of context before one)


@dataclass(frozen=True, slots=True, kw_only=True)
class Excerpt:
    source: str
    lines: tuple[LogLine, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeValue:
    name: str
    healthy: bool | None
    latency_ms: float | None
    detail: str
    at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertValue:
    name: str
    state: str
    labels: Pairs
    fingerprint: str
    at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesSeen:
    """One series of a trend condition as it was judged when the playbook fired (``seen``)."""

    labels: Pairs
    holds: bool
    why: str
    numbers: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrendSeen:
    condition: str
    series: tuple[SeriesSeen, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """What the playbook's conditions looked at when it fired (``evidence`` None: not recorded then)."""

    facts: tuple[str, ...]
    labels: Pairs
    evidence: bool  # whether the matched step kept evidence (older fixes did not)
    excerpts: tuple[Excerpt, ...]
    probes: tuple[ProbeValue, ...]
    metrics: tuple[tuple[str, float], ...]
    alerts: tuple[AlertValue, ...]
    trends: tuple[TrendSeen, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    verdict: str  # apply, propose, shadow, skip
    reason: str
    mode: str | None
    model: str | None
    group_key: str
    base_confidence: float | None
    adjusted_confidence: float | None
    threshold: float | None
    successes: int | None
    failures: int | None
    fleet_successes: int | None
    fleet_failures: int | None
    fleet: Pairs  # what the fleet said (the decided step's ``fleet``), empty without one
    cooldown: str | None  # the reason when the cooldown (or its backoff) held the fix back, else the playbook's
    approved_by: str | None
    proposal_id: str | None  # the proposal this fix was approved from


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One edit the plan made (or would make): the value in the file before and after."""

    file: str
    action: str
    target: str
    old: str
    new: str
    line: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FileDiff:
    path: str
    pre_sha256: str
    post_sha256: str
    diff: tuple[str, ...]  # unified diff lines (difflib), empty when the bytes are not at hand
    note: str  # why there is no diff, or that it was cut; "" otherwise


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectResult:
    action: str
    phase: str  # "fix" or "rollback" (on_rollback)
    ok: bool | None  # None: started, no result journaled
    result: str
    at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    condition: str
    observations: int | None
    matches: int | None
    breach: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Validation:
    applied_at: float | None  # when the window started (after the effects)
    opens_at: float | None  # after settle: observations count from here
    ends_at: float | None
    judged_at: float | None
    state: str | None  # passed, breached, failed, inconclusive (None: not judged)
    reason: str
    expectations: tuple[Expectation, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepTime:
    seq: int
    step: str
    at: float
    seconds: float | None  # until the next step (None for the last)
    note: str  # the step's own words (a reason, a path, an action), "" if none


@dataclass(frozen=True, slots=True, kw_only=True)
class NextStep:
    what: str
    command: str | None  # the exact command, or None when it is not a command


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    fix_id: str
    playbook_id: str
    playbook_version: str | None
    status: str
    final: bool
    detail: str
    started_at: float
    finished_at: float | None
    backup_id: str | None
    errors_before: int | None
    errors_after: int | None
    seen: Seen
    decided: Decided
    changes: tuple[Change, ...]
    diffs: tuple[FileDiff, ...]
    effects: tuple[EffectResult, ...]
    validation: Validation | None
    steps: tuple[StepTime, ...]
    suspension: str | None  # why the playbook is suspended now, if it is
    next: tuple[NextStep, ...]

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def as_json(self) -> dict[str, Any]:
        """The report as JSON values: every field, times (``*_at``, ``at``) in ISO 8601 UTC."""
        out = _json(self)
        out["seconds"] = self.seconds
        return dict(out)

    def title(self) -> str:
        """One line: ``suture: rate-limit-backoff succeeded (f-...)``."""
        return plain(f"suture: {self.playbook_id} {self.status.replace('_', ' ')} ({self.fix_id})", 200)

    def summary(self) -> str:
        """Two to four plain-text lines: the playbook and outcome, what changed, why, what ended it."""
        took = f", {self.seconds:g} s" if self.seconds is not None else ""
        lines = [f"{self.playbook_id}: {self.status.replace('_', ' ')} (fix {self.fix_id}{took})"]
        edits = [f"{c.file} {c.target}: {c.old} -> {c.new}" for c in self.changes]
        edits += [e.action for e in self.effects if e.phase == "fix"]
        applied = self.decided.verdict == "apply" and bool(self.diffs or self.effects)
        if edits:
            lines.append(("Changed: " if applied else "Would change: ") + "; ".join(edits))
        else:
            lines.append("Changed nothing")
        d = self.decided
        numbers = ""
        if d.adjusted_confidence is not None and d.base_confidence is not None:
            numbers = (f" (confidence {d.base_confidence:g} -> {d.adjusted_confidence:g} after "
                       f"{d.successes or 0} succeeded / {d.failures or 0} failed)")
        lines.append(f"Why: {d.verdict}: {d.reason}{numbers}")
        if self.detail and self.detail != d.reason:
            lines.append(f"Outcome: {self.detail}")
        return "\n".join(plain(line) for line in lines)


def _json(value: Any, key: str = "") -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name), f.name) for f in fields(value)}
    if isinstance(value, tuple):
        if key in ("labels", "fleet", "metrics", "numbers"):
            return {str(k): v for k, v in value}
        return [_json(v) for v in value]
    if isinstance(value, float) and (key == "at" or key.endswith("_at")):
        return iso(value)
    return value
