"""The incident report of a fix, from the journal alone: no network, no model, the same every time.

:func:`build_report` reads the fix's row and its ``fix_steps`` (and, for the diff, the pre- and
post-images the backup store keeps under the sha256 the ``planned`` step recorded) into a
:class:`~.report_values.Report`; :func:`render_markdown` writes it as Markdown readable as plain
text. A step an older suture did not journal (``evidence`` in ``matched``) is reported as not
recorded, never guessed. docs/reports.md describes the format.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .errors import BackupError, StoreError
from .reads import epoch
from .report_render import render_markdown
from .report_values import (
    AlertValue,
    Change,
    Decided,
    EffectResult,
    Excerpt,
    Expectation,
    FileDiff,
    LogLine,
    NextStep,
    Pairs,
    ProbeValue,
    Report,
    Seen,
    SeriesSeen,
    StepTime,
    TrendSeen,
    Validation,
)
from .store import Store

__all__ = ["Report", "UnknownFix", "build_report", "render_markdown"]

MAX_DIFF_LINES = 200  # per file


class UnknownFix(StoreError):
    """The history has no fix of that id."""


class Images(Protocol):
    """Where the bytes behind a sha256 are kept (:class:`~.backup.BackupStore`)."""

    def get(self, sha: str) -> bytes: ...


def build_report(store: Store, fix_id: str, backups: Images | None = None) -> Report:
    """The report of ``fix_id`` as the history tells it (``backups``: for the diff of each file written)."""
    row = store.fix(fix_id)
    if row is None:
        raise UnknownFix(f"no fix {fix_id} in the history")
    steps = [(s["step"], float(epoch(s["happened_at"]) or 0.0), _detail(s["detail"])) for s in store.steps(fix_id)]
    first = {name: detail for name, _, detail in reversed(steps)}  # the first step of each name
    planned = first.get("planned")
    return Report(
        fix_id=fix_id,
        playbook_id=str(row["playbook_id"]),
        playbook_version=row.get("playbook_version"),
        status=str(row["status"]),
        final=row.get("finished_at") is not None,
        detail=str(row.get("detail") or ""),
        started_at=float(epoch(row["started_at"]) or 0.0),
        finished_at=epoch(row.get("finished_at")),
        backup_id=row.get("backup_id"),
        errors_before=row.get("errors_before"),
        errors_after=row.get("errors_after"),
        seen=_seen(first.get("matched", {})),
        decided=_decided(row, first.get("decided", {})),
        changes=tuple(_change(c) for c in _changes(row)),
        diffs=_diffs(planned, backups) if planned is not None else (),
        effects=_effects(steps),
        validation=_validation(steps),
        steps=_timings(steps),
        suspension=_suspension(store, str(row["playbook_id"])),
        next=_next(store, row, planned, {name for name, _, _ in steps}),
    )


def _detail(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _pairs(value: Any) -> Pairs:
    return tuple((str(k), str(v)) for k, v in value.items()) if isinstance(value, Mapping) else ()


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _changes(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = row.get("changes")
    value = json.loads(raw) if isinstance(raw, str) else raw
    return [c for c in value or [] if isinstance(c, dict)]


# -- what was seen --


def _seen(matched: Mapping[str, Any]) -> Seen:
    evidence = matched.get("evidence")
    ev: Mapping[str, Any] = evidence if isinstance(evidence, Mapping) else {}
    excerpts = tuple(
        Excerpt(source=str(x.get("source", "")), lines=tuple(
            LogLine(at=_num(line.get("at")), text=str(line.get("text", "")), matched=bool(line.get("matched")))
            for line in x.get("lines", []) if isinstance(line, Mapping)))
        for x in ev.get("lines", []) if isinstance(x, Mapping))
    probes = tuple(
        ProbeValue(name=str(name), healthy=p.get("healthy") if isinstance(p.get("healthy"), bool) else None,
                   latency_ms=_num(p.get("latency_ms")), detail=str(p.get("detail") or ""), at=_num(p.get("at")))
        for name, p in (ev.get("probes") or {}).items() if isinstance(p, Mapping))
    alerts = tuple(
        AlertValue(name=str(a.get("name", "")), state=str(a.get("state", "")), labels=_pairs(a.get("labels")),
                   fingerprint=str(a.get("fingerprint", "")), at=_num(a.get("at")))
        for a in ev.get("alerts", []) if isinstance(a, Mapping))
    metrics = tuple((str(k), float(v)) for k, v in (ev.get("metrics") or {}).items() if _num(v) is not None)
    trends = tuple(
        TrendSeen(condition=str(t.get("condition", t.get("signal", ""))), series=tuple(
            SeriesSeen(labels=_pairs(s.get("labels")), holds=bool(s.get("holds")), why=str(s.get("why") or ""),
                       numbers=tuple((str(k), float(v)) for k, v in (s.get("numbers") or {}).items()
                                     if _num(v) is not None))
            for s in t.get("series", []) if isinstance(s, Mapping)))
        for t in matched.get("seen", []) if isinstance(t, Mapping))
    return Seen(facts=tuple(str(f) for f in matched.get("facts", [])), labels=_pairs(matched.get("labels")),
                evidence=isinstance(evidence, Mapping), excerpts=excerpts, probes=probes, metrics=metrics,
                alerts=alerts, trends=trends)


# -- why it was decided --


def _decided(row: Mapping[str, Any], step: Mapping[str, Any]) -> Decided:
    reason = str(step.get("reason", row.get("reason") or ""))
    return Decided(
        verdict=str(step.get("verdict", row.get("decision", ""))), reason=reason, mode=row.get("mode"),
        model=row.get("model"), group_key=str(row.get("group_key") or ""),
        base_confidence=row.get("base_confidence"), adjusted_confidence=row.get("adjusted_confidence"),
        threshold=row.get("threshold"), successes=row.get("successes"), failures=row.get("failures"),
        fleet_successes=row.get("fleet_successes"), fleet_failures=row.get("fleet_failures"),
        fleet=_pairs(step.get("fleet")), cooldown=_cooldown(reason, step.get("cooldown_s")),
        approved_by=row.get("approved_by"), proposal_id=row.get("proposal_id"))


def _cooldown(reason: str, seconds: Any) -> str | None:
    """The cooldown that held the fix back (its reason), else the playbook's (in the decided step since 2026-12)."""
    if reason.startswith("cooldown"):
        return reason
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
        return f"{seconds:g}s (the playbook's cooldown between two fixes of the same key)"
    return None


# -- what was changed --


def _change(c: Mapping[str, Any]) -> Change:
    line = c.get("line")
    return Change(file=str(c.get("file", "")), action=str(c.get("action", "")), target=str(c.get("target", "")),
                  old=str(c.get("old", "")), new=str(c.get("new", "")), line=line if isinstance(line, int) else None)


def _diffs(planned: Mapping[str, Any], backups: Images | None) -> tuple[FileDiff, ...]:
    out = []
    for entry in planned.get("files", []):
        path, pre, post = str(entry.get("path", "")), str(entry.get("pre", "")), str(entry.get("post", ""))
        lines: list[str] = []
        note = ""
        if backups is None:
            note = "the backup store was not at hand: no diff"
        else:
            try:
                before, after = backups.get(pre), backups.get(post)
            except BackupError as exc:
                note = f"no diff: {exc}"
            else:
                lines = [line.rstrip("\n") for line in difflib.unified_diff(
                    _text(before), _text(after), fromfile=f"a/{path}", tofile=f"b/{path}")]
                if len(lines) > MAX_DIFF_LINES:
                    note = f"the diff is {len(lines)} lines; the first {MAX_DIFF_LINES} are shown"
                    lines = lines[:MAX_DIFF_LINES]
        out.append(FileDiff(path=path, pre_sha256=pre, post_sha256=post, diff=tuple(lines), note=note))
    return tuple(out)


def _text(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def _effects(steps: Sequence[tuple[str, float, dict[str, Any]]]) -> tuple[EffectResult, ...]:
    out: list[EffectResult] = []
    phase, started = "fix", None
    for name, at, detail in steps:
        action = str(detail.get("action", ""))
        if name == "rolling_back":
            if started is not None:  # the effect raised: its error is the rollback's reason
                out.append(EffectResult(action=started[0], phase=phase, ok=False, at=started[1],
                                        result=str(detail.get("reason", ""))))
                started = None
            phase = "rollback"
        elif name == "effect_started":
            started = (action, at)
        elif name in ("effect", "effect_failed"):
            started = None
            ok = name == "effect"
            out.append(EffectResult(action=action, phase=phase, ok=ok, at=at,
                                    result=str(detail.get("result" if ok else "error", ""))))
    if started is not None:
        out.append(EffectResult(action=started[0], phase=phase, ok=None, at=started[1],
                                result="started; no result was journaled"))
    return tuple(out)


# -- what the validation window saw --


def _validation(steps: Sequence[tuple[str, float, dict[str, Any]]]) -> Validation | None:
    window = next(((at, d) for name, at, d in steps if name == "validating"), None)
    if window is None:
        return None
    verdict = next(((at, d) for name, at, d in steps if name == "verdict"), None)
    measured = verdict[1].get("measured", {}) if verdict is not None else {}
    expectations = tuple(
        Expectation(condition=str(name), observations=m.get("observations"), matches=m.get("matches"),
                    breach=m.get("breach"))
        for name, m in measured.items() if isinstance(m, Mapping))
    return Validation(applied_at=window[0], opens_at=_num(window[1].get("settle_until")),
                      ends_at=_num(window[1].get("until")), judged_at=verdict[0] if verdict else None,
                      state=str(verdict[1].get("state")) if verdict else None,
                      reason=str(verdict[1].get("reason", "")) if verdict else "", expectations=expectations)


# -- how long each step took --

_NOTE_KEYS = ("reason", "detail", "path", "action", "backup_id", "state", "error", "last_step")


def _timings(steps: Sequence[tuple[str, float, dict[str, Any]]]) -> tuple[StepTime, ...]:
    out = []
    for i, (name, at, detail) in enumerate(steps):
        after = steps[i + 1][1] - at if i + 1 < len(steps) else None
        note = next((str(detail[k]) for k in _NOTE_KEYS if detail.get(k) not in (None, "")), "")
        if name == "verdict":
            note = f"{detail.get('state')}: {detail.get('reason', '')}"
        out.append(StepTime(seq=i + 1, step=name, at=at, seconds=after, note=note))
    return tuple(out)


# -- what a person can do next --


def _suspension(store: Store, playbook_id: str) -> str | None:
    held = store.suspension(playbook_id)
    return None if held is None else str(held.get("reason") or "suspended")


def _next(store: Store, row: Mapping[str, Any], planned: Mapping[str, Any] | None, names: set[str]
          ) -> tuple[NextStep, ...]:
    fix_id, status, playbook_id = str(row["id"]), str(row["status"]), str(row["playbook_id"])
    backup, out = row.get("backup_id"), []
    if status == "proposed":
        approved = store.approvals_of(fix_id)
        if approved:
            out += [NextStep(what=f"approved by {by or 'someone'} as fix {fid} ({st})", command=None)
                    for fid, by, st in approved]
        elif planned is not None or _changes(row) or row.get("decision") == "propose":
            out.append(NextStep(what="apply this proposal (backup, validation and rollback as usual)",
                                command=f"suture approve {fix_id}"))
    if backup and status in ("succeeded", "inconclusive", "validating", "applied"):
        what = ("end its validation window now and restore the files" if row.get("finished_at") is None
                else "undo it: restore the files as they were before the fix")
        out.append(NextStep(what=what, command=f"suture rollback {backup}"))
    if backup and status == "conflict":
        out.append(NextStep(what="a file changed after suture wrote it; look at it, then restore the backup over it",
                            command=f"suture rollback {backup} --force"))
    if status in ("rolled_back", "failed") and backup and "restore_failed" in names:
        out.append(NextStep(what="a file could not be restored and still holds what suture wrote; restore it",
                            command=f"suture rollback {backup}"))
    elif status in ("rolled_back", "failed") and backup:
        out.append(NextStep(what="nothing to undo: the files were restored (verified by sha256)", command=None))
    if status == "shadow":
        out.append(NextStep(what="to let it act, set the playbook's mode to ask or auto", command=None))
    if store.suspension(playbook_id) is not None:
        out.append(NextStep(what=f"let {playbook_id} act again (it is suspended)",
                            command=f"suture resume {playbook_id}"))
    return tuple(out)
