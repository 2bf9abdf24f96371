"""An incident report as Markdown that reads as plain text (docs/reports.md shows one).

Sections in a fixed order: the outcome, what was seen, why it was decided, what was changed, the
validation window, the steps with their times, what a person can do next. Every string from the
watched world goes through :mod:`.report_text`: log lines and diffs in fenced blocks, values in code
spans, free text escaped, so a log line never renders as markup.
"""

from __future__ import annotations

from .report_text import cap, clean, code, fenced, inline
from .report_values import Decided, Report, Seen, Validation, iso


def render_markdown(report: Report) -> str:
    """The whole report, ending with a newline."""
    parts = [_head(report), _seen(report.seen), _decided(report.decided), _changed(report),
             _validation(report.validation), _steps(report), _next(report)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _at(at: float | None) -> str:
    return iso(at) or "-"


def _secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}".rstrip("0").rstrip(".") + " s"


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{code(k)}={code(v)}" for k, v in pairs) if pairs else "none"


def _head(r: Report) -> str:
    lines = [f"# Fix {inline(r.fix_id)}: {inline(r.playbook_id)} {inline(r.status.replace('_', ' '))}", ""]
    lines.append(f"- Playbook: {code(r.playbook_id)}" + (f" (version {code(r.playbook_version)})"
                                                          if r.playbook_version else ""))
    lines.append(f"- Outcome: **{inline(r.status)}**" + ("" if r.final else " (not finished yet)"))
    if r.detail:
        lines.append(f"- Detail: {inline(r.detail)}")
    lines.append(f"- Started: {_at(r.started_at)}; finished: {_at(r.finished_at)}; took {_secs(r.seconds)}")
    if r.backup_id:
        lines.append(f"- Backup: {code(r.backup_id)}")
    if r.errors_before is not None or r.errors_after is not None:
        lines.append(f"- Error lines: {r.errors_before if r.errors_before is not None else '-'} before, "
                     f"{r.errors_after if r.errors_after is not None else '-'} in the validation window")
    return "\n".join(lines)


def _seen(s: Seen) -> str:
    lines = ["## What was seen", ""]
    lines.append(f"- Labels: {_labels(s.labels)}")
    if s.facts:
        lines.append("- Facts: " + ", ".join(code(f) for f in s.facts))
    if not s.evidence:
        lines += ["- Log lines, probe, metric and alert values: not recorded (this fix was journaled before "
                  "suture kept them)"]
    else:
        if not (s.excerpts or s.probes or s.metrics or s.alerts):
            lines.append("- No log line, probe, metric or alert was behind this firing")
        for probe in s.probes:
            state = {True: "healthy", False: "unhealthy", None: "unknown"}[probe.healthy]
            latency = f", {probe.latency_ms:g} ms" if probe.latency_ms is not None else ""
            detail = f", {inline(probe.detail)}" if probe.detail else ""
            lines.append(f"- Probe {code(probe.name)}: {state}{latency}{detail} (at {_at(probe.at)})")
        lines += [f"- Metric {code(name)}: {value:g}" for name, value in s.metrics]
        for alert in s.alerts:
            lines.append(f"- Alert {code(alert.name)} {inline(alert.state)}, labels {_labels(alert.labels)}, "
                         f"fingerprint {code(alert.fingerprint)} (at {_at(alert.at)})")
        for excerpt in s.excerpts:
            matched = sum(1 for line in excerpt.lines if line.matched)
            lines += ["", f"Log {code(excerpt.source)}: {matched} matching line(s) (marked `>`), each after up to 3 "
                      "lines of context; times UTC; lines over 400 characters are cut", "",
                      fenced((f"{(iso(line.at) or '-')[11:]:<13} {'>' if line.matched else ' '} "
                              + cap(clean(line.text)) for line in excerpt.lines), most=None)]
    for trend in s.trends:
        lines += ["", f"Trend {inline(trend.condition)}:"]
        lines += [f"- {_labels(series.labels)}: {'holds' if series.holds else 'does not hold'}: {inline(series.why)}"
                  + (" (" + ", ".join(f"{inline(k)} {v:g}" for k, v in series.numbers) + ")" if series.numbers else "")
                  for series in trend.series] or ["- no samples"]
    return "\n".join(lines)


def _decided(d: Decided) -> str:
    lines = ["## Why it was decided", "", f"- Decision: **{inline(d.verdict)}**: {inline(d.reason)}"]
    if d.base_confidence is not None and d.adjusted_confidence is not None:
        lines.append(f"- Confidence: base {d.base_confidence:g} -> adjusted {d.adjusted_confidence:g} "
                     f"(model {inline(d.model or '?')}), from {d.successes or 0} succeeded and {d.failures or 0} "
                     f"failed fix(es) here" + (f", {d.fleet_successes or 0} succeeded and {d.fleet_failures or 0} "
                                               "failed in the fleet" if d.fleet_successes or d.fleet_failures else ""))
    if d.threshold is not None:
        lines.append(f"- Threshold: {d.threshold:g}; mode: {inline(d.mode or '?')}")
    if d.group_key:
        lines.append(f"- Group key: {code(d.group_key)}")
    if d.cooldown:
        lines.append(f"- Cooldown: {inline(d.cooldown)}")
    if d.fleet:
        lines.append(f"- Fleet: {_labels(d.fleet)}")
    if d.proposal_id:
        lines.append(f"- Approved from proposal {code(d.proposal_id)} by {inline(d.approved_by or '?')}")
    return "\n".join(lines)


def _changed(r: Report) -> str:
    applied = r.decided.verdict == "apply"
    lines = ["## What was changed" if applied else "## What it would change", ""]
    if not r.changes and not r.diffs and not r.effects:
        lines.append("- Nothing")
    for c in r.changes:
        at = f" (line {c.line})" if c.line is not None else ""
        lines.append(f"- {code(c.file)}{at}: {inline(c.action)} {code(c.target)} {code(c.old)} -> {code(c.new)}")
    for d in r.diffs:
        lines += ["", f"File {code(d.path)}: sha256 {code(d.pre_sha256[:12])} -> {code(d.post_sha256[:12])}"]
        if d.note:
            lines.append(f"({inline(d.note)})")
        if d.diff:
            lines += ["", fenced(d.diff, "diff")]
    if r.effects:
        lines.append("")
    for e in r.effects:
        state = {True: "ok", False: "failed", None: "no result"}[e.ok]
        when = "on rollback" if e.phase == "rollback" else "effect"
        lines.append(f"- {when.capitalize()} {inline(e.action)}: {state}: {inline(e.result)} (at {_at(e.at)})")
    return "\n".join(lines)


def _validation(v: Validation | None) -> str:
    if v is None:
        return ""
    lines = ["## What the validation window saw", "",
             f"- Window: from {_at(v.applied_at)}, counting from {_at(v.opens_at)} (after settle), until "
             f"{_at(v.ends_at)}", f"- Verdict: **{inline(v.state or 'not judged yet')}**"
             + (f" at {_at(v.judged_at)}: {inline(v.reason)}" if v.state else "")]
    for e in v.expectations:
        lines.append(f"- Expected {inline(e.condition)}: {e.observations} observation(s), {e.matches} match(es)"
                     + (f"; breached: {inline(e.breach)}" if e.breach else "; held"))
    return "\n".join(lines)


def _steps(r: Report) -> str:
    lines = ["## Steps", "", "| # | step | at (UTC) | took | note |", "|---|---|---|---|---|"]
    lines += [f"| {s.seq} | {inline(s.step)} | {_at(s.at)} | {_secs(s.seconds)} | {inline(s.note)} |"
              for s in r.steps]
    return "\n".join(lines)


def _next(r: Report) -> str:
    lines = ["## What you can do next", ""]
    if r.suspension:
        lines.append(f"- The playbook is suspended: {inline(r.suspension)}")
    lines += [f"- {inline(n.what)}" + (f": {code(n.command)}" if n.command else "") for n in r.next]
    if len(lines) == 2:
        lines.append("- Nothing is waiting for a person")
    return "\n".join(lines)
